//! `loadBalancerSourceRanges` is enforced by the kernel for the load-balancer IP and, as
//! upstream, not for the service's NodePort: a client inside the ranges reaches the LB IP,
//! a client outside them is dropped there but reaches the NodePort. In iptables mode
//! (nft backend) and nftables mode. Prints (`MEASURED`) each outcome.

mod fault_support;

use fault_support::{base_args, prerequisites, report, AgentProcess, FULL_SYNCS};
use kproxy_lab::{tcp_probe, Lab, LabSpec, Outcome, Probe};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

const TEST: &str = "load_balancer_source_ranges";

const CLUSTER: &str = r#"apiVersion: v1
kind: Node
metadata: {name: node-0}
status: {addresses: [{type: InternalIP, address: 192.168.50.10}]}
---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: e2e}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.40
  loadBalancerSourceRanges: [192.168.50.100/32]
  ports: [{name: p, port: 80, protocol: TCP, targetPort: 8080, nodePort: 30090}]
status: {loadBalancer: {ingress: [{ip: 203.0.113.10}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: lb-v4, namespace: e2e, labels: {kubernetes.io/service-name: lb}}
addressType: IPv4
ports: [{name: p, port: 8080, protocol: TCP}]
endpoints:
- {addresses: ["10.244.0.2"], conditions: {ready: true}, nodeName: node-0}
"#;

#[test]
fn iptables_mode_enforces_source_ranges_on_the_lb_ip_only() {
    source_ranges(
        &["--proxy-mode", "iptables", "--iptables-backend", "nft"],
        "iptables-nft",
    );
}

#[test]
fn nftables_mode_enforces_source_ranges_on_the_lb_ip_only() {
    source_ranges(&["--proxy-mode", "nftables"], "nftables");
}

fn source_ranges(mode: &[&str], name: &str) {
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    let lab = Lab::build(LabSpec { pods: 1 }).expect("lab");
    let file = lab.write_file("cluster.yaml", CLUSTER).expect("cluster");
    let mut args = base_args(mode, "30s");
    args.extend(["--cluster-file".into(), file.display().to_string()]);
    let mut agent = AgentProcess::start(
        &binary,
        &lab.node,
        &[],
        &args,
        &[],
        &lab.work_dir().join("agent.log"),
    );
    agent.wait_count(FULL_SYNCS, 1, Duration::from_secs(30));

    let allowed: IpAddr = [192, 168, 50, 100].into();
    let other: IpAddr = [192, 168, 50, 101].into();
    let lb: SocketAddr = ([203, 0, 113, 10], 80).into();
    let node_port: SocketAddr = ([192, 168, 50, 10], 30090).into();
    let probe = |target, source| {
        tcp_probe(
            &lab.outside,
            Probe::to(target)
                .from_source(source)
                .with_timeout(Duration::from_millis(700)),
        )
        .expect("probe runs")
    };
    let inside_lb = probe(lb, allowed);
    let outside_lb = probe(lb, other);
    let outside_node_port = probe(node_port, other);
    assert!(
        inside_lb.landing().is_some(),
        "[{name}] allowed client -> LB: {inside_lb}"
    );
    assert!(
        matches!(outside_lb, Outcome::Timeout | Outcome::Refused),
        "[{name}] other client -> LB: {outside_lb}"
    );
    assert!(
        outside_node_port.landing().is_some(),
        "[{name}] other client -> NodePort (not restricted, as upstream): {outside_node_port}"
    );
    report(
        TEST,
        format!(
            "[{name}] {allowed} -> LB {lb}: {inside_lb}; {other} -> LB: {outside_lb}; \
             {other} -> NodePort {node_port}: {outside_node_port}"
        ),
    );
}
