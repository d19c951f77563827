//! The proxier and the kernel facade together, on fakes: what a sync leaves behind.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kproxy_model::objects::decode_object;
use kproxy_model::{ClusterStore, IpFamily, NamespacedName, Snapshot, StoreEvent};
use serde_json::json;

use super::fakes::{FakeHost, FakeIpsets, FakeIptables, FakeLink};
use super::{IpvsKernel, IpvsProxier, IpvsSettings};
use crate::fake::FakeIpvs;
use crate::handle::IpvsHandle;
use crate::types::{ConnectionCounts, Protocol, RealServerKey, ServiceKey};

type Kernel = IpvsKernel<FakeIpvs, FakeIpsets, FakeLink, FakeHost, FakeIptables>;

struct Node {
    store: ClusterStore,
    snapshot: Snapshot,
    proxier: IpvsProxier,
    kernel: Kernel,
}

impl Node {
    fn new() -> Node {
        Node {
            store: ClusterStore::new(),
            snapshot: Snapshot::new(IpFamily::V4, "n1"),
            proxier: IpvsProxier::new(IpvsSettings::new(IpFamily::V4, "n1")),
            kernel: IpvsKernel {
                ipvs: FakeIpvs::new(),
                ipset: FakeIpsets::new(),
                link: FakeLink::default(),
                host: FakeHost::default(),
                iptables: FakeIptables::default(),
            },
        }
    }

    fn apply(&mut self, doc: serde_json::Value) {
        let kind = doc["kind"].as_str().unwrap_or("").to_string();
        let object = decode_object(&kind, doc, 1).ok().flatten().expect("object");
        self.store.apply(StoreEvent::Apply(object));
    }

    fn service(&mut self, ip: &str, endpoints: &[&str]) {
        self.apply(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"clusterIP": ip, "ports": [{"port": 80, "protocol": "TCP"}]}}));
        let eps: Vec<_> = endpoints
            .iter()
            .map(|e| json!({"addresses": [e]}))
            .collect();
        self.apply(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "namespace": "ns",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "endpoints": eps, "ports": [{"port": 8080}]}),
        );
    }

    fn sync(&mut self, now: Instant) -> bool {
        let changed: BTreeSet<NamespacedName> = self.store.take_changes().services;
        self.snapshot
            .refresh(&self.store, &changed, &mut Vec::new());
        let observed = self.kernel.observe().expect("observe");
        let plan = self.proxier.sync(&self.snapshot, &observed, now);
        let ok = self.kernel.apply(&plan).ok();
        self.proxier.applied(ok);
        ok
    }
}

fn vs(ip: &str) -> ServiceKey {
    ServiceKey {
        addr: ip.parse().expect("ip"),
        port: 80,
        protocol: Protocol::Tcp,
    }
}

fn rs(ip: &str) -> RealServerKey {
    RealServerKey {
        addr: ip.parse().expect("ip"),
        port: 8080,
    }
}

#[test]
fn a_busy_endpoint_drains_at_weight_zero_then_goes() {
    let mut node = Node::new();
    let t0 = Instant::now();
    node.service("10.96.0.1", &["10.1.0.1", "10.1.0.2"]);
    assert!(node.sync(t0));
    let busy = ConnectionCounts {
        active: 1,
        inactive: 0,
    };
    assert!(node
        .kernel
        .ipvs
        .set_connections(&vs("10.96.0.1"), &rs("10.1.0.2"), busy));
    node.service("10.96.0.1", &["10.1.0.1"]);
    assert!(node.sync(t0));
    let dests = node
        .kernel
        .ipvs
        .destinations(&vs("10.96.0.1"))
        .expect("dests");
    let weights: Vec<u32> = dests.iter().map(|d| d.server.weight).collect();
    assert_eq!(weights, vec![1, 0]);
    assert_eq!(
        node.proxier.next_drain_check(),
        Some(t0 + super::DRAIN_CHECK_PERIOD)
    );
    node.kernel.ipvs.set_connections(
        &vs("10.96.0.1"),
        &rs("10.1.0.2"),
        ConnectionCounts::default(),
    );
    assert!(node.sync(t0 + Duration::from_secs(60)));
    assert_eq!(
        node.kernel
            .ipvs
            .destinations(&vs("10.96.0.1"))
            .expect("dests")
            .len(),
        1
    );
    assert!(node.proxier.draining().is_empty());
    assert_eq!(node.proxier.next_drain_check(), None);
}

#[test]
fn a_failed_restore_keeps_old_addresses_and_virtual_servers_until_a_retry() {
    let mut node = Node::new();
    node.service("10.96.0.1", &["10.1.0.1"]);
    assert!(node.sync(Instant::now()));
    node.service("10.96.0.2", &["10.1.0.1"]);
    node.kernel.iptables.fail_restore = true;
    assert!(!node.sync(Instant::now()));
    assert!(node.proxier.needs_retry());
    let bound: Vec<String> = node
        .kernel
        .link
        .addresses
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(bound, vec!["10.96.0.1", "10.96.0.2"]);
    assert_eq!(node.kernel.ipvs.services().expect("list").len(), 2);
    node.kernel.iptables.fail_restore = false;
    assert!(node.sync(Instant::now()));
    let bound: Vec<String> = node
        .kernel
        .link
        .addresses
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(bound, vec!["10.96.0.2"]);
    let keys: Vec<ServiceKey> = node
        .kernel
        .ipvs
        .services()
        .expect("list")
        .iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(keys, vec![vs("10.96.0.2")]);
    assert_eq!(
        node.kernel
            .ipset
            .entries("KUBE-CLUSTER-IP")
            .map(|e| e.len()),
        Some(1)
    );
}
