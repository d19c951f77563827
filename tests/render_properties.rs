//! Property tests of the iptables renderer: random clusters (random service features,
//! random endpoint states, hostile names) always render text that `iptables-restore
//! --test` accepts in a throwaway network namespace, with both iptables backends, and
//! rendering the same cluster twice gives identical text.

mod common;

use common::{kernel_tests_possible, NetNs};
use kproxy_iptables::{IptablesProxier, IptablesSettings, LocalDetector};
use kproxy_model::{parse_manifest, ClusterStore, IpFamily, Snapshot};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Instant;

/// Names that try to break out of a comment or a rule.
const HOSTILE: &[&str] = &[
    "svc",
    "a\"b",
    "x\n-A KUBE-SERVICES -j ACCEPT",
    "quote\\\"d",
    "ünïcödé",
    "--comment",
];

fn service(index: usize, name: &str, features: &[bool], ipv6: bool) -> Value {
    let ip = |base: &str| {
        if ipv6 {
            format!("fd00:{base}::{:x}", index + 1)
        } else {
            format!("10.{base}.{}.{}", index / 250, index % 250 + 1)
        }
    };
    let kind = match (features[0], features[1]) {
        (true, true) => "LoadBalancer",
        (true, false) => "NodePort",
        _ => "ClusterIP",
    };
    let mut spec = json!({
        "type": kind,
        "clusterIP": ip("96"),
        "ports": [
            {"name": "p0", "port": 80, "protocol": "TCP", "nodePort": 30000 + index},
            {"name": "p1", "port": 53, "protocol": if features[2] { "UDP" } else { "SCTP" }},
        ],
    });
    if features[3] {
        spec["externalIPs"] = json!([ip("203")]);
    }
    if features[4] {
        spec["externalTrafficPolicy"] = json!("Local");
        spec["healthCheckNodePort"] = json!(32000 + index);
    }
    if features[5] {
        spec["internalTrafficPolicy"] = json!("Local");
    }
    if features[6] {
        spec["sessionAffinity"] = json!("ClientIP");
    }
    if features[7] {
        spec["loadBalancerSourceRanges"] = json!([if ipv6 {
            "fd00:198::/64"
        } else {
            "198.51.100.0/24"
        }]);
    }
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("{name}-{index}"), "namespace": "ns"},
        "spec": spec,
        "status": {"loadBalancer": {"ingress": [{"ip": ip("198")}]}},
    })
}

fn slice(index: usize, name: &str, states: &[(bool, bool, bool, bool)], ipv6: bool) -> Value {
    let endpoints: Vec<Value> = states
        .iter()
        .enumerate()
        .map(|(n, (ready, serving, terminating, local))| {
            let address = if ipv6 {
                format!("fd00:244::{:x}:{:x}", index + 1, n + 1)
            } else {
                format!("10.244.{}.{}", index % 250, n + 1)
            };
            json!({
                "addresses": [address],
                "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
                "nodeName": if *local { "node-0" } else { "node-1" },
            })
        })
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{name}-{index}-abc"), "namespace": "ns",
                     "labels": {"kubernetes.io/service-name": format!("{name}-{index}")}},
        "addressType": if ipv6 { "IPv6" } else { "IPv4" },
        "endpoints": endpoints,
        "ports": [{"name": "p0", "port": 8080, "protocol": "TCP"},
                  {"name": "p1", "port": 5353, "protocol": "UDP"},
                  {"name": "p1", "port": 5353, "protocol": "SCTP"}],
    })
}

type ServiceCase = (usize, Vec<bool>, Vec<(bool, bool, bool, bool)>);

fn cluster_strategy() -> impl Strategy<Value = (Vec<ServiceCase>, bool)> {
    let one = (
        0..HOSTILE.len(),
        proptest::collection::vec(any::<bool>(), 8),
        proptest::collection::vec(any::<(bool, bool, bool, bool)>(), 0..5),
    );
    (proptest::collection::vec(one, 1..12), any::<bool>())
}

fn render(services: &[ServiceCase], ipv6: bool) -> String {
    let mut docs = Vec::new();
    for (index, (name, features, states)) in services.iter().enumerate() {
        docs.push(service(index, HOSTILE[*name], features, ipv6));
        docs.push(slice(index, HOSTILE[*name], states, ipv6));
    }
    let text = serde_json::to_string(&json!({"apiVersion": "v1", "kind": "List", "items": docs}))
        .expect("json");
    let manifest = parse_manifest(&text).expect("generated manifest parses");
    let store = ClusterStore::from_objects(manifest.objects);
    let family = if ipv6 { IpFamily::V6 } else { IpFamily::V4 };
    let mut warnings = Vec::new();
    let snapshot = Snapshot::build(&store, family, "node-0", &mut warnings);
    let mut settings = IptablesSettings::new(family, "node-0");
    let cidr = if ipv6 {
        "fd00:244::/32"
    } else {
        "10.244.0.0/16"
    };
    settings.local_detector = LocalDetector::Cidrs(vec![cidr.parse().expect("cidr")]);
    settings.node_ip = Some(
        if ipv6 { "fd00:50::10" } else { "192.168.50.10" }
            .parse()
            .expect("ip"),
    );
    let mut proxier = IptablesProxier::new(settings);
    proxier
        .sync(&snapshot, &BTreeSet::new(), Instant::now())
        .restore
        .to_string()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn rendering_is_deterministic((services, ipv6) in cluster_strategy()) {
        prop_assert_eq!(render(&services, ipv6), render(&services, ipv6));
    }

    #[test]
    fn no_input_adds_rules_of_its_own((services, ipv6) in cluster_strategy()) {
        let text = render(&services, ipv6);
        for line in text.lines() {
            prop_assert!(
                line.starts_with("-A KUBE-") || line.starts_with(':') || line.starts_with('*')
                    || line == "COMMIT" || line.starts_with("-X KUBE-"),
                "unexpected line {:?}", line
            );
        }
    }
}

#[test]
fn iptables_restore_accepts_every_rendered_ruleset() {
    let tools = [
        "ip",
        "iptables-nft-restore",
        "iptables-legacy-restore",
        "ip6tables-nft-restore",
        "ip6tables-legacy-restore",
    ];
    if !kernel_tests_possible("iptables_restore_accepts_every_rendered_ruleset", &tools) {
        return;
    }
    let ns = NetNs::new("prop");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 40,
        ..ProptestConfig::default()
    });
    let result = runner.run(&cluster_strategy(), |(services, ipv6)| {
        let text = render(&services, ipv6);
        let family = if ipv6 { "ip6tables" } else { "iptables" };
        for backend in ["nft", "legacy"] {
            let tool = format!("{family}-{backend}-restore");
            let out = ns.exec(&[&tool, "--test"], Some(&text));
            prop_assert!(
                out.status.success(),
                "{} rejected the ruleset: {}\n{}",
                tool,
                String::from_utf8_lossy(&out.stderr),
                text
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
