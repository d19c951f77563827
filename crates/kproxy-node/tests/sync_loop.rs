//! The sync loop over the fake kernel: a cluster in, the kernel's ruleset and the agent's
//! health, metrics and health-check servers out.

mod support;

use kproxy_model::{IpFamily, ObjectKind, ObjectRef, StoreEvent};
use kproxy_node::config::{DetectLocal, NodePortAddresses};
use kproxy_node::conntrack::{ConntrackTool, StaleFlows};
use kproxy_node::hcserver::ServiceHealthServers;
use kproxy_node::healthz::ProxierHealth;
use kproxy_node::iptables_mode::{IptablesFamilyKernel, IptablesMode, IptablesModeSettings};
use kproxy_node::kernel::fake::FakeIptables;
use kproxy_node::metrics::Metrics;
use kproxy_node::sync_loop::{AgentEvent, LoopTiming, SharedState, SyncLoop};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{cluster, events, free_port, http, one_endpoint_slice};

fn settings() -> IptablesModeSettings {
    IptablesModeSettings {
        node_name: "node-0".into(),
        cluster_cidrs: vec!["10.244.0.0/16".parse().expect("cidr")],
        detect_local: DetectLocal::ClusterCidr,
        masquerade_all: false,
        masquerade_bit: 14,
        localhost_node_ports: true,
        node_port_addresses: NodePortAddresses::All,
        sync_period: Duration::from_secs(30),
        bind_address: None,
        tcp_be_liberal: false,
        host_addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 168, 50, 10))],
    }
}

struct Harness {
    kernel: FakeIptables,
    shared: SharedState,
    sync_loop: SyncLoop,
}

fn harness() -> Harness {
    harness_with(None)
}

fn harness_with(conntrack: Option<Box<dyn ConntrackTool>>) -> Harness {
    let kernel = FakeIptables::new();
    let families = vec![family_kernel(IpFamily::V4, &kernel)];
    harness_for(kernel, families, conntrack)
}

/// `kernel` programmed as `family`'s.
fn family_kernel(family: IpFamily, kernel: &FakeIptables) -> IptablesFamilyKernel {
    IptablesFamilyKernel {
        family,
        kernel: Box::new(kernel.clone()),
        random_fully: true,
        chunked_full_syncs: false,
    }
}

/// A loop over `families`; `kernel` is the one the harness looks at.
fn harness_for(
    kernel: FakeIptables,
    families: Vec<IptablesFamilyKernel>,
    conntrack: Option<Box<dyn ConntrackTool>>,
) -> Harness {
    let mode = IptablesMode::new(settings(), families, None).expect("mode");
    let shared = SharedState {
        health: Arc::new(ProxierHealth::new(Duration::from_secs(60))),
        metrics: Arc::new(Metrics::new()),
    };
    let health_checks = ServiceHealthServers::new(
        Some(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]),
        Arc::clone(&shared.health),
    );
    let sync_loop = SyncLoop::new(
        "node-0",
        Box::new(mode),
        LoopTiming {
            min_sync_period: Duration::from_secs(1),
            sync_period: Duration::from_secs(30),
        },
        shared.clone(),
        health_checks,
        conntrack,
    );
    Harness {
        kernel,
        shared,
        sync_loop,
    }
}

impl Harness {
    fn load(&mut self, manifest: &str) {
        for event in events(manifest) {
            self.sync_loop.handle(AgentEvent::Store(event));
        }
    }

    fn nat_chains(&self) -> Vec<String> {
        self.kernel.state().kernel.chains("nat")
    }

    fn last_restore(&self) -> String {
        self.kernel
            .state()
            .restores
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_then_partial_sync_and_a_health_check_server() {
    let hc_port = free_port();
    let mut h = harness();
    h.load(&cluster(hc_port));
    h.sync_loop.handle(AgentEvent::InitialSyncDone);
    h.sync_loop.sync(Instant::now());

    let chains = h.nat_chains();
    assert!(
        chains.iter().any(|c| c.starts_with("KUBE-SVC-")),
        "{chains:?}"
    );
    assert!(chains.iter().any(|c| c == "KUBE-PROXY-CANARY"));
    let prerouting = h
        .kernel
        .state()
        .kernel
        .chain_rules("nat", "PREROUTING")
        .map(<[String]>::to_vec)
        .unwrap_or_default();
    assert_eq!(
        prerouting,
        ["-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"]
    );
    let values = h.shared.metrics.values();
    assert_eq!(values.full_sync_duration.count(), 1);
    assert!(values.nat_rules_total > 10);

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, hc_port));
    let (status, body) = tokio::task::spawn_blocking(move || http(addr, "GET", "/healthz"))
        .await
        .expect("join");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"localEndpoints\": 1"), "{body}");
    let (status, _) = tokio::task::spawn_blocking(move || http(addr, "POST", "/"))
        .await
        .expect("join");
    assert_eq!(status, 405);

    h.load(&one_endpoint_slice("lb", "10.244.2.9", "node-1"));
    assert!(h.shared.metrics.values().endpoint_changes_pending >= 1);
    h.sync_loop.sync(Instant::now());
    let restore = h.last_restore();
    assert!(
        !restore.contains("10.244.1.5"),
        "a partial sync must not rewrite the unchanged web service:\n{restore}"
    );
    assert!(restore.contains("10.244.2.9"), "{restore}");
    assert_eq!(h.shared.metrics.values().partial_sync_duration.count(), 1);
    let (status, body) = tokio::task::spawn_blocking(move || http(addr, "GET", "/"))
        .await
        .expect("join");
    assert_eq!(status, 503, "no local endpoint any more: {body}");
    assert!(body.contains("\"localEndpoints\": 0"), "{body}");

    h.sync_loop
        .handle(AgentEvent::Store(StoreEvent::Delete(ObjectRef {
            kind: ObjectKind::Service,
            namespace: "default".into(),
            name: "lb".into(),
        })));
    h.sync_loop.sync(Instant::now());
    assert!(h.sync_loop.health_checks().ports().is_empty());
}

/// A harness after the first sync of the test cluster (without health check node
/// ports), its fake kernel with or without table stamps.
fn synced_harness(stamps: bool) -> Harness {
    let mut h = harness();
    h.kernel.state().stamps = stamps;
    h.load(&cluster(free_port()).replace("healthCheckNodePort", "x-unused"));
    h.sync_loop.handle(AgentEvent::InitialSyncDone);
    h.sync_loop.sync(Instant::now());
    h
}

/// Empties the fake kernel, checks that the next check reports the missing canary, and
/// runs the sync that repairs it.
fn flush_and_resync(h: &mut Harness) {
    h.kernel.state().kernel = kproxy_iptables::fake::FakeKernel::new();
    let problems = h.sync_loop.check_kernel();
    assert!(
        problems.iter().any(|p| p.contains("canary")),
        "{problems:?}"
    );
    h.sync_loop.sync(Instant::now());
}

#[test]
fn a_failed_restore_keeps_the_old_rules_and_the_next_sync_is_full() {
    let mut h = synced_harness(false);
    let before = h.kernel.state().kernel.save();

    h.kernel.state().fail_next_restores = 1;
    h.load(
        &support::CLUSTER
            .replace("10.244.2.6", "10.244.3.3")
            .replace("healthCheckNodePort", "x-unused"),
    );
    h.sync_loop.sync(Instant::now());
    assert_eq!(h.kernel.state().kernel.save(), before, "old rules stay");
    let values = h.shared.metrics.values();
    assert_eq!(values.restore_failures, 1);
    assert_eq!(values.partial_restore_failures, 1);

    h.sync_loop.sync(Instant::now());
    let restore = h.last_restore();
    assert!(
        restore.contains("10.244.1.5"),
        "retry is a full sync:\n{restore}"
    );
    assert!(restore.contains("10.244.3.3"));
    assert_eq!(h.shared.metrics.values().full_sync_duration.count(), 2);
}

#[test]
fn a_flushed_nat_table_is_detected_and_repaired() {
    let mut h = synced_harness(false);
    let good = h.kernel.state().kernel.save();
    assert!(h.sync_loop.check_kernel().is_empty());

    flush_and_resync(&mut h);
    let repaired = h.kernel.state().kernel.save();
    let sorted = |text: &str| {
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        lines.join("\n")
    };
    assert_eq!(sorted(&repaired), sorted(&good));
    assert!(h.sync_loop.check_kernel().is_empty());
}

#[test]
fn a_check_the_lock_prevents_is_not_damage() {
    let mut h = synced_harness(false);
    let restores = h.kernel.state().restores.len();

    h.kernel.state().fail_next_checks = 1000;
    assert!(
        h.sync_loop.check_kernel().is_empty(),
        "a lock timeout is reported as damage"
    );
    h.kernel.state().fail_next_checks = 0;
    h.sync_loop.sync(Instant::now());
    let restores: Vec<String> = h.kernel.state().restores[restores..].to_vec();
    assert_eq!(
        h.shared.metrics.values().full_sync_duration.count(),
        1,
        "a lock timeout started a full sync: {restores:?}"
    );
}

#[test]
fn with_table_stamps_an_unchanged_table_is_not_listed_again() {
    let mut h = synced_harness(true);
    let listed = h.kernel.state().listings;
    assert!(h.sync_loop.check_kernel().is_empty());
    assert_eq!(
        h.kernel.state().listings,
        listed,
        "a table kproxy wrote and nobody changed was listed"
    );

    // Someone else's rule changes the stamp: the next check lists, finds nothing wrong,
    // and trusts the table again.
    h.kernel
        .state()
        .kernel
        .insert_rule("filter", "-A INPUT -s 192.0.2.1/32 -j DROP");
    assert!(h.sync_loop.check_kernel().is_empty());
    let listed = h.kernel.state().listings;
    assert!(listed > 0);
    assert!(h.sync_loop.check_kernel().is_empty());
    assert_eq!(h.kernel.state().listings, listed);

    // A flush is a change too: detected and repaired as without stamps.
    flush_and_resync(&mut h);
    assert!(h.sync_loop.check_kernel().is_empty());
}

#[test]
fn with_table_stamps_a_check_the_lock_prevents_is_tried_again() {
    let mut h = synced_harness(true);
    h.kernel
        .state()
        .kernel
        .insert_rule("filter", "-A INPUT -s 192.0.2.1/32 -j DROP");
    h.kernel.state().fail_next_checks = 1000;
    assert!(h.sync_loop.check_kernel().is_empty());
    h.kernel.state().fail_next_checks = 0;
    let listed = h.kernel.state().listings;
    assert!(h.sync_loop.check_kernel().is_empty());
    assert!(
        h.kernel.state().listings > listed,
        "an unanswered check made the table trusted"
    );
}

/// One conntrack cleanup call: the family and the flows.
type CleanupCall = (IpFamily, BTreeSet<StaleFlows>);

/// Records each conntrack cleanup call.
#[derive(Clone, Default)]
struct RecordingConntrack(Arc<Mutex<Vec<CleanupCall>>>);

impl ConntrackTool for RecordingConntrack {
    fn delete(
        &mut self,
        family: IpFamily,
        flows: &BTreeSet<StaleFlows>,
    ) -> Result<kproxy_conntrack::Deleted, kproxy_conntrack::Error> {
        self.0.lock().expect("lock").push((family, flows.clone()));
        Ok(kproxy_conntrack::Deleted::default())
    }
}

#[test]
fn each_sync_cleans_conntrack_with_one_call_per_family_holding_every_stale_flow() {
    let calls = RecordingConntrack::default();
    let mut h = harness_with(Some(Box::new(calls.clone())));
    let manifest = support::CLUSTER.replace("healthCheckNodePort", "x-unused");
    h.load(&manifest);
    h.sync_loop.handle(AgentEvent::InitialSyncDone);
    h.sync_loop.sync(Instant::now());
    h.load(&manifest.replace("10.244.1.7", "10.244.1.8"));
    h.sync_loop.sync(Instant::now());
    let ip = |text: &str| -> IpAddr { text.parse().expect("ip") };
    let (service, gone) = (ip("10.96.0.10"), ip("10.244.1.7"));
    assert_eq!(
        *calls.0.lock().expect("lock"),
        [
            (
                IpFamily::V4,
                BTreeSet::from([
                    StaleFlows::ToServiceIp(service),
                    StaleFlows::ToNodePort(30053)
                ])
            ),
            (
                IpFamily::V4,
                BTreeSet::from([
                    StaleFlows::ServiceIpToEndpoint(service, gone),
                    StaleFlows::NodePortToEndpoint(30053, gone)
                ])
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_touches_one_family_leaves_the_other_alone_until_the_periodic_sync() {
    let (v4, v6) = (FakeIptables::new(), FakeIptables::new());
    let families = vec![
        family_kernel(IpFamily::V4, &v4),
        family_kernel(IpFamily::V6, &v6),
    ];
    let mut h = harness_for(v4.clone(), families, None);
    h.load(&cluster(free_port()));
    h.sync_loop.handle(AgentEvent::InitialSyncDone);
    h.sync_loop.sync(Instant::now());
    let restores = |k: &FakeIptables| k.state().restores.len();
    let (v4_before, v6_before) = (restores(&v4), restores(&v6));
    assert!(v6_before > 0, "the first sync programs both families");

    h.load(&one_endpoint_slice("web", "10.244.1.77", "node-0"));
    h.sync_loop.sync(Instant::now());
    assert_eq!(restores(&v4), v4_before + 1, "the IPv4 change is written");
    assert_eq!(restores(&v6), v6_before, "IPv6 has nothing to write");
    assert!(h.last_restore().contains("10.244.1.77"));
    let later = std::time::SystemTime::now() + Duration::from_secs(120);
    let health = h.shared.health.status(later);
    assert!(
        health.healthy,
        "no family is left with a queued change: {health:?}"
    );

    h.sync_loop.sync(Instant::now());
    assert_eq!(
        restores(&v6),
        v6_before + 1,
        "a sync without changes covers every family"
    );
}
