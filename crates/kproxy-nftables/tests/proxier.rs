//! The proxier against the fake kernel: a cluster in, a ruleset (or a transaction) out.

use kproxy_model::{
    parse_manifest, ClusterStore, IpFamily, NamespacedName, Protocol, ServiceEntry, ServicePort,
    ServicePortName, Snapshot, SnapshotChanges, StoreEvent,
};
use kproxy_nftables::nft::{FakeNft, Family, NftRunner};
use kproxy_nftables::render::{render_service, RenderError};
use kproxy_nftables::{KernelView, LocalTrafficDetector, NftablesProxier, ProxierSettings};
use std::time::Instant;

fn settings(family: IpFamily) -> ProxierSettings {
    let mut s = ProxierSettings::new(family, "test-node");
    s.local_detector = LocalTrafficDetector::ClusterCidr(match family {
        IpFamily::V4 => "10.0.0.0/8".parse().expect("cidr"),
        IpFamily::V6 => "fd00:10::/64".parse().expect("cidr"),
    });
    s.local_addresses = vec![
        "192.168.0.2".parse().expect("ip"),
        "2001:db8::1".parse().expect("ip"),
    ];
    s.node_port_addresses = vec![
        "192.168.0.2/32".parse().expect("cidr"),
        "2001:db8::1/128".parse().expect("cidr"),
    ];
    s
}

struct World {
    store: ClusterStore,
    snapshot: Snapshot,
    proxier: NftablesProxier,
    nft: FakeNft,
}

impl World {
    fn new(family: IpFamily, yaml: &str) -> World {
        let store = ClusterStore::from_objects(parse_manifest(yaml).expect("parses").objects);
        World {
            snapshot: Snapshot::new(family, "test-node"),
            store,
            proxier: NftablesProxier::new(settings(family)).expect("valid"),
            nft: FakeNft::new(),
        }
    }

    fn changes(&mut self) -> SnapshotChanges {
        let changes = self.store.take_changes();
        self.snapshot
            .refresh(&self.store, &changes.services, &mut Vec::new())
    }

    fn sync(&mut self) -> kproxy_nftables::SyncReport {
        let changes = self.changes();
        self.proxier
            .sync_with(&mut self.nft, &self.snapshot, &changes, Instant::now())
            .expect("applies")
    }

    fn apply(&mut self, yaml: &str) {
        for o in parse_manifest(yaml).expect("parses").objects {
            self.store.apply(StoreEvent::Apply(o));
        }
    }
}

const AFFINITY: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: prod}\n\
spec: {clusterIP: 172.30.0.10, sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}},\n\
  ports: [{name: http, port: 80, protocol: TCP}]}\n---\n\
apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
metadata: {name: web-1, namespace: prod, labels: {kubernetes.io/service-name: web}}\n\
addressType: IPv4\nendpoints: [{addresses: [10.1.0.1]}]\nports: [{name: http, port: 8080, protocol: TCP}]\n";

#[test]
fn affinity_sets_are_deleted_when_affinity_is_turned_off() {
    let mut world = World::new(IpFamily::V4, AFFINITY);
    world.sync();
    assert!(world
        .nft
        .dump()
        .contains("flags dynamic,timeout ; timeout 60s ;"));
    world.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: prod}\n\
spec: {clusterIP: 172.30.0.10, ports: [{name: http, port: 80, protocol: TCP}]}\n",
    );
    world.sync();
    let dump = world.nft.dump();
    assert!(!dump.contains("affinity-"), "{dump}");
    assert!(dump.contains("meta l4proto tcp dnat to 10.1.0.1:8080"));
}

#[test]
fn hostile_names_never_reach_the_ruleset() {
    let yaml =
        "apiVersion: v1\nkind: Service\nmetadata: {name: \"x; flush ruleset\", namespace: prod}\n\
spec: {clusterIP: 172.30.0.11, ports: [{name: \"a b\", port: 80, protocol: TCP}]}\n";
    let mut world = World::new(IpFamily::V4, yaml);
    let changes = world.changes();
    world.proxier.observe(KernelView::Absent);
    let plan = world
        .proxier
        .sync(&world.snapshot, &changes, Instant::now());
    assert!(!plan.main.render().contains("flush ruleset"));
    assert!(!plan.main.render().contains("172.30.0.11"));

    let port = ServicePort {
        name: ServicePortName {
            service: NamespacedName::new("prod", "x; flush ruleset"),
            port: "a b".into(),
            protocol: Protocol::Tcp,
        },
        port: 80,
        cluster_ip: "172.30.0.11".parse().expect("ip"),
        node_port: 0,
        external_ips: vec![],
        load_balancer_ips: vec![],
        load_balancer_source_ranges: vec![],
        affinity_timeout: None,
        external_policy_local: false,
        internal_policy_local: false,
        health_check_node_port: 0,
    };
    let entry = ServiceEntry {
        service: port,
        endpoints: vec![],
    };
    let rendered = render_service(&settings(IpFamily::V4), &entry, &Default::default());
    assert!(
        matches!(rendered, Err(RenderError::BadName { .. })),
        "{rendered:?}"
    );
}

#[test]
fn ipv6_endpoints_are_bracketed_and_hashed_with_dots() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: n}\n\
spec: {clusterIP: \"fd00:10:96::5\", ports: [{name: p, port: 53, protocol: UDP}]}\n---\n\
apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
metadata: {name: s-1, namespace: n, labels: {kubernetes.io/service-name: s}}\n\
addressType: IPv6\nendpoints: [{addresses: [\"fd00:10:180::1\"]}]\nports: [{name: p, port: 5353, protocol: UDP}]\n";
    let mut world = World::new(IpFamily::V6, yaml);
    world.sync();
    let dump = world.nft.dump();
    assert!(dump.contains("add table ip6 kube-proxy"));
    assert!(
        dump.contains("meta l4proto udp dnat to [fd00:10:180::1]:5353"),
        "{dump}"
    );
    assert!(dump.contains("__fd00.10.180..1/5353"), "{dump}");
    assert!(
        dump.contains("ip6 daddr fd00:10:96::5 ip6 saddr != fd00:10::/64 jump mark-for-masquerade")
    );
}

#[test]
fn a_failed_sync_forces_a_full_one() {
    let mut world = World::new(IpFamily::V4, AFFINITY);
    world.sync();
    assert!(!world.proxier.wants_full_sync());
    world.proxier.on_applied(false);
    assert!(world.proxier.wants_full_sync());
    let report = world.sync();
    assert!(report.full);
    assert!(!world.proxier.wants_full_sync());
}

#[test]
fn unknown_kernel_state_flushes_element_containers() {
    let mut world = World::new(IpFamily::V4, AFFINITY);
    let changes = world.changes();
    world.proxier.observe(KernelView::Unknown);
    let plan = world
        .proxier
        .sync(&world.snapshot, &changes, Instant::now());
    let text = plan.main.render();
    assert!(text.contains("flush map ip kube-proxy service-ips"));
    assert!(text.contains("flush set ip kube-proxy cluster-ips"));
    world.nft.run(&plan.main).expect("applies");
}

#[test]
fn nodeports_on_every_address_use_fib_instead_of_a_set() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: np, namespace: n}\n\
spec: {type: NodePort, clusterIP: 172.30.0.12, ports: [{name: p, port: 80, protocol: TCP, nodePort: 30080}]}\n";
    let mut world = World::new(IpFamily::V4, yaml);
    let mut all = settings(IpFamily::V4);
    all.node_port_addresses.clear();
    world.proxier = NftablesProxier::new(all).expect("valid");
    world.sync();
    let dump = world.nft.dump();
    assert!(!dump.contains("nodeport-ips"), "{dump}");
    assert!(dump.contains("fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports"));
    assert!(dump
        .contains("no-endpoint-nodeports { tcp . 30080 comment \"n/np:p\" : goto reject-chain }"));
    assert!(world
        .nft
        .list_table(Family::Ip, "kube-proxy")
        .expect("lists")
        .is_some());
}

#[test]
fn cleanup_deletes_only_kproxy_tables() {
    let mut world = World::new(IpFamily::V4, AFFINITY);
    world.sync();
    let mut other = kproxy_nftables::Transaction::new(Family::Ip, "filter");
    other.add(kproxy_nftables::nft::Table::default());
    world.nft.run(&other).expect("other table");
    kproxy_nftables::delete_tables(&mut world.nft, "kube-proxy").expect("cleanup");
    assert!(world
        .nft
        .list_table(Family::Ip, "kube-proxy")
        .expect("lists")
        .is_none());
    assert!(world
        .nft
        .list_table(Family::Ip, "filter")
        .expect("lists")
        .is_some());
}
