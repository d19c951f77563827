//! Changes in the cluster reaching the kernel, end to end: a rewritten cluster file, the
//! API server (through watches, a dropped watch and a compaction), and a UDP client moving
//! to the new endpoint once its old one is gone (conntrack cleanup).

mod support;

use kproxy_lab::plan::{self, FAMILIES};
use kproxy_lab::{ClusterSource, LabApiServer, Probe, UdpSession};
use kproxy_model::IpFamily;
use std::net::SocketAddr;
use std::time::Duration;
use support::cluster::{cluster_yaml, TestService};
use support::{
    cluster_ip, for_each_mode, for_each_mode_with, pods_hit, tcp, wait_until, Running,
    CHANGE_TIMEOUT,
};

const WEB: u8 = 10;
const LATE: u8 = 60;
const DNS: u8 = 53;

fn tcp_service(name: &'static str, ip_suffix: u8, pods: Vec<u8>) -> TestService {
    TestService {
        name,
        ip_suffix,
        protocol: "TCP",
        port: 80,
        node_port: None,
        spec: Vec::new(),
        status: "",
        pods,
    }
}

fn web_target(family: IpFamily) -> SocketAddr {
    SocketAddr::new(cluster_ip(family, WEB), 80)
}

/// Waits until `service` answers from `pod` for both families.
fn wait_for_new_service(run: &Running, service: u8, pod: u8) {
    for family in FAMILIES {
        let target = SocketAddr::new(cluster_ip(family, service), 80);
        let expected = plan::pod_name(pod);
        wait_until(
            &format!("[{}] {target} answers from {expected}", run.mode),
            CHANGE_TIMEOUT,
            || tcp(&run.lab.outside, target).pod() == Some(expected.as_str()),
        );
    }
}

/// Waits until 20 connections to the web service in a row land only on `pods`.
fn wait_for_endpoints(run: &Running, pods: &[u8]) {
    let expected: Vec<String> = pods.iter().map(|&p| plan::pod_name(p)).collect();
    for family in FAMILIES {
        let target = web_target(family);
        wait_until(
            &format!("[{}] {target} lands only on {expected:?}", run.mode),
            CHANGE_TIMEOUT,
            || {
                let landed: Option<Vec<_>> = (0..20)
                    .map(|_| tcp(&run.lab.outside, target).landing().cloned())
                    .collect();
                landed.is_some_and(|l| pods_hit(&l) == expected)
            },
        );
    }
}

#[test]
fn a_rewritten_cluster_file_reaches_the_kernel() {
    let before = cluster_yaml(&[tcp_service("web", WEB, vec![0, 1, 2])]);
    let after = cluster_yaml(&[
        tcp_service("web", WEB, vec![0, 1]),
        tcp_service("late", LATE, vec![1]),
    ]);
    for_each_mode(
        "a_rewritten_cluster_file_reaches_the_kernel",
        &before,
        |run| {
            wait_for_endpoints(run, &[0, 1, 2]);
            run.rewrite_cluster(&after);
            wait_for_new_service(run, LATE, 1);
            wait_for_endpoints(run, &[0, 1]);
        },
    );
}

#[test]
fn a_change_in_the_api_reaches_the_kernel() {
    let initial = cluster_yaml(&[tcp_service("web", WEB, vec![0, 1, 2])]);
    let start_api = |lab: &kproxy_lab::Lab| {
        let server = LabApiServer::start(&lab.node).expect("API server starts in the node");
        server.apply_manifest(&initial).expect("cluster applied");
        let kubeconfig = lab.work_dir().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        (ClusterSource::Kubeconfig(kubeconfig), server)
    };
    for_each_mode_with(
        "a_change_in_the_api_reaches_the_kernel",
        start_api,
        |run, server| {
            wait_for_endpoints(run, &[0, 1, 2]);
            let late = tcp_service("late", LATE, vec![1]).yaml();
            server.apply_manifest(&late).expect("applied");
            wait_for_new_service(run, LATE, 1);
            server
                .call(|api| api.drop_watches())
                .expect("watches dropped");
            let fewer = tcp_service("web", WEB, vec![0, 1]).yaml();
            server.apply_manifest(&fewer).expect("applied");
            wait_for_endpoints(run, &[0, 1]);
            server.call(|api| api.compact()).expect("compacted");
            server
                .call(|api| api.drop_watches())
                .expect("watches dropped");
            let other = tcp_service("web", WEB, vec![2]).yaml();
            server.apply_manifest(&other).expect("applied");
            wait_for_endpoints(run, &[2]);
        },
    );
}

fn dns_service(pod: u8) -> TestService {
    TestService {
        protocol: "UDP",
        port: 53,
        ..tcp_service("dns", DNS, vec![pod])
    }
}

#[test]
fn a_udp_client_moves_to_the_new_endpoint_when_its_endpoint_is_replaced() {
    let before = cluster_yaml(&[dns_service(0)]);
    let after = cluster_yaml(&[dns_service(1)]);
    for_each_mode(
        "a_udp_client_moves_to_the_new_endpoint_when_its_endpoint_is_replaced",
        &before,
        |run| {
            let sessions: Vec<UdpSession> = FAMILIES
                .iter()
                .map(|&family| {
                    let target = SocketAddr::new(cluster_ip(family, DNS), 53);
                    let probe = Probe::to(target).with_timeout(Duration::from_millis(300));
                    UdpSession::open(&run.lab.outside, probe).expect("UDP socket")
                })
                .collect();
            for session in &sessions {
                wait_until(
                    &format!("[{}] UDP lands on pod-0", run.mode),
                    CHANGE_TIMEOUT,
                    || session.exchange().pod() == Some("pod-0"),
                );
            }
            run.rewrite_cluster(&after);
            // The same sockets keep sending (the conntrack entries stay fresh); only the
            // agent's cleanup can move them.
            for session in &sessions {
                wait_until(
                    &format!(
                        "[{}] UDP from {:?} moves to pod-1",
                        run.mode,
                        session.local_addr()
                    ),
                    CHANGE_TIMEOUT,
                    || session.exchange().pod() == Some("pod-1"),
                );
            }
        },
    );
}
