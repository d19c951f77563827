//! `kproxy trace` through the binary: upstream's TestTracePacket flows via `--json`, and a
//! trace of an upstream v1.30.3 dump.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn trace(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_kproxy"))
        .arg("trace")
        .args(args)
        .arg("--json")
        .output()
        .expect("run kproxy trace");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json output")
}

#[test]
fn upstream_trace_packet_flows_via_the_cli() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/iptables/TestTracePacket");
    let rules = dir.join("input.iptables");
    let flows = std::fs::read_to_string(dir.join("flows.yaml")).expect("flows");
    let proxier = std::fs::read_to_string(dir.join("proxier.yaml")).expect("proxier");
    let local: Vec<String> = kproxy_trace::flows::tracer_local_ips(&proxier)
        .expect("local ips")
        .iter()
        .map(ToString::to_string)
        .collect();
    let file = kproxy_trace::flows::FlowFile::parse(&flows).expect("flow file");
    let mut checked = 0;
    for flow in file.steps.iter().flat_map(|s| s.flows.iter()) {
        let protocol = if flow.protocol.is_empty() {
            "tcp".to_string()
        } else {
            flow.protocol.to_lowercase()
        };
        let json = trace(&[
            "--rules",
            rules.to_str().expect("path"),
            "--local-ips",
            &local.join(","),
            "--src",
            &flow.source_ip.to_string(),
            "--dst",
            &flow.dest_ip.to_string(),
            "--dport",
            &flow.dest_port.to_string(),
            "--protocol",
            &protocol,
        ]);
        assert_eq!(json["output"], flow.output.as_str(), "{}", flow.name);
        assert_eq!(json["masq"], flow.masq, "{}", flow.name);
        checked += 1;
    }
    assert_eq!(checked, 7);
}

#[test]
fn traces_a_clusterip_in_an_upstream_dump() {
    let dump = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/dumps/upstream-v1.30.3/mix1/iptables.save");
    let text = std::fs::read_to_string(&dump).expect("dump");
    let line = text
        .lines()
        .find(|l| l.contains("cluster IP\"") && l.contains("-j KUBE-SVC-"))
        .expect("a ClusterIP rule");
    let word_after = |flag: &str| {
        line.split(flag)
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .expect(flag)
            .trim_end_matches("/32")
            .to_string()
    };
    let json = trace(&[
        "--rules",
        dump.to_str().expect("path"),
        "--local-ips",
        "192.168.50.10",
        "--src",
        "10.244.1.200",
        "--dst",
        &word_after("-d "),
        "--dport",
        &word_after("--dport "),
        "--protocol",
        &word_after("-p "),
    ]);
    let output = json["output"].as_str().expect("output");
    assert!(
        output.starts_with("10.244."),
        "ends at pod endpoints: {output}"
    );
}
