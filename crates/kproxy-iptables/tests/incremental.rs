//! Incremental partial syncs (`-D`/`-I` in the dispatch chains) leave the kernel in the same
//! state as a full sync would: random cluster changes are applied both ways to fake
//! kernels and the results compared chain by chain, with settings changes and restarts
//! (a new proxier told the kernel's chains) in between.

use kproxy_iptables::fake::FakeKernel;
use kproxy_iptables::{jump_rules, IptablesProxier, IptablesSettings, LocalDetector};
use kproxy_model::slim::{
    AddressType, Conditions, IpText, ServiceType, SliceMeta, SlimEndpoint, SlimEndpointPort,
    SlimEndpointSlice, SlimMeta, SlimService, SlimServicePort, SlimServiceSpec,
};
use kproxy_model::{
    ClusterStore, IpFamily, KubeObject, ObjectKind, ObjectRef, Snapshot, StoreEvent,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// One random change to the cluster.
#[derive(Debug, Clone)]
enum Change {
    /// (Re)create service `n` with a kind (0 ClusterIP, 1 NodePort, 2 eTP Local LB).
    Service(usize, u8),
    DeleteService(usize),
    /// Give service `n` these endpoints: (pod index, ready, local).
    Endpoints(usize, Vec<(u8, bool, bool)>),
    DeleteEndpoints(usize),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (0..6usize, 0..3u8).prop_map(|(n, k)| Change::Service(n, k)),
        (0..6usize).prop_map(Change::DeleteService),
        (
            0..6usize,
            proptest::collection::vec((0..8u8, any::<bool>(), any::<bool>()), 0..4)
        )
            .prop_map(|(n, e)| Change::Endpoints(n, e)),
        (0..6usize).prop_map(Change::DeleteEndpoints),
    ]
}

fn event(change: &Change) -> StoreEvent {
    match change {
        Change::Service(n, kind) => {
            let type_ = match kind {
                0 => ServiceType::ClusterIp,
                1 => ServiceType::NodePort,
                _ => ServiceType::LoadBalancer,
            };
            StoreEvent::Apply(KubeObject::Service(Box::new(SlimService {
                metadata: SlimMeta {
                    name: format!("svc{n}"),
                    namespace: "ns".into(),
                    resource_version: None,
                },
                spec: Some(SlimServiceSpec {
                    type_,
                    cluster_ip: Some(IpText::parse(&format!("10.96.0.{}", n + 1))),
                    external_policy_local: *kind == 2,
                    health_check_node_port: (*kind == 2).then_some(32000 + *n as i32),
                    ports: vec![SlimServicePort {
                        name: "p".into(),
                        port: 80,
                        node_port: (*kind > 0).then_some(30000 + *n as i32),
                        ..SlimServicePort::default()
                    }],
                    ..SlimServiceSpec::default()
                }),
                load_balancer_ingress: Vec::new(),
            })))
        }
        Change::DeleteService(n) => StoreEvent::Delete(ObjectRef {
            kind: ObjectKind::Service,
            namespace: "ns".into(),
            name: format!("svc{n}"),
        }),
        Change::Endpoints(n, eps) => {
            StoreEvent::Apply(KubeObject::EndpointSlice(Box::new(SlimEndpointSlice {
                metadata: SliceMeta {
                    name: format!("svc{n}-1"),
                    namespace: "ns".into(),
                    service_name: Some(format!("svc{n}")),
                    ..SliceMeta::default()
                },
                address_type: AddressType::V4,
                endpoints: eps
                    .iter()
                    .map(|(pod, ready, local)| SlimEndpoint {
                        address: Some(IpText::parse(&format!("10.244.{n}.{}", pod + 1))),
                        conditions: Conditions {
                            ready: Some(*ready),
                            serving: Some(true),
                            terminating: Some(!ready),
                        },
                        node_name: Some(if *local { "node-0" } else { "node-1" }.into()),
                        hints: None,
                    })
                    .collect(),
                ports: Box::new([SlimEndpointPort {
                    name: "p".into(),
                    port: Some(8080),
                    ..SlimEndpointPort::default()
                }]),
            })))
        }
        Change::DeleteEndpoints(n) => StoreEvent::Delete(ObjectRef {
            kind: ObjectKind::EndpointSlice,
            namespace: "ns".into(),
            name: format!("svc{n}-1"),
        }),
    }
}

fn settings(incremental: bool) -> IptablesSettings {
    let mut s = IptablesSettings::new(IpFamily::V4, "node-0");
    s.local_detector = LocalDetector::Cidrs(vec!["10.244.0.0/16".parse().expect("cidr")]);
    s.incremental_dispatch = incremental;
    if incremental {
        s.max_services_per_restore = Some(1);
    }
    s
}

/// Applies a plan's chunks, then its main restore.
fn apply(kernel: &mut FakeKernel, plan: &kproxy_iptables::SyncPlan) -> Result<(), String> {
    for chunk in &plan.chunks {
        kernel
            .restore(&chunk.to_string())
            .map_err(|e| format!("chunk: {e}"))?;
    }
    kernel
        .restore(&plan.restore.to_string())
        .map_err(|e| e.to_string())
}

/// The kernel's chains, dispatch chains as sorted sets (their order carries no meaning).
fn normalized(kernel: &FakeKernel) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for table in ["filter", "nat"] {
        for chain in kernel.chains(table) {
            let mut rules = kernel
                .chain_rules(table, &chain)
                .unwrap_or_default()
                .to_vec();
            let dispatch = matches!(
                chain.as_str(),
                "KUBE-SERVICES"
                    | "KUBE-NODEPORTS"
                    | "KUBE-EXTERNAL-SERVICES"
                    | "KUBE-PROXY-FIREWALL"
            );
            if dispatch {
                rules.sort();
            }
            out.insert(format!("{table}/{chain}"), rules);
        }
    }
    out
}

fn full_sync_kernel(store: &ClusterStore) -> FakeKernel {
    let mut warnings = Vec::new();
    let snapshot = Snapshot::build(store, IpFamily::V4, "node-0", &mut warnings);
    let mut kernel = FakeKernel::new();
    kernel.ensure_jumps(&jump_rules(IpFamily::V4, true));
    let plan =
        IptablesProxier::new(settings(false)).sync(&snapshot, &BTreeSet::new(), Instant::now());
    kernel
        .restore(&plan.restore.to_string())
        .expect("full sync applies");
    kernel
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn incremental_syncs_equal_a_full_sync(changes in proptest::collection::vec(change(), 1..25)) {
        let mut store = ClusterStore::new();
        for n in 0..3 {
            store.apply(event(&Change::Service(n, 1)));
            store.apply(event(&Change::Endpoints(n, vec![(0, true, false)])));
        }
        let mut warnings = Vec::new();
        let mut snapshot = Snapshot::new(IpFamily::V4, "node-0");
        let mut proxier = IptablesProxier::new(settings(true));
        let mut kernel = FakeKernel::new();
        kernel.ensure_jumps(&jump_rules(IpFamily::V4, true));
        for (step, change) in changes.iter().enumerate() {
            store.apply(event(change));
            let changed = store.take_changes().services;
            snapshot.refresh(&store, &changed, &mut warnings);
            if step % 5 == 4 {
                proxier.force_full_sync();
            }
            if step % 7 == 6 {
                // As after a node change: what was written must be kept or cleaned up
                // without reading the kernel again.
                proxier.change_settings(settings(true));
            }
            if step % 11 == 10 {
                // As after a restart: the new proxier learns the kernel's chains, and a
                // partial sync later must not delete the ones the first sync reused.
                proxier = IptablesProxier::new(settings(true));
                proxier.set_kernel_chains(kernel.chains("nat"));
            }
            let plan = proxier.sync(&snapshot, &changed, Instant::now());
            let applied = apply(&mut kernel, &plan);
            prop_assert!(applied.is_ok(), "step {step} {change:?}: {applied:?}\n{}", plan.restore);
            proxier.applied(true);
            prop_assert_eq!(normalized(&kernel), normalized(&full_sync_kernel(&store)), "after step {} {:?}", step, change);
        }
    }
}
