//! Every packet flow of the conformance cases that come with a static ruleset, traced
//! with kproxy-trace and compared with upstream's expected `output` and `masq`.

use kproxy_trace::flows::{tracer_local_ips, FlowFile};
use kproxy_trace::{Ruleset, Tracer};
use std::fs;
use std::path::{Path, PathBuf};

fn case_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/conformance/iptables")
        .join(name)
}

/// Traces every flow of `case` against `ruleset_file`; returns the mismatches.
fn run_case(case: &str, ruleset_file: &str) -> Vec<String> {
    let dir = case_dir(case);
    let rules = Ruleset::parse(&fs::read_to_string(dir.join(ruleset_file)).unwrap()).unwrap();
    assert!(
        rules.unknown_rules().is_empty(),
        "{:?}",
        rules.unknown_rules()
    );
    let local = tracer_local_ips(&fs::read_to_string(dir.join("proxier.yaml")).unwrap()).unwrap();
    let flows = FlowFile::parse(&fs::read_to_string(dir.join("flows.yaml")).unwrap()).unwrap();
    let tracer = Tracer::new(&rules, &local);
    let mut failures = Vec::new();
    let mut count = 0;
    for flow in &flows.steps[0].flows {
        count += 1;
        let trace = tracer.trace(&flow.packet().unwrap());
        if let Err(mismatch) = flow.check(&trace) {
            failures.push(format!("{mismatch}\n{}", trace.render_tree()));
        }
    }
    assert!(count > 0, "{case} has no flows");
    failures
}

#[test]
fn trace_packet_static_ruleset_gives_upstream_results() {
    let failures = run_case("TestTracePacket", "input.iptables");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Flows for TestOverallIPTablesRules' services (upstream has no flows.yaml for it); the
/// restore text lacks kube-proxy's built-in jumps, which the tracer adds.
const OVERALL_FLOWS: &str = r#"
flows:
  - {name: pod to ClusterIP, sourceIP: 10.0.0.2, destIP: 172.30.0.41, destPort: 80, output: "10.180.0.1:80", masq: false}
  - {name: no endpoints, sourceIP: 10.0.0.2, destIP: 172.30.0.46, destPort: 80, output: REJECT, masq: false}
  - {name: eTP Local external IP without local endpoints, sourceIP: 203.0.113.2, destIP: 192.168.99.22, destPort: 80, output: DROP, masq: false}
  - {name: LB source range blocks client, sourceIP: 203.0.113.130, destIP: 5.6.7.8, destPort: 80, output: DROP, masq: false}
  - {name: LB source range allows client, sourceIP: 203.0.113.2, destIP: 5.6.7.8, destPort: 80, output: "10.180.0.3:80", masq: true}
  - {name: health check node port, sourceIP: 1.2.3.4, destIP: 192.168.0.2, destPort: 30000, output: ACCEPT, masq: false}
  - {name: external to NodePort, sourceIP: 203.0.113.2, destIP: 192.168.0.2, destPort: 3003, output: "10.180.0.3:80", masq: true}
  - {name: node to multi-endpoint external IP, sourceIP: 192.168.0.2, destIP: 192.168.99.33, destPort: 80, output: "10.180.0.4:80, 10.180.0.5:80", masq: true}
"#;

#[test]
fn overall_rules_get_kube_proxy_jumps_and_give_expected_fates() {
    let dir = case_dir("TestOverallIPTablesRules");
    let rules =
        Ruleset::parse(&fs::read_to_string(dir.join("expected.iptables")).unwrap()).unwrap();
    assert!(rules.unknown_rules().is_empty());
    let local = tracer_local_ips(&fs::read_to_string(dir.join("proxier.yaml")).unwrap()).unwrap();
    let tracer = Tracer::new(&rules, &local);
    let mut failures = Vec::new();
    for flow in &FlowFile::parse(OVERALL_FLOWS).unwrap().steps[0].flows {
        let trace = tracer.trace(&flow.packet().unwrap());
        assert!(trace.notes.iter().any(|n| n.contains("added kube-proxy's")));
        if let Err(mismatch) = flow.check(&trace) {
            failures.push(format!("{mismatch}\n{}", trace.render_tree()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn affinity_repeat_packet_follows_the_recent_list() {
    let dir = case_dir("TestOverallIPTablesRules");
    let rules =
        Ruleset::parse(&fs::read_to_string(dir.join("expected.iptables")).unwrap()).unwrap();
    let tracer = Tracer::new(&rules, &["192.168.0.2".parse().unwrap()]);
    let packet = kproxy_trace::Packet::new(
        "10.0.0.2".parse().unwrap(),
        "172.30.0.45".parse().unwrap(),
        kproxy_trace::Protocol::Tcp,
        80,
    );
    let trace = tracer.trace(&packet);
    assert_eq!(trace.output(), "10.180.0.3:80");
    assert_eq!(trace.repeat.len(), 1);
    let repeat = &trace.repeat[0];
    assert_eq!(repeat.branches.len(), 1);
    assert_eq!(repeat.branches[0].dnat.as_deref(), Some("10.180.0.3:80"));
    let json = trace.to_json();
    assert_eq!(json["output"], "10.180.0.3:80");
    assert_eq!(json["masq"], false);
    assert!(json["branches"][0]["steps"].as_array().unwrap().len() > 3);
}
