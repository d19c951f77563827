//! The ipvs mode's agent wiring over kproxy-ipvs' fakes: a snapshot in, virtual servers,
//! kube-ipvs0 addresses and iptables rules out; a removed endpoint with connections left
//! drains and asks the loop for a re-sync; the periodic `--ipvs-sync-period` deadline;
//! the `ipvs` flags; and on a kernel without IPVS, the agent's clear refusal.

mod support;

use kproxy_ipvs::mode::fakes::{FakeHost, FakeIpsets, FakeIptables, FakeLink};
use kproxy_ipvs::{
    ConnectionCounts, FakeIpvs, IpvsHandle, IpvsKernel, NetlinkIpvs, Protocol, RealServerKey,
    ServiceKey,
};
use kproxy_model::{ClusterStore, IpFamily, NamespacedName, Snapshot};
use kproxy_node::config::{AgentConfig, HostDefaults, NodePortAddresses};
use kproxy_node::config_ipvs::IpvsConfig;
use kproxy_node::iptables_mode::IptablesModeSettings;
use kproxy_node::ipvs_mode::IpvsMode;
use kproxy_node::mode::{ProxyMode, SyncInput};
use kproxy_node::{AgentArgs, AgentError};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};
use support::{cluster, events, free_port};

type FakeMode = IpvsMode<FakeIpvs, FakeIpsets, FakeLink, FakeHost, FakeIptables>;

fn ipvs_config() -> IpvsConfig {
    let args = AgentArgs {
        hostname_override: Some("node-0".into()),
        ipvs_scheduler: Some("lc".into()),
        ipvs_sync_period: Some(Duration::from_secs(20)),
        ipvs_min_sync_period: Some(Duration::from_secs(2)),
        ipvs_exclude_cidrs: Some(vec!["10.200.0.0/16".into()]),
        ipvs_tcpfin_timeout: Some(Duration::from_secs(30)),
        ..AgentArgs::default()
    };
    let (config, _) = AgentConfig::resolve(&args, None, &HostDefaults::default()).expect("config");
    config.ipvs
}

fn mode() -> FakeMode {
    let node_ip = IpAddr::V4(Ipv4Addr::new(192, 168, 50, 10));
    let node = IptablesModeSettings {
        node_name: "node-0".into(),
        cluster_cidrs: vec!["10.244.0.0/16".parse().expect("cidr")],
        detect_local: kproxy_node::config::DetectLocal::ClusterCidr,
        masquerade_all: false,
        masquerade_bit: 14,
        localhost_node_ports: false,
        node_port_addresses: NodePortAddresses::All,
        sync_period: Duration::from_secs(30),
        bind_address: None,
        tcp_be_liberal: false,
        host_addresses: vec![node_ip],
    };
    let kernel = IpvsKernel {
        ipvs: FakeIpvs::new(),
        ipset: FakeIpsets::new(),
        link: FakeLink::default(),
        host: FakeHost {
            addresses: vec![node_ip],
        },
        iptables: FakeIptables::default(),
    };
    IpvsMode::new(node, ipvs_config(), vec![(IpFamily::V4, kernel)])
}

fn sync(mode: &mut FakeMode, snapshot: &Snapshot, now: Instant) -> bool {
    let report = mode.sync(&SyncInput {
        snapshot,
        changed: &BTreeSet::new(),
        ports: &Default::default(),
        now,
    });
    assert!(report.full);
    assert!(report.ok, "{:?}", report.error);
    report.ok
}

fn web() -> ServiceKey {
    ServiceKey {
        addr: "10.96.0.20".parse().expect("ip"),
        port: 80,
        protocol: Protocol::Tcp,
    }
}

#[test]
fn ipvs_flags_resolve() {
    let config = ipvs_config();
    assert_eq!(config.scheduler, "lc");
    assert_eq!(config.sync_period, Duration::from_secs(20));
    assert_eq!(
        config.exclude_cidrs,
        vec!["10.200.0.0/16".parse().expect("net")]
    );
    assert_eq!(kproxy_node::ipvs_mode::timeouts(&config).tcp_fin_secs, 30);
}

#[test]
fn a_snapshot_becomes_virtual_servers_and_a_drain_asks_for_a_resync() {
    let mut mode = mode();
    let manifest = cluster(free_port());
    let mut store = ClusterStore::new();
    events(&manifest).into_iter().for_each(|e| store.apply(e));
    let mut snapshot = Snapshot::build(&store, IpFamily::V4, "node-0", &mut Vec::new());
    store.take_changes();
    let start = Instant::now();
    sync(&mut mode, &snapshot, start);

    let kernel = mode.kernel_mut(IpFamily::V4).expect("v4");
    let services = kernel.ipvs.state().expect("state");
    let service = services
        .iter()
        .find(|s| s.service.key == web())
        .expect("ClusterIP virtual server");
    assert_eq!(
        service.service.scheduler,
        kproxy_ipvs::Scheduler::LeastConnection
    );
    assert_eq!(service.destinations.len(), 2);
    assert!(kernel.link.addresses.contains(&web().addr));
    assert!(kernel.ipset.entries("KUBE-CLUSTER-IP").is_some());
    assert!(kernel
        .iptables
        .restores
        .last()
        .is_some_and(|r| r.contains("KUBE-SERVICES")));
    let gone = RealServerKey {
        addr: "10.244.2.6".parse().expect("ip"),
        port: 8080,
    };
    assert!(kernel.ipvs.set_connections(
        &web(),
        &gone,
        ConnectionCounts {
            active: 3,
            inactive: 0
        }
    ));
    assert_eq!(mode.next_deadline(), Some(start + Duration::from_secs(20)));

    for event in events(&manifest.replace(
        "- {addresses: [\"10.244.2.6\"], conditions: {ready: true}, nodeName: node-1}\n",
        "",
    )) {
        store.apply(event);
    }
    let changed: BTreeSet<NamespacedName> = store.take_changes().services;
    snapshot.refresh(&store, &changed, &mut Vec::new());
    let later = start + Duration::from_secs(1);
    sync(&mut mode, &snapshot, later);
    let draining = mode.proxier(IpFamily::V4).expect("v4").draining();
    assert!(!draining.is_empty(), "the endpoint with connections drains");
    let deadline = mode.next_deadline().expect("a deadline");
    assert!(deadline <= later + Duration::from_secs(20), "{deadline:?}");
    let kernel = mode.kernel_mut(IpFamily::V4).expect("v4");
    let services = kernel.ipvs.state().expect("state");
    let drained = services
        .iter()
        .find(|s| s.service.key == web())
        .and_then(|s| s.destinations.iter().find(|d| d.server.key == gone))
        .expect("still present while draining");
    assert_eq!(drained.server.weight, 0);
}

#[test]
fn without_ipvs_the_agent_refuses_the_mode_clearly() {
    if !matches!(NetlinkIpvs::connect(), Err(kproxy_ipvs::Error::NoIpvs)) {
        eprintln!("!!! SKIPPING: this kernel has IPVS");
        return;
    }
    let Some(_netns) = support::netns::Netns::enter(&["ip", "nft"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, cluster(free_port())).expect("write");
    let args = AgentArgs {
        proxy_mode: Some("ipvs".into()),
        hostname_override: Some("node-0".into()),
        cluster_file: Some(file),
        healthz_bind_address: Some(format!("127.0.0.1:{}", free_port())),
        metrics_bind_address: Some(format!("127.0.0.1:{}", free_port())),
        conntrack_max_per_core: Some(0),
        conntrack_tcp_timeout_established: Some(Duration::ZERO),
        conntrack_tcp_timeout_close_wait: Some(Duration::ZERO),
        ..AgentArgs::default()
    };
    let (config, _) = AgentConfig::resolve(&args, None, &HostDefaults::default()).expect("config");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let result = runtime.block_on(kproxy_node::serve(config, std::future::pending()));
    let error = result.expect_err("no IPVS here");
    assert!(matches!(error, AgentError::NoIpvs), "{error}");
    assert!(
        error
            .to_string()
            .contains("the kernel has no IPVS (ip_vs module)"),
        "{error}"
    );
}
