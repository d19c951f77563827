//! The least capabilities each proxy mode needs, measured: the agent runs as root under
//! `setpriv` with every capability dropped except a given set, in a network namespace,
//! and must program its rules. Every mode must work with NET_ADMIN and NET_RAW (what
//! `deploy/kproxy.yaml` documents); the test also tries NET_ADMIN alone and prints
//! (`MEASURED`) which modes manage with it. The ipvs mode needs a kernel with IPVS and is
//! not measured here.

mod fault_support;

use fault_support::{base_args, namespace, prerequisites, report, AgentProcess, FULL_SYNCS};
use kproxy_lab::require::skip_or_fail;
use kproxy_lab::LabError;
use std::time::Duration;

const TEST: &str = "least_capabilities";

/// (mode name, flags, how to see its rules, what the rules must contain).
const MODES: [(&str, &[&str], &[&str]); 3] = [
    (
        "iptables-nft",
        &["--proxy-mode", "iptables", "--iptables-backend", "nft"],
        &["iptables-nft-save", "-t", "nat"],
    ),
    (
        "iptables-legacy",
        &["--proxy-mode", "iptables", "--iptables-backend", "legacy"],
        &["iptables-legacy-save", "-t", "nat"],
    ),
    (
        "nftables",
        &["--proxy-mode", "nftables"],
        &["nft", "list", "table", "ip", "kube-proxy"],
    ),
];

/// Whether the mode programs [`fault_support::CLUSTER`] with only `caps` (setpriv syntax).
fn works_with(
    binary: &kproxy_lab::AgentBinary,
    mode: &[&str],
    dump: &[&str],
    caps: &str,
) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, fault_support::CLUSTER).expect("cluster");
    let netns = namespace("caps");
    let mut args = base_args(mode, "30s");
    args.extend(["--cluster-file".into(), file.display().to_string()]);
    let bounding = format!("--bounding-set=-all,{caps}");
    let prefix = ["setpriv", "--inh-caps=-all", bounding.as_str(), "--"];
    let mut agent = AgentProcess::start(
        binary,
        &netns,
        &prefix,
        &args,
        &[],
        &dir.path().join("agent.log"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        if agent.count(FULL_SYNCS) >= 1
            && agent.count("kubeproxy_sync_proxy_rules_last_timestamp_seconds") > 0
        {
            break;
        }
        let log = agent.log();
        if log.contains("sync failed") || log.contains("Error") || log.contains("error:") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let effective = std::fs::read_to_string(format!("/proc/{}/status", agent.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string()))
        })
        .unwrap_or_default();
    let rules = netns.exec(dump[0], &dump[1..]).unwrap_or_default();
    let ok = agent.count("kubeproxy_sync_proxy_rules_last_timestamp_seconds") > 0
        && rules.contains("10.244.1.5:8080");
    let why = if ok {
        format!("CapEff {effective}")
    } else {
        let log = agent.log();
        let last = log
            .lines()
            .rev()
            .find(|l| l.contains("fail") || l.contains("rror") || l.contains("denied"))
            .unwrap_or("no sync")
            .to_string();
        format!("CapEff {effective}: {last}")
    };
    agent.stop();
    (ok, why)
}

#[test]
fn every_mode_works_with_net_admin_and_net_raw_only() {
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    if kproxy_node::kernel::exec::find_tool("setpriv").is_none() {
        skip_or_fail(
            TEST,
            &LabError::Unsupported("setpriv is not installed".into()),
        );
        return;
    }
    let mut figures = Vec::new();
    for (name, mode, dump) in MODES {
        let (both, why_both) = works_with(&binary, mode, dump, "+net_admin,+net_raw");
        assert!(both, "[{name}] with NET_ADMIN and NET_RAW: {why_both}");
        let (alone, why_alone) = works_with(&binary, mode, dump, "+net_admin");
        figures.push(format!(
            "{name}: NET_ADMIN+NET_RAW works ({why_both}); NET_ADMIN alone {} ({why_alone})",
            if alone { "works" } else { "fails" }
        ));
    }
    report(TEST, figures.join("; "));
}
