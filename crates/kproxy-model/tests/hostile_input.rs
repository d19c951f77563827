//! Hostile and broken input never panics the parser or the model, and one bad object never
//! hides the others: random text, random JSON shaped like Services and EndpointSlices, and
//! a list of specific invalid Services each beside a good one.

use kproxy_model::{parse_manifest, ClusterStore, IpFamily, Snapshot};
use proptest::prelude::*;
use serde_json::{json, Value};

fn build(text: &str) -> Option<(Snapshot, Vec<kproxy_model::ModelWarning>)> {
    let manifest = parse_manifest(text).ok()?;
    let store = ClusterStore::from_objects(manifest.objects);
    let mut warnings = Vec::new();
    let v4 = Snapshot::build(&store, IpFamily::V4, "node-0", &mut warnings);
    let _v6 = Snapshot::build(&store, IpFamily::V6, "node-0", &mut warnings);
    Some((v4, warnings))
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("10.0.0.1"),
            Just("::1"),
            Just("01.2.3.4"),
            Just("TCP"),
            Just("Local")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("ports".to_string()),
                    Just("port".to_string()),
                    Just("clusterIP".to_string()),
                    Just("addresses".to_string()),
                    "[a-zA-Z]{1,8}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in ".{0,400}") {
        let _ = build(&text);
    }

    #[test]
    fn random_objects_never_panic(spec in any_json(), status in any_json(), endpoints in any_json(), ports in any_json()) {
        let docs = json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "ns"},
             "spec": spec, "status": status},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"name": "s-1", "namespace": "ns", "labels": {"kubernetes.io/service-name": "s"}},
             "addressType": "IPv4", "endpoints": endpoints, "ports": ports},
        ]});
        let _ = build(&docs.to_string());
    }
}

fn good_service() -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "good", "namespace": "ns"},
           "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "p", "port": 80}]}})
}

#[test]
fn each_invalid_service_is_skipped_with_a_warning_and_the_good_one_stays() {
    let bad_specs = [
        (
            "bad cluster IP",
            json!({"clusterIP": "10.96.0.999", "ports": [{"port": 80}]}),
            "clusterIPs",
        ),
        (
            "port 70000",
            json!({"clusterIP": "10.96.0.11", "ports": [{"port": 70000}]}),
            "ports[0].port",
        ),
        (
            "negative port",
            json!({"clusterIP": "10.96.0.11", "ports": [{"port": -1}]}),
            "ports[0].port",
        ),
        (
            "unknown protocol",
            json!({"clusterIP": "10.96.0.11", "ports": [{"port": 80, "protocol": "ICMP"}]}),
            "protocol",
        ),
        (
            "duplicate port",
            json!({"clusterIP": "10.96.0.11", "ports": [{"name": "a", "port": 80}, {"name": "a", "port": 81}]}),
            "ports[1]",
        ),
        (
            "node port out of range",
            json!({"type": "NodePort", "clusterIP": "10.96.0.11", "ports": [{"port": 80, "nodePort": 70000}]}),
            "nodePort",
        ),
        (
            "source range not a CIDR",
            json!({"type": "LoadBalancer", "clusterIP": "10.96.0.11", "ports": [{"port": 80}], "loadBalancerSourceRanges": ["10.0.0.0/33"]}),
            "loadBalancerSourceRanges",
        ),
        (
            "external IP not an IP",
            json!({"clusterIP": "10.96.0.11", "ports": [{"port": 80}], "externalIPs": ["nope"]}),
            "externalIPs",
        ),
    ];
    for (what, spec, field) in bad_specs {
        let bad = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad", "namespace": "ns"}, "spec": spec});
        let text =
            json!({"apiVersion": "v1", "kind": "List", "items": [bad, good_service()]}).to_string();
        let (snapshot, warnings) =
            build(&text).unwrap_or_else(|| panic!("{what}: manifest should parse"));
        assert!(
            snapshot
                .entries()
                .any(|(name, _)| name.service.name == "good"),
            "{what}: the good service must stay"
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.object.contains("bad") && w.field.contains(field)),
            "{what}: expected a warning on {field}, got {warnings:?}"
        );
    }
}

#[test]
fn a_name_that_is_not_a_kubernetes_name_is_skipped() {
    let bad = json!({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": "x\"\n-A KUBE-SERVICES -j ACCEPT", "namespace": "ns"},
                     "spec": {"clusterIP": "10.96.0.12", "ports": [{"port": 80}]}});
    let text =
        json!({"apiVersion": "v1", "kind": "List", "items": [bad, good_service()]}).to_string();
    let (snapshot, warnings) = build(&text).expect("parses");
    assert_eq!(snapshot.len(), 1);
    assert!(warnings.iter().any(|w| w.field == "metadata.name"));
    assert!(
        !warnings.iter().any(|w| w.to_string().contains('\n')),
        "warnings are one line each"
    );
}
