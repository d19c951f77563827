//! The real iptables runner in a throwaway network namespace, for both backends: a full
//! then a partial sync of a small cluster, the kernel's `iptables-save` checked for the
//! service chains and jump rules (and its nat chains listed as the agent lists them at start:
//! over netlink on iptables-nft), a flush detected and repaired, then `--cleanup`
//! removing everything. Needs root and the iptables tools; under `CI=true` a missing
//! requirement fails the test instead of skipping it.

mod support;

use kproxy_iptables::is_builtin_chain;
use kproxy_model::IpFamily;
use kproxy_node::config::{DetectLocal, NodePortAddresses};
use kproxy_node::hcserver::ServiceHealthServers;
use kproxy_node::healthz::ProxierHealth;
use kproxy_node::iptables_mode::{IptablesFamilyKernel, IptablesMode, IptablesModeSettings};
use kproxy_node::kernel::iptables::chains_in_save_output;
use kproxy_node::kernel::sysctl::{ensure_param, KernelParams, ProcSys, ROUTE_LOCALNET};
use kproxy_node::kernel::{Backend, ExecIptables, IptablesTools, SaveTool};
use kproxy_node::metrics::Metrics;
use kproxy_node::sync_loop::{AgentEvent, LoopTiming, SharedState, SyncLoop};
use kproxy_node::AgentArgs;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::netns::Netns;
use support::{events, CLUSTER};

fn save(backend: Backend, family: &str) -> String {
    let tool = format!("{family}-{}-save", backend.name());
    let output = Command::new(&tool).output().expect("iptables-save runs");
    assert!(output.status.success(), "{tool} failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn mode(backend: Backend) -> IptablesMode {
    let kernels = [IpFamily::V4, IpFamily::V6]
        .into_iter()
        .map(|family| IptablesFamilyKernel {
            family,
            kernel: Box::new(ExecIptables::new(
                IptablesTools::find(family, backend).expect("tools"),
                Duration::from_secs(30),
            )),
            random_fully: true,
            chunked_full_syncs: backend == Backend::Nft,
        })
        .collect();
    let settings = IptablesModeSettings {
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
        host_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
    };
    IptablesMode::new(settings, kernels, None).expect("mode")
}

fn run_backend(backend: Backend) {
    let tools = [
        "ip",
        &format!("iptables-{}", backend.name()),
        &format!("iptables-{}-restore", backend.name()),
        &format!("ip6tables-{}-restore", backend.name()),
    ];
    let Some(_netns) = Netns::enter(&tools) else {
        return;
    };
    let health = Arc::new(ProxierHealth::new(Duration::from_secs(60)));
    let shared = SharedState {
        health: Arc::clone(&health),
        metrics: Arc::new(Metrics::new()),
    };
    let mut sync_loop = SyncLoop::new(
        "node-0",
        Box::new(mode(backend)),
        LoopTiming {
            min_sync_period: Duration::from_secs(1),
            sync_period: Duration::from_secs(30),
        },
        shared.clone(),
        ServiceHealthServers::new(Some(Vec::new()), health),
        None,
    );
    let cluster = CLUSTER.replace("healthCheckNodePort: HC_PORT", "healthCheckNodePort: 32000");
    for event in events(&cluster) {
        sync_loop.handle(AgentEvent::Store(event));
    }
    sync_loop.handle(AgentEvent::InitialSyncDone);
    sync_loop.sync(Instant::now());
    assert_eq!(
        shared.metrics.values().restore_failures,
        0,
        "full sync failed"
    );

    let v4 = save(backend, "iptables");
    for (family, text) in [
        (IpFamily::V4, v4.as_str()),
        (IpFamily::V6, &save(backend, "ip6tables")),
    ] {
        let mut kernel = ExecIptables::new(
            IptablesTools::find(family, backend).expect("tools"),
            Duration::from_secs(30),
        );
        // iptables-nft-save shows built-in chains that nf_tables does not have yet.
        let user_chains = |names: Vec<String>| -> Vec<String> {
            let mut names: Vec<String> =
                names.into_iter().filter(|c| !is_builtin_chain(c)).collect();
            names.sort();
            names
        };
        let listed = user_chains(kernel.chain_names("nat").expect("chain names"));
        let nat = text.split("*nat").nth(1).expect("a nat table");
        let saved = user_chains(chains_in_save_output(
            nat.split("COMMIT").next().unwrap_or_default(),
        ));
        assert!(listed.iter().any(|c| c.starts_with("KUBE-SVC-")) || family == IpFamily::V6);
        assert_eq!(listed, saved, "{family:?} nat chains");
    }
    for needle in [
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes load balancer firewall\" -j KUBE-PROXY-FIREWALL",
        ":KUBE-PROXY-CANARY - [0:0]",
        "-d 10.96.0.20/32 -p tcp -m comment --comment \"default/web:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-",
        "-j DNAT --to-destination 10.244.1.5:8080",
        "--dport 30053",
        "-A PREROUTING -m comment --comment \"kproxy localnet guard\" -j KPROXY-LOCALNET",
        "-A KPROXY-LOCALNET -d 127.0.0.0/8 ! -i lo",
    ] {
        assert!(v4.contains(needle), "missing {needle:?} in\n{v4}");
    }
    let v6 = save(backend, "ip6tables");
    assert!(v6.contains("-j KUBE-POSTROUTING"), "{v6}");

    for event in events(&cluster.replace("10.244.1.5", "10.244.1.55")) {
        sync_loop.handle(AgentEvent::Store(event));
    }
    sync_loop.sync(Instant::now());
    let values = shared.metrics.values();
    assert_eq!(values.restore_failures, 0, "partial sync failed");
    assert_eq!(values.partial_sync_duration.count(), 1);
    let v4 = save(backend, "iptables");
    assert!(v4.contains("--to-destination 10.244.1.55:8080"), "{v4}");
    assert!(
        !v4.contains("10.244.1.5:8080"),
        "stale endpoint chain left:\n{v4}"
    );

    let flushed = Command::new(format!("iptables-{}", backend.name()))
        .args(["-t", "nat", "-F"])
        .status()
        .expect("flush");
    assert!(flushed.success());
    assert!(!sync_loop.check_kernel().is_empty(), "flush not detected");
    sync_loop.sync(Instant::now());
    assert!(sync_loop.check_kernel().is_empty(), "not repaired");
    assert!(save(backend, "iptables").contains("--to-destination 10.244.1.55:8080"));

    let mut params = ProcSys;
    assert_eq!(ensure_param(&mut params, ROUTE_LOCALNET, "1"), None);
    assert_eq!(params.read(ROUTE_LOCALNET).as_deref().ok(), Some("1"));

    let cleanup = AgentArgs {
        cleanup: Some(true),
        ..AgentArgs::default()
    };
    kproxy_node::cleanup(cleanup).expect("cleanup succeeds");
    for family in ["iptables", "ip6tables"] {
        let after = save(backend, family);
        assert!(!after.contains("KUBE-"), "{family} after cleanup:\n{after}");
        assert!(
            !after.contains("KPROXY-"),
            "{family} after cleanup:\n{after}"
        );
    }
}

#[test]
fn nft_backend_full_partial_repair_cleanup() {
    run_backend(Backend::Nft);
}

#[test]
fn legacy_backend_full_partial_repair_cleanup() {
    run_backend(Backend::Legacy);
}
