//! Full-sync render of 10,000 services x 10 endpoints (one in ten a NodePort), and the
//! partial sync after one endpoint changes.

use criterion::{criterion_group, criterion_main, Criterion};
use kproxy_model::{parse_manifest, ClusterStore, IpFamily, Snapshot, SnapshotChanges, StoreEvent};
use kproxy_nftables::{KernelView, NftablesProxier, ProxierSettings};
use std::hint::black_box;
use std::time::Instant;

const SERVICES: usize = 10_000;
const ENDPOINTS: usize = 10;

fn service_yaml(i: usize) -> String {
    let (kind, node_port) = if i.is_multiple_of(10) {
        ("NodePort", format!(", nodePort: {}", 30000 + i % 2768))
    } else {
        ("ClusterIP", String::new())
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: svc{i}, namespace: ns{}}}\n\
spec: {{type: {kind}, clusterIP: 172.30.{}.{}, ports: [{{name: http, port: 80, protocol: TCP{node_port}}}]}}\n",
        i % 50,
        i / 250,
        i % 250 + 1
    )
}

fn slice_yaml(i: usize, generation: usize) -> String {
    let endpoints: Vec<String> = (0..ENDPOINTS)
        .map(|e| {
            let last = if e == 0 { 1 + 100 * generation } else { e + 1 };
            format!("{{addresses: [10.{}.{}.{last}]}}", i / 100, i % 100)
        })
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
metadata: {{name: svc{i}-1, namespace: ns{}, labels: {{kubernetes.io/service-name: svc{i}}}}}\n\
addressType: IPv4\nendpoints: [{}]\nports: [{{name: http, port: 8080, protocol: TCP}}]\n",
        i % 50,
        endpoints.join(", ")
    )
}

fn cluster() -> ClusterStore {
    let mut docs = Vec::new();
    for i in 0..SERVICES {
        docs.push(service_yaml(i));
        docs.push(slice_yaml(i, 0));
    }
    let manifest = parse_manifest(&docs.join("---\n")).expect("generated manifest parses");
    ClusterStore::from_objects(manifest.objects)
}

fn settings() -> ProxierSettings {
    let mut s = ProxierSettings::new(IpFamily::V4, "node-a");
    s.node_ip = "192.168.0.2".parse().ok();
    s.local_addresses = vec!["192.168.0.2".parse().expect("ip")];
    s.node_port_addresses = vec!["192.168.0.0/24".parse().expect("cidr")];
    s.local_detector =
        kproxy_nftables::LocalTrafficDetector::ClusterCidr("10.0.0.0/8".parse().expect("cidr"));
    s.service_cidrs = vec!["172.30.0.0/16".parse().expect("cidr")];
    s
}

fn full_sync(snapshot: &Snapshot) -> String {
    let mut proxier = NftablesProxier::new(settings()).expect("valid settings");
    proxier.observe(KernelView::Absent);
    let plan = proxier.sync(snapshot, &SnapshotChanges::default(), Instant::now());
    plan.main.render()
}

fn bench(c: &mut Criterion) {
    let mut store = cluster();
    store.take_changes();
    let mut warnings = Vec::new();
    let mut snapshot = Snapshot::build(&store, IpFamily::V4, "node-a", &mut warnings);

    let text = full_sync(&snapshot);
    println!(
        "full sync: {} services x {ENDPOINTS} endpoints: {} lines, {} bytes",
        SERVICES,
        text.lines().count(),
        text.len()
    );
    c.bench_function("full sync render (10k services x 10 endpoints)", |b| {
        b.iter(|| black_box(full_sync(&snapshot)))
    });

    let mut proxier = NftablesProxier::new(settings()).expect("valid settings");
    proxier.observe(KernelView::Absent);
    proxier.sync(&snapshot, &SnapshotChanges::default(), Instant::now());
    proxier.on_applied(true);
    let versions = [slice_yaml(7, 0), slice_yaml(7, 1)];
    let mut flip = 0;
    let mut partial = |report: bool| {
        flip ^= 1;
        let object = parse_manifest(&versions[flip])
            .expect("slice parses")
            .objects;
        object
            .into_iter()
            .for_each(|o| store.apply(StoreEvent::Apply(o)));
        let changes = store.take_changes();
        let snapshot_changes = snapshot.refresh(&store, &changes.services, &mut Vec::new());
        let plan = proxier.sync(&snapshot, &snapshot_changes, Instant::now());
        proxier.on_applied(true);
        let text = plan.main.render();
        if report {
            println!(
                "partial sync after one endpoint changed: {} operations, {} bytes",
                plan.main.len(),
                text.len()
            );
        }
        text
    };
    partial(true);
    c.bench_function("partial sync (one endpoint changed)", |b| {
        b.iter(|| black_box(partial(false)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
