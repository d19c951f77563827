//! Services in the kernel, end to end: real connections through kproxy's rules on a lab
//! node, IPv4 and IPv6, in every proxy mode the binary has.

mod support;

use kproxy_lab::plan::{self, FAMILIES};
use kproxy_lab::{tcp_probe, Outcome, Probe, ProxyMode};
use kproxy_model::IpFamily;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::cluster::{cluster_yaml, TestService};
use support::{cluster_ip, for_each_mode, ip, landings, pods_hit, tcp, Running};

const WEB: u8 = 10;
const LB: u8 = 20;
const LOCAL: u8 = 30;
const EMPTY: u8 = 40;
const STICKY: u8 = 50;
const WEB_NODE_PORT: u16 = 30080;
const LOCAL_NODE_PORT: u16 = 30082;
const EMPTY_NODE_PORT: u16 = 30084;

fn service(name: &'static str, ip_suffix: u8, spec: Vec<&'static str>) -> TestService {
    TestService {
        name,
        ip_suffix,
        protocol: "TCP",
        port: 80,
        node_port: None,
        spec,
        status: "",
        pods: vec![0, 1, 2],
    }
}

/// The services under test: a NodePort with external IPs, a load balancer with source
/// ranges, a load balancer with `externalTrafficPolicy: Local`, a NodePort without
/// endpoints, and a ClusterIP with session affinity.
fn cluster() -> String {
    cluster_yaml(&[
        TestService {
            node_port: Some(WEB_NODE_PORT),
            ..service(
                "web",
                WEB,
                vec![
                    "type: NodePort",
                    "externalIPs: [198.51.100.10, \"2001:db8:e::10\"]",
                ],
            )
        },
        TestService {
            node_port: Some(30081),
            status: "{loadBalancer: {ingress: [{ip: 203.0.113.20}, {ip: \"2001:db8:1b::20\"}]}}",
            ..service(
                "lb",
                LB,
                vec![
                    "type: LoadBalancer",
                    "loadBalancerSourceRanges: [192.168.50.100/32, \"fd00:50::100/128\"]",
                ],
            )
        },
        TestService {
            node_port: Some(LOCAL_NODE_PORT),
            status: "{loadBalancer: {ingress: [{ip: 203.0.113.30}, {ip: \"2001:db8:1b::30\"}]}}",
            ..service(
                "local",
                LOCAL,
                vec![
                    "type: LoadBalancer",
                    "externalTrafficPolicy: Local",
                    "healthCheckNodePort: 32000",
                ],
            )
        },
        TestService {
            node_port: Some(EMPTY_NODE_PORT),
            pods: Vec::new(),
            ..service("empty", EMPTY, vec!["type: NodePort"])
        },
        service("sticky", STICKY, vec!["sessionAffinity: ClientIP"]),
    ])
}

fn at(ip: std::net::IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

fn lb_ip(family: IpFamily, suffix: u8) -> std::net::IpAddr {
    match family {
        IpFamily::V4 => ip(&format!("203.0.113.{suffix}")),
        IpFamily::V6 => ip(&format!("2001:db8:1b::{suffix}")),
    }
}

fn all_pods() -> Vec<String> {
    (0..3).map(plan::pod_name).collect()
}

#[test]
fn cluster_ip_balances_over_all_endpoints() {
    for_each_mode(
        "cluster_ip_balances_over_all_endpoints",
        &cluster(),
        |run| {
            let lab = &run.lab;
            for family in FAMILIES {
                let target = at(cluster_ip(family, WEB), 80);
                for from in [&lab.outside, &lab.client_pod, &lab.node] {
                    let hits = pods_hit(&landings(run.mode, from, target, 30));
                    assert_eq!(
                        hits,
                        all_pods(),
                        "[{}] {} -> {target}",
                        run.mode,
                        from.name()
                    );
                }
            }
        },
    );
}

#[test]
fn node_ports_answer_from_outside_and_from_the_node() {
    for_each_mode(
        "node_ports_answer_from_outside_and_from_the_node",
        &cluster(),
        |run| {
            let lab = &run.lab;
            for family in FAMILIES {
                let target = at(plan::node_ip(family), WEB_NODE_PORT);
                for from in [&lab.outside, &lab.node] {
                    let hits = pods_hit(&landings(run.mode, from, target, 30));
                    assert_eq!(
                        hits,
                        all_pods(),
                        "[{}] {} -> {target}",
                        run.mode,
                        from.name()
                    );
                }
            }
            // Localhost NodePorts (--iptables-localhost-nodeports) are an iptables-mode
            // feature; upstream's nftables mode does not have them.
            let localhost = at(ip("127.0.0.1"), WEB_NODE_PORT);
            if run.mode == ProxyMode::Nftables {
                let outcome = tcp(&lab.node, localhost);
                assert!(
                    outcome.landing().is_none(),
                    "[{}] {localhost}: {outcome}",
                    run.mode
                );
            } else {
                landings(run.mode, &lab.node, localhost, 5);
            }
        },
    );
}

#[test]
fn load_balancer_and_external_ips_reach_the_pods() {
    for_each_mode(
        "load_balancer_and_external_ips_reach_the_pods",
        &cluster(),
        |run| {
            for family in FAMILIES {
                let external = match family {
                    IpFamily::V4 => ip("198.51.100.10"),
                    IpFamily::V6 => ip("2001:db8:e::10"),
                };
                for target in [
                    at(external, 80),
                    at(lb_ip(family, LB), 80),
                    at(lb_ip(family, LOCAL), 80),
                ] {
                    let hits = pods_hit(&landings(run.mode, &run.lab.outside, target, 30));
                    assert_eq!(hits, all_pods(), "[{}] outside -> {target}", run.mode);
                }
            }
        },
    );
}

#[test]
fn masquerades_unless_traffic_policy_is_local() {
    for_each_mode(
        "masquerades_unless_traffic_policy_is_local",
        &cluster(),
        |run| {
            let lab = &run.lab;
            for family in FAMILIES {
                let node = plan::bridge_ip(family);
                let outside = plan::outside_ip(family, 0);
                let cases = [
                    (&lab.outside, at(plan::node_ip(family), WEB_NODE_PORT), node),
                    (&lab.outside, at(cluster_ip(family, WEB), 80), node),
                    (
                        &lab.outside,
                        at(plan::node_ip(family), LOCAL_NODE_PORT),
                        outside,
                    ),
                    (&lab.outside, at(lb_ip(family, LOCAL), 80), outside),
                    (
                        &lab.client_pod,
                        at(cluster_ip(family, WEB), 80),
                        plan::client_pod_ip(family),
                    ),
                ];
                for (from, target, seen) in cases {
                    for landing in landings(run.mode, from, target, 6) {
                        assert_eq!(
                            landing.seen_client_ip,
                            seen,
                            "[{}] {} -> {target} on {}",
                            run.mode,
                            from.name(),
                            landing.pod
                        );
                    }
                }
            }
        },
    );
}

/// How soon a REJECT must turn into "connection refused". IPv4: at once. IPv6: the lab's
/// veth answers so fast that the ICMPv6 error for the first SYN arrives while `connect()`
/// still holds the socket, and the kernel drops it (`TcpExtLockDroppedIcmps`); the SYN
/// sent again after 1 s gets its refusal. A dropped SYN would time out after 3 s.
fn refusal_budget(family: IpFamily) -> Duration {
    match family {
        IpFamily::V4 => Duration::from_millis(500),
        IpFamily::V6 => Duration::from_millis(1500),
    }
}

#[test]
fn service_without_endpoints_refuses_at_once() {
    for_each_mode(
        "service_without_endpoints_refuses_at_once",
        &cluster(),
        |run| {
            let lab = &run.lab;
            for family in FAMILIES {
                let targets = [
                    (&lab.outside, at(cluster_ip(family, EMPTY), 80)),
                    (&lab.client_pod, at(cluster_ip(family, EMPTY), 80)),
                    (&lab.outside, at(plan::node_ip(family), EMPTY_NODE_PORT)),
                ];
                for (from, target) in targets {
                    let started = Instant::now();
                    let probe = Probe::to(target).with_timeout(Duration::from_secs(3));
                    let outcome = tcp_probe(from, probe).expect("probe runs");
                    assert_eq!(
                        outcome,
                        Outcome::Refused,
                        "[{}] {} -> {target}",
                        run.mode,
                        from.name()
                    );
                    assert!(
                        started.elapsed() < refusal_budget(family),
                        "[{}] {} -> {target}: refusal took {:?}",
                        run.mode,
                        from.name(),
                        started.elapsed()
                    );
                }
            }
        },
    );
}

#[test]
fn load_balancer_source_ranges_keep_other_clients_out() {
    for_each_mode(
        "load_balancer_source_ranges_keep_other_clients_out",
        &cluster(),
        |run| {
            for family in FAMILIES {
                let target = at(lb_ip(family, LB), 80);
                let allowed = Probe::to(target).from_source(plan::outside_ip(family, 0));
                let outcome = tcp_probe(&run.lab.outside, allowed).expect("probe runs");
                assert!(
                    outcome.landing().is_some(),
                    "[{}] allowed source: {outcome}",
                    run.mode
                );
                let other = Probe::to(target)
                    .from_source(plan::outside_ip(family, 1))
                    .with_timeout(Duration::from_millis(500));
                for _ in 0..2 {
                    let outcome = tcp_probe(&run.lab.outside, other).expect("probe runs");
                    assert!(
                        matches!(outcome, Outcome::Timeout | Outcome::Refused),
                        "[{}] {} -> {target} outside the source ranges: {outcome}",
                        run.mode,
                        plan::outside_ip(family, 1)
                    );
                }
            }
        },
    );
}

#[test]
fn session_affinity_keeps_a_client_on_one_pod() {
    for_each_mode(
        "session_affinity_keeps_a_client_on_one_pod",
        &cluster(),
        |run: &mut Running| {
            let lab = &run.lab;
            for family in FAMILIES {
                let target = at(cluster_ip(family, STICKY), 80);
                for from in [&lab.outside, &lab.client_pod] {
                    let hits = pods_hit(&landings(run.mode, from, target, 15));
                    assert_eq!(
                        hits.len(),
                        1,
                        "[{}] {} -> {target}: {hits:?}",
                        run.mode,
                        from.name()
                    );
                }
            }
        },
    );
}
