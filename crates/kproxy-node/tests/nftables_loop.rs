//! The sync loop driving the nftables mode over kproxy-nftables' fake kernel: a cluster in,
//! the `kube-proxy` table, health-check servers and nftables metrics out; a deleted table
//! found by the kernel check and rebuilt; failures counted.

mod support;

use kproxy_model::{IpFamily, NodeFacts};
use kproxy_nftables::nft::{Family, Named};
use kproxy_nftables::{NftRunner, Transaction};
use kproxy_node::config::{DetectLocal, NodePortAddresses};
use kproxy_node::hcserver::ServiceHealthServers;
use kproxy_node::healthz::ProxierHealth;
use kproxy_node::iptables_mode::IptablesModeSettings;
use kproxy_node::kernel::nft::{NftKernel, SharedFakeNft};
use kproxy_node::metrics::{Metrics, MetricsMode};
use kproxy_node::nftables_mode::{proxier_settings, NftFamilyKernel, NftablesMode, TABLE};
use kproxy_node::sync_loop::{AgentEvent, LoopTiming, SharedState, SyncLoop};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{cluster, events, free_port, http};

fn node_settings() -> IptablesModeSettings {
    IptablesModeSettings {
        node_name: "node-0".into(),
        cluster_cidrs: vec!["10.244.0.0/16".parse().expect("cidr")],
        detect_local: DetectLocal::ClusterCidr,
        masquerade_all: false,
        masquerade_bit: 14,
        localhost_node_ports: false,
        node_port_addresses: NodePortAddresses::Cidrs(vec!["192.168.50.0/24"
            .parse()
            .expect("cidr")]),
        sync_period: Duration::from_secs(30),
        bind_address: None,
        tcp_be_liberal: false,
        host_addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 168, 50, 10))],
    }
}

struct Harness {
    kernel: SharedFakeNft,
    shared: SharedState,
    sync_loop: SyncLoop,
}

fn harness() -> Harness {
    harness_with_batches(kproxy_node::nftables_mode::MAX_BATCH_OPERATIONS)
}

fn harness_with_batches(max_batch_operations: usize) -> Harness {
    let kernel = SharedFakeNft::new();
    let mode = NftablesMode::new(
        node_settings(),
        vec![NftFamilyKernel {
            family: IpFamily::V4,
            kernel: Box::new(kernel.clone()),
        }],
        None,
    )
    .expect("mode")
    .with_max_batch_operations(max_batch_operations);
    let shared = SharedState {
        health: Arc::new(ProxierHealth::new(Duration::from_secs(60))),
        metrics: Arc::new(Metrics::for_mode(MetricsMode::Nftables)),
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
        None,
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

    fn dump(&self) -> String {
        self.kernel.state().nft.dump()
    }

    fn last_transaction(&self) -> String {
        self.kernel
            .state()
            .nft
            .last_transaction()
            .map(Transaction::render)
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_then_partial_sync_with_health_checks_and_nftables_metrics() {
    let hc_port = free_port();
    let mut h = harness();
    h.load(&cluster(hc_port));
    h.sync_loop.handle(AgentEvent::InitialSyncDone);
    h.sync_loop.sync(Instant::now());

    let ruleset = h.dump();
    assert!(ruleset.contains("add table ip kube-proxy"), "{ruleset}");
    assert!(ruleset.contains("dnat to 10.244.1.5:8080"), "{ruleset}");
    assert!(ruleset.contains("10.96.0.20 . tcp . 80"), "{ruleset}");
    let metrics = h.shared.metrics.render();
    assert!(metrics.contains("kubeproxy_sync_full_proxy_rules_duration_seconds_count 1"));
    assert!(metrics.contains("kubeproxy_sync_proxy_rules_nftables_sync_failures_total 0"));
    assert!(!metrics.contains("iptables"), "{metrics}");

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, hc_port));
    let (status, body) = tokio::task::spawn_blocking(move || http(addr, "GET", "/healthz"))
        .await
        .expect("join");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"localEndpoints\": 1"), "{body}");

    h.load(&cluster(hc_port).replace("10.244.2.6", "10.244.2.66"));
    h.sync_loop.sync(Instant::now() + Duration::from_secs(2));
    let partial = h.last_transaction();
    assert!(partial.contains("10.244.2.66"), "{partial}");
    assert!(
        !partial.contains("10.244.1.9") && !partial.contains("10.96.0.30"),
        "a partial sync sends only the changed service:\n{partial}"
    );
    assert!(h
        .shared
        .metrics
        .render()
        .contains("kubeproxy_sync_partial_proxy_rules_duration_seconds_count 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_table_is_found_and_rebuilt_by_a_full_sync() {
    let mut h = harness();
    h.load(&cluster(free_port()));
    h.sync_loop.handle(AgentEvent::InitialSyncDone);
    h.sync_loop.sync(Instant::now());
    assert!(h.sync_loop.check_kernel().is_empty());

    let mut other = h.kernel.clone();
    let mut delete = Transaction::new(Family::Ip, TABLE);
    delete.delete(Named::Table);
    other.run(&delete).expect("someone deletes the table");
    let problems = h.sync_loop.check_kernel();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("missing or flushed"), "{problems:?}");

    h.sync_loop.sync(Instant::now() + Duration::from_secs(2));
    assert!(h.dump().contains("dnat to 10.244.1.5:8080"));
    let values = h.shared.metrics.values();
    assert_eq!(values.full_sync_duration.count(), 2);
    assert!(h.sync_loop.check_kernel().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_deleted_while_a_stale_chain_waits_is_rebuilt() {
    let mut h = harness();
    let start = Instant::now();
    h.load(&cluster(free_port()));
    h.sync_loop.handle(AgentEvent::InitialSyncDone);
    h.sync_loop.sync(start);
    h.load(&cluster(free_port()).replace("10.244.2.6", "10.244.2.66"));
    h.sync_loop.sync(start + Duration::from_secs(2));
    let mut other = h.kernel.clone();
    let mut delete = Transaction::new(Family::Ip, TABLE);
    delete.delete(Named::Table);
    other.run(&delete).expect("someone deletes the table");
    assert_eq!(h.sync_loop.check_kernel().len(), 1);
    h.sync_loop
        .sync(start + Duration::from_secs(2) + Duration::from_millis(300));
    assert!(
        h.dump().contains("dnat to 10.244.2.66:8080"),
        "{}",
        h.dump()
    );
    assert!(h.sync_loop.check_kernel().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_is_counted_and_the_next_one_is_full() {
    let mut h = harness();
    h.load(&cluster(free_port()));
    h.sync_loop.handle(AgentEvent::InitialSyncDone);
    h.sync_loop.sync(Instant::now());
    h.kernel.state().fail_next_runs = 1;
    h.load(&cluster(free_port()).replace("10.244.2.6", "10.244.2.66"));
    h.sync_loop.sync(Instant::now() + Duration::from_secs(2));
    let metrics = h.shared.metrics.render();
    assert!(
        metrics.contains("kubeproxy_sync_proxy_rules_nftables_sync_failures_total 1"),
        "{metrics}"
    );
    assert!(!h.dump().contains("10.244.2.66"));
    h.sync_loop.sync(Instant::now() + Duration::from_secs(4));
    assert!(h.dump().contains("10.244.2.66"));
    assert_eq!(h.shared.metrics.values().full_sync_duration.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_first_sync_runs_in_bounded_batches_with_the_same_result() {
    let hc_port = free_port();
    let mut h = harness();
    h.load(&cluster(hc_port));
    h.sync_loop.handle(AgentEvent::InitialSyncDone);
    h.sync_loop.sync(Instant::now());
    let whole = h.dump();
    let state = h.kernel.state();
    let port_operations = state.nft.last_transaction().map_or(0, Transaction::len);
    assert_eq!(
        state.nft.runs(),
        2,
        "the fixed objects end a batch of their own, the service ports follow"
    );
    drop(state);
    drop(h);

    let mut batched = harness_with_batches(7);
    batched.load(&cluster(hc_port));
    batched.sync_loop.handle(AgentEvent::InitialSyncDone);
    batched.sync_loop.sync(Instant::now());
    let state = batched.kernel.state();
    assert!(
        state.nft.runs() > port_operations.div_ceil(7),
        "batches of at most 7 operations: {} runs for {port_operations} port operations",
        state.nft.runs()
    );
    assert!(state.nft.last_transaction().map_or(0, Transaction::len) <= 7);
    drop(state);
    assert_eq!(batched.dump(), whole);
}

#[test]
fn settings_follow_the_node_and_flags() {
    let facts = NodeFacts {
        name: "node-0".into(),
        zone: Some("z1".into()),
        addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 168, 50, 10))],
        pod_cidrs: vec!["10.244.1.0/24".into()],
    };
    let settings = proxier_settings(&node_settings(), IpFamily::V4, Some(&facts));
    assert_eq!(settings.table, "kube-proxy");
    assert_eq!(settings.zone.as_deref(), Some("z1"));
    assert_eq!(settings.node_ip, Some(facts.addresses[0]));
    assert_eq!(settings.node_port_ips(), facts.addresses);
    assert_eq!(
        settings.local_detector,
        kproxy_nftables::LocalTrafficDetector::ClusterCidr("10.244.0.0/16".parse().expect("net"))
    );
    let v6 = proxier_settings(&node_settings(), IpFamily::V6, Some(&facts));
    assert_eq!(
        v6.local_detector,
        kproxy_nftables::LocalTrafficDetector::None
    );
    assert!(v6.node_port_ips().is_empty());
    let mut probe = SharedFakeNft::new();
    assert!(!probe
        .chain_has_rules(Family::Ip, TABLE, "nat-prerouting")
        .expect("fake answers"));
}
