//! CVE-2020-8558: with localhost NodePorts on (`--iptables-localhost-nodeports`, the
//! default; it sets `route_localnet`), a neighbour on the node's network must not reach
//! what listens on the node's 127.0.0.1, while the node itself uses NodePorts on
//! 127.0.0.1. The neighbour (the lab's outside namespace) puts hand-made frames addressed
//! to 127.0.0.1 on the wire; the same frame is delivered before kproxy runs (so the test
//! can see the hole) and dropped once it does. Prints (`MEASURED`) what happened to each.

mod fault_support;

use fault_support::frames::{mac_of, UdpFrame};
use fault_support::{base_args, prerequisites, report, AgentProcess};
use kproxy_lab::{tcp_probe, Lab, LabSpec, Probe};
use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

const TEST: &str = "cve_2020_8558_localhost";
/// What listens on the node's loopback only.
const LOCAL_PORT: u16 = 9999;

const CLUSTER: &str = r#"apiVersion: v1
kind: Node
metadata: {name: node-0}
status: {addresses: [{type: InternalIP, address: 192.168.50.10}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: e2e}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  ports:
  - {name: t, port: 80, protocol: TCP, targetPort: 8080, nodePort: 30080}
  - {name: u, port: 80, protocol: UDP, targetPort: 8080, nodePort: 30080}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-v4, namespace: e2e, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: t, port: 8080, protocol: TCP}, {name: u, port: 8080, protocol: UDP}]
endpoints:
- {addresses: ["10.244.0.2"], conditions: {ready: true}, nodeName: node-0}
"#;

/// Whether a datagram reaches `socket` within a second.
fn received(socket: &UdpSocket) -> bool {
    let mut buffer = [0u8; 64];
    socket.recv_from(&mut buffer).is_ok()
}

#[test]
fn a_neighbour_cannot_reach_the_node_loopback_but_the_node_uses_localhost_node_ports() {
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    let lab = Lab::build(LabSpec { pods: 1 }).expect("lab");
    let local = lab
        .node
        .enter(|| UdpSocket::bind((Ipv4Addr::LOCALHOST, LOCAL_PORT)))
        .expect("enter node")
        .expect("bind loopback listener");
    local
        .set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let frame = |dport| UdpFrame {
        src_mac: mac_of(&lab.outside, "eth0"),
        dst_mac: mac_of(&lab.node, "eth0"),
        src: Ipv4Addr::new(192, 168, 50, 100),
        dst: Ipv4Addr::LOCALHOST,
        sport: 40000,
        dport,
    };

    // The hole: route_localnet is on in the lab's node (as kproxy sets it), no rules yet.
    frame(LOCAL_PORT).send(&lab.outside, "eth0", b"before\n");
    let before = received(&local);
    assert!(
        before,
        "the crafted frame must reach the node's loopback without kproxy's rules, or this \
         test proves nothing"
    );

    let file = lab.write_file("cluster.yaml", CLUSTER).expect("cluster");
    let mut args = base_args(
        &["--proxy-mode", "iptables", "--iptables-backend", "nft"],
        "30s",
    );
    args.extend(["--cluster-file".into(), file.display().to_string()]);
    let mut agent = AgentProcess::start(
        &binary,
        &lab.node,
        &[],
        &args,
        &[],
        &lab.work_dir().join("agent.log"),
    );
    agent.wait_count(fault_support::FULL_SYNCS, 1, Duration::from_secs(30));
    assert_eq!(
        lab.node
            .exec("cat", &["/proc/sys/net/ipv4/conf/all/route_localnet"])
            .expect("sysctl")
            .trim(),
        "1"
    );

    frame(LOCAL_PORT).send(&lab.outside, "eth0", b"after\n");
    let after = received(&local);
    assert!(
        !after,
        "a neighbour reached 127.0.0.1:{LOCAL_PORT} on the node"
    );
    let dropped = drop_counter(&lab.node);
    assert!(
        dropped >= 1,
        "the localnet DROP rule did not count the frame"
    );

    let localhost = "127.0.0.1:30080".parse().expect("addr");
    let own = tcp_probe(&lab.node, Probe::to(localhost)).expect("probe");
    assert!(
        own.landing().is_some(),
        "the node's own localhost NodePort: {own}"
    );

    let conntrack_before = localnet_flows(&lab.node);
    frame(30080).send(&lab.outside, "eth0", b"nodeport\n");
    std::thread::sleep(Duration::from_millis(300));
    let node_port_flows = localnet_flows(&lab.node).saturating_sub(conntrack_before);
    report(
        TEST,
        format!(
            "neighbour frame to 127.0.0.1:{LOCAL_PORT}: delivered without kproxy ({before}), \
             dropped with kproxy (DROP rule counted {dropped}); node -> 127.0.0.1:30080: {own}; \
             neighbour frame to 127.0.0.1:30080 (UDP NodePort): {node_port_flows} flows DNATed"
        ),
    );
}

/// Packets counted by the "block incoming localnet connections" rule.
fn drop_counter(node: &kproxy_lab::Netns) -> u64 {
    let listing = node
        .exec(
            "iptables-nft",
            &["-t", "filter", "-L", "KUBE-FIREWALL", "-v", "-x", "-n"],
        )
        .expect("iptables -L");
    listing
        .lines()
        .find(|l| l.contains("block incoming localnet connections"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no localnet rule in\n{listing}"))
}

/// Conntrack flows whose original destination is 127.0.0.1 and that arrived from outside.
fn localnet_flows(node: &kproxy_lab::Netns) -> usize {
    node.exec(
        "conntrack",
        &["-L", "-p", "udp", "-d", "127.0.0.1", "-s", "192.168.50.100"],
    )
    .unwrap_or_default()
    .lines()
    .filter(|l| l.starts_with("udp"))
    .count()
}
