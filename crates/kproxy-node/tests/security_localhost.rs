//! CVE-2020-8558: with localhost NodePorts on (`--iptables-localhost-nodeports`, the
//! default; it sets `route_localnet`), a neighbour on the node's network must not reach
//! what listens on the node's 127.0.0.1, while the node itself uses NodePorts on
//! 127.0.0.1. The neighbour (the lab's outside namespace) puts hand-made frames addressed
//! to 127.0.0.1 on the wire; the same frame is delivered before kproxy runs (so the test
//! can see the hole) and dropped once it does, also when it is addressed to a NodePort on
//! 127.0.0.1 (kproxy's raw-table localnet guard; upstream's rules would DNAT it to a pod).
//! Prints (`MEASURED`) what happened to each.

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
    let dropped = guard_counter(&lab.node);
    assert!(dropped >= 1, "the localnet guard did not count the frame");

    let localhost = "127.0.0.1:30080".parse().expect("addr");
    let own = tcp_probe(&lab.node, Probe::to(localhost)).expect("probe");
    assert!(
        own.landing().is_some(),
        "the node's own localhost NodePort: {own}"
    );

    frame(30080).send(&lab.outside, "eth0", b"nodeport\n");
    std::thread::sleep(Duration::from_millis(300));
    let node_port_flows = localnet_flows(&lab.node);
    let dropped_total = guard_counter(&lab.node);
    assert_eq!(
        node_port_flows, 0,
        "a neighbour's frame to 127.0.0.1:30080 was NATed"
    );
    assert!(
        dropped_total > dropped,
        "the localnet guard did not count the frame to the NodePort"
    );
    report(
        TEST,
        format!(
            "neighbour frame to 127.0.0.1:{LOCAL_PORT}: delivered without kproxy ({before}), \
             dropped with kproxy (guard counted {dropped}); node -> 127.0.0.1:30080: {own}; \
             neighbour frame to 127.0.0.1:30080 (UDP NodePort): dropped (guard counted \
             {dropped_total} in all, {node_port_flows} conntrack flows)"
        ),
    );
}

/// Packets counted by kproxy's localnet guard in the raw table. iptables-nft now and then
/// calls a chain "incompatible" when it reads while another iptables-nft process writes
/// (the agent's periodic check), so a failed read is retried.
fn guard_counter(node: &kproxy_lab::Netns) -> u64 {
    let args = ["-t", "raw", "-L", "KPROXY-LOCALNET", "-v", "-x", "-n"];
    let mut listing = node.exec("iptables-nft", &args);
    for _ in 0..5 {
        if listing.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        listing = node.exec("iptables-nft", &args);
    }
    let listing = listing.unwrap_or_else(|e| {
        let nft = node.exec("nft", &["list", "table", "ip", "raw"]);
        panic!("iptables -L: {e}\nnft: {nft:?}")
    });
    listing
        .lines()
        .find(|l| l.contains("CVE-2020-8558"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no localnet guard rule in\n{listing}"))
}

/// Conntrack flows to 127.0.0.1:30080 that arrived from outside.
fn localnet_flows(node: &kproxy_lab::Netns) -> usize {
    node.exec(
        "conntrack",
        &[
            "-L",
            "-p",
            "udp",
            "-d",
            "127.0.0.1",
            "-s",
            "192.168.50.100",
            "--dport",
            "30080",
        ],
    )
    .unwrap_or_default()
    .lines()
    .filter(|l| l.starts_with("udp"))
    .count()
}
