//! `kproxy demo` end to end: it builds its lab, every connection lands, the trace shows
//! the DNAT to the pods, and nothing is left behind.

mod support;

use kproxy_lab::run_demo;
use std::collections::BTreeSet;

#[test]
fn the_demo_lands_every_connection_and_traces_one() {
    if support::lab_prerequisites("the_demo_lands_every_connection_and_traces_one").is_none() {
        return;
    }
    let mut printed = Vec::new();
    let report = run_demo(&mut printed).expect("demo runs");
    let text = String::from_utf8_lossy(&printed);
    let pods: BTreeSet<&str> = report
        .connections
        .iter()
        .map(|c| {
            c.outcome
                .pod()
                .unwrap_or_else(|| panic!("{} to {}: {}\n{text}", c.from, c.target, c.outcome))
        })
        .collect();
    assert_eq!(pods.len(), 3, "{text}");
    for pod in ["10.244.0.2:8080", "10.244.0.3:8080", "10.244.0.4:8080"] {
        assert!(
            report.trace.contains(pod),
            "trace misses {pod}:\n{}",
            report.trace
        );
    }
    assert!(text.ends_with("== Done\n"), "{text}");
    let leftovers = kproxy_lab::command::ip(&["netns", "list"]).expect("ip netns list");
    let own = format!("kpl-{}-", std::process::id());
    assert!(
        !leftovers.contains(&own),
        "namespaces left behind:\n{leftovers}"
    );
}
