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
