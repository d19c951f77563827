//! Rendering cost at scale: 10,000 services with 10 endpoints each, one in ten a NodePort.
//! Prints the output size; criterion prints the times.

use criterion::{criterion_group, criterion_main, Criterion};
use kproxy_iptables::{IptablesProxier, IptablesSettings, LocalDetector};
use kproxy_model::slim::{
    AddressType, IpText, ServiceType, SliceMeta, SlimEndpoint, SlimEndpointPort, SlimEndpointSlice,
    SlimMeta, SlimService, SlimServicePort, SlimServiceSpec,
};
use kproxy_model::{ClusterStore, IpFamily, KubeObject, NamespacedName, Snapshot, StoreEvent};
use std::collections::BTreeSet;
use std::time::Instant;

const SERVICES: usize = 10_000;
const ENDPOINTS: usize = 10;

fn service(i: usize) -> KubeObject {
    let node_port = i.is_multiple_of(10).then_some(30000 + (i / 10) as i32);
    KubeObject::Service(Box::new(SlimService {
        metadata: SlimMeta {
            name: format!("svc-{i}"),
            namespace: "bench".into(),
            resource_version: None,
        },
        spec: Some(SlimServiceSpec {
            type_: if node_port.is_some() {
                ServiceType::NodePort
            } else {
                ServiceType::ClusterIp
            },
            cluster_ip: Some(IpText::parse(&format!("10.96.{}.{}", i / 250, i % 250 + 1))),
            ports: vec![SlimServicePort {
                name: "http".into(),
                port: 80,
                node_port,
                ..SlimServicePort::default()
            }],
            ..SlimServiceSpec::default()
        }),
        load_balancer_ingress: Vec::new(),
    }))
}

fn slice(i: usize, generation: usize) -> KubeObject {
    KubeObject::EndpointSlice(Box::new(SlimEndpointSlice {
        metadata: SliceMeta {
            name: format!("svc-{i}-abc"),
            namespace: "bench".into(),
            service_name: Some(format!("svc-{i}")),
            ..SliceMeta::default()
        },
        address_type: AddressType::V4,
        endpoints: (0..ENDPOINTS)
            .map(|e| SlimEndpoint {
                address: Some(IpText::parse(&format!(
                    "10.{}.{}.{}",
                    64 + e + generation,
                    i / 250,
                    i % 250 + 1
                ))),
                ..SlimEndpoint::default()
            })
            .collect(),
        ports: Box::new([SlimEndpointPort {
            name: "http".into(),
            port: Some(8080),
            ..SlimEndpointPort::default()
        }]),
    }))
}

fn settings() -> IptablesSettings {
    let mut settings = IptablesSettings::new(IpFamily::V4, "node-0");
    settings.local_detector = LocalDetector::Cidrs(vec!["10.64.0.0/10".parse().expect("cidr")]);
    settings
}

fn bench_render(c: &mut Criterion) {
    let mut store =
        ClusterStore::from_objects((0..SERVICES).flat_map(|i| [service(i), slice(i, 0)]));
    store.take_changes();
    let mut warnings = Vec::new();
    let started = Instant::now();
    let mut snapshot = Snapshot::build(&store, IpFamily::V4, "node-0", &mut warnings);
    println!(
        "model: snapshot of {SERVICES} services built in {:?}",
        started.elapsed()
    );
    let none = BTreeSet::new();
    let plan = IptablesProxier::new(settings()).sync(&snapshot, &none, Instant::now());
    let mut lines = 0;
    if plan.restore.for_each_line(|_| lines += 1).is_err() {
        println!("full sync: the rules cache did not decompress");
    }
    println!("full sync: {} bytes, {lines} lines", plan.restore.len());

    // The agent keeps its proxier and drops a plan only after the kernel took it, so the
    // time to tear both down is left out.
    c.bench_function("full sync, cold (new proxier)", |b| {
        b.iter_with_large_drop(|| {
            let mut proxier = IptablesProxier::new(settings());
            let plan = proxier.sync(&snapshot, &none, Instant::now());
            (proxier, plan)
        })
    });

    let mut proxier = IptablesProxier::new(settings());
    proxier.sync(&snapshot, &none, Instant::now());
    proxier.applied(true);
    c.bench_function("full sync, warm (cached services)", |b| {
        b.iter(|| {
            proxier.force_full_sync();
            let plan = proxier.sync(&snapshot, &none, Instant::now());
            proxier.applied(true);
            plan
        })
    });
    c.bench_function(
        "full sync, warm: write the restore input (decompressed)",
        |b| b.iter(|| plan.restore.write_to(&mut std::io::sink())),
    );

    let mut generation = 0;
    c.bench_function("one endpoint change: model refresh + partial sync", |b| {
        b.iter(|| {
            generation = (generation + 1) % 2;
            store.apply(StoreEvent::Apply(slice(42, generation)));
            let changes = store.take_changes();
            snapshot.refresh(&store, &changes.services, &mut warnings);
            let plan = proxier.sync(&snapshot, &changes.services, Instant::now());
            proxier.applied(true);
            plan
        })
    });
    let mut incremental_settings = settings();
    incremental_settings.incremental_dispatch = true;
    let mut incremental = IptablesProxier::new(incremental_settings);
    incremental.sync(&snapshot, &none, Instant::now());
    incremental.applied(true);
    c.bench_function(
        "one endpoint change: model refresh + incremental sync",
        |b| {
            b.iter(|| {
                generation = (generation + 1) % 2;
                store.apply(StoreEvent::Apply(slice(42, generation)));
                let changes = store.take_changes();
                snapshot.refresh(&store, &changes.services, &mut warnings);
                let plan = incremental.sync(&snapshot, &changes.services, Instant::now());
                incremental.applied(true);
                plan
            })
        },
    );
    store.apply(StoreEvent::Apply(slice(42, generation + 1)));
    let changes = store.take_changes();
    snapshot.refresh(&store, &changes.services, &mut warnings);
    let plan = incremental.sync(&snapshot, &changes.services, Instant::now());
    incremental.applied(true);
    println!("incremental sync: {} bytes", plan.restore.len());

    let changed = BTreeSet::from([NamespacedName::new("bench", "svc-42")]);
    let plan = proxier.sync(&snapshot, &changed, Instant::now());
    proxier.applied(true);
    println!("partial sync: {} bytes", plan.restore.len());
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench_render
}
criterion_main!(benches);
