//! Balancing, session affinity, a graceful drain under traffic, and a Service's removal,
//! with real TCP connections from a client namespace.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use kproxy_ipvs::ipset::{IpsetCommand, IpsetRunner};
use kproxy_ipvs::link::VipInterface;
use kproxy_ipvs::{IpvsHandle, Protocol, RealServerKey, ServiceKey};
use kproxy_model::ObjectKind;

use super::cluster::{service, slice};
use super::net::{connect_from, namespace, reset, serve, sh};
use super::node::Node;
use crate::gate::in_guest;

const CLIENT: &str = "mc";
const NODE_IP: &str = "10.253.0.1";
const B1: &str = "10.252.1.2";
const B2: &str = "10.252.2.2";

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("address"), port)
}

fn key(ip: &str, port: u16) -> ServiceKey {
    ServiceKey {
        addr: ip.parse().expect("address"),
        port,
        protocol: Protocol::Tcp,
    }
}

fn backend(ip: &str) -> RealServerKey {
    RealServerKey {
        addr: ip.parse().expect("address"),
        port: 8080,
    }
}

/// Backend names seen over `n` connections, each reset after its greeting (IPVS forgets a
/// reset connection within seconds, a closed one only after TIME_WAIT's two minutes).
fn spread(to: SocketAddr, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let (name, conn) = connect_from(CLIENT, to);
        reset(conn);
        *seen.entry(name).or_insert(0) += 1;
    }
    seen
}

fn ipset_entries(set: &str) -> Vec<String> {
    let save = IpsetCommand::new().save().expect("ipset save");
    let prefix = format!("add {set} ");
    save.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
        .collect()
}

fn setup_network() {
    for (name, veth, prefix) in [
        ("mb1", "mveth1", "10.252.1"),
        ("mb2", "mveth2", "10.252.2"),
        (CLIENT, "mvethc", "10.253.0"),
    ] {
        namespace(name, veth, prefix);
    }
    serve("mb1");
    serve("mb2");
}

#[test]
#[ignore = "needs the IPVS guest kernel: tools/ipvs-vm/test"]
fn ipvs_mode_balances_keeps_affinity_drains_and_cleans_up() {
    if !in_guest("ipvs_mode_balances_keeps_affinity_drains_and_cleans_up") {
        return;
    }
    setup_network();
    let mut node = Node::start("guest-node", Duration::from_secs(600));
    node.apply(service("web", "10.96.77.10", 30080, false));
    node.apply(slice("web", &[B1, B2]));
    node.apply(service("sticky", "10.96.77.11", 30081, true));
    node.apply(slice("sticky", &[B1, B2]));
    node.sync();

    let both = BTreeMap::from([("mb1".to_string(), 5), ("mb2".to_string(), 5)]);
    assert_eq!(spread(addr("10.96.77.10", 80), 10), both, "ClusterIP");
    assert_eq!(spread(addr(NODE_IP, 30080), 10), both, "NodePort");
    let sticky = spread(addr("10.96.77.11", 80), 8);
    assert_eq!(sticky.len(), 1, "ClientIP affinity: {sticky:?}");
    assert_eq!(
        spread(addr(NODE_IP, 30081), 6).len(),
        1,
        "affinity on the NodePort"
    );

    drain_under_traffic(&mut node);
    remove_service(&mut node);

    node.cleanup();
    let left = node.kernel.ipvs.services().expect("list");
    assert!(left.is_empty(), "{left:?}");
    sh("ip netns del mb1; ip netns del mb2; ip netns del mc");
}

/// An endpoint removed while a connection to it is open: weight 0 and no new connections,
/// then deleted once the connection is gone.
fn drain_under_traffic(node: &mut Node) {
    let vip = addr("10.96.77.10", 80);
    let (held_on, held) = connect_from(CLIENT, vip);
    let (gone, kept) = if held_on == "mb1" { (B1, B2) } else { (B2, B1) };
    node.apply(slice("web", &[kept]));
    node.sync();
    let dests = node
        .kernel
        .ipvs
        .destinations(&key("10.96.77.10", 80))
        .expect("dests");
    let old = dests
        .iter()
        .find(|d| d.server.key == backend(gone))
        .expect("the removed endpoint stays while it drains");
    assert_eq!(old.server.weight, 0);
    assert!(old.connections.active >= 1, "{old:?}");
    let vs = key("10.96.77.10", 80);
    assert!(node.proxier.draining().contains(&vs, &backend(gone)));
    let kept_name = if kept == B1 { "mb1" } else { "mb2" };
    let seen = spread(vip, 4);
    assert_eq!(seen.keys().collect::<Vec<_>>(), vec![kept_name], "{seen:?}");

    reset(held);
    let start = Instant::now();
    loop {
        node.sync();
        let dests = node
            .kernel
            .ipvs
            .destinations(&key("10.96.77.10", 80))
            .expect("dests");
        if dests.iter().all(|d| d.server.key != backend(gone)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "never drained: {dests:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    println!(
        "mode: drained endpoint deleted {:.1?} after its last connection closed",
        start.elapsed()
    );
    assert!(node.proxier.draining().is_empty());
}

/// Deleting a Service removes its virtual servers, its address and its set entries.
fn remove_service(node: &mut Node) {
    node.delete(ObjectKind::Service, "ns1", "web");
    node.delete(ObjectKind::EndpointSlice, "ns1", "web-1");
    node.sync();
    let keys: Vec<ServiceKey> = node
        .kernel
        .ipvs
        .services()
        .expect("list")
        .iter()
        .map(|s| s.key)
        .collect();
    assert!(!keys.contains(&key("10.96.77.10", 80)), "{keys:?}");
    assert!(keys.iter().all(|k| k.port != 30080), "{keys:?}");
    assert!(keys.contains(&key("10.96.77.11", 80)), "{keys:?}");
    let bound: Vec<IpAddr> = node.kernel.link.addresses().expect("addresses");
    assert!(
        !bound.contains(&"10.96.77.10".parse().expect("ip")),
        "{bound:?}"
    );
    assert!(
        bound.contains(&"10.96.77.11".parse().expect("ip")),
        "{bound:?}"
    );
    assert_eq!(ipset_entries("KUBE-CLUSTER-IP"), vec!["10.96.77.11,tcp:80"]);
    assert_eq!(ipset_entries("KUBE-NODE-PORT-TCP"), vec!["30081"]);
    assert!(!ipset_entries("KUBE-IPVS-IPS").contains(&"10.96.77.10".to_string()));
    let refused =
        std::net::TcpStream::connect_timeout(&addr("10.96.77.10", 80), Duration::from_secs(2));
    assert!(refused.is_err(), "the removed ClusterIP still answers");
}
