//! Every assertion an iptables case makes, run in upstream's order.

use super::flows::check_flows_file;
use super::iptables_case::{check_expected_chains, compare_restore, IptablesCase};
use super::proxier_yaml::read_yaml;
use serde_json::Value;
use std::path::Path;

/// Runs one iptables case directory.
pub fn check_case(dir: &Path) -> Result<(), String> {
    if dir.join("input.iptables").exists() {
        let mut case = IptablesCase::open_static(dir)?;
        let input =
            std::fs::read_to_string(dir.join("input.iptables")).map_err(|e| e.to_string())?;
        case.kernel
            .restore(&input)
            .map_err(|e| format!("input.iptables: {e}"))?;
        return super::flows::check_static_flows(dir, &case);
    }
    let mut known = false;
    if dir.join("steps.yaml").exists() {
        known = true;
        check_steps(dir)?;
    }
    let mut case = IptablesCase::open(dir)?;
    case.sync(false);
    if !case.last_ok {
        return Err("initial full sync was refused by the fake kernel".into());
    }
    if dir.join("expected.iptables").exists() && !dir.join("steps.yaml").exists() {
        known = true;
        compare_restore(dir, "expected.iptables", &case.last_restore, true)?;
        let nat_lines = nat_rule_lines(&case.last_restore);
        if case.last.nat_rules_total != nat_lines {
            return Err(format!(
                "nat rules total metric {} != {nat_lines} -A lines",
                case.last.nat_rules_total
            ));
        }
    }
    if dir.join("expected_chains.yaml").exists() {
        known = true;
        check_expected_chains(dir, &case)?;
    }
    if dir.join("expected_metrics.yaml").exists() {
        known = true;
        let v = read_yaml(&dir.join("expected_metrics.yaml"))?;
        let want = (
            v["noLocalEndpointsTotal"]["internal"].as_u64().unwrap_or(0) as usize,
            v["noLocalEndpointsTotal"]["external"].as_u64().unwrap_or(0) as usize,
        );
        let got = (case.last.no_local_internal, case.last.no_local_external);
        if want != got {
            return Err(format!(
                "no-local-endpoints metric (internal, external): want {want:?}, got {got:?}"
            ));
        }
    }
    if dir.join("assertions.yaml").exists() {
        known = true;
        check_assertions(dir, &case)?;
    }
    if dir.join("flows.yaml").exists() {
        known = true;
        check_flows_file(dir, IptablesCase::open(dir)?)?;
    }
    if dir.join("input.iptables").exists() {
        known = true;
        let mut case = IptablesCase::open(dir)?;
        let input =
            std::fs::read_to_string(dir.join("input.iptables")).map_err(|e| e.to_string())?;
        case.kernel = kproxy_iptables::fake::FakeKernel::new();
        case.kernel
            .restore(&input)
            .map_err(|e| format!("input.iptables: {e}"))?;
        super::flows::check_static_flows(dir, &case)?;
    }
    if !known {
        return Err("no assertion file this runner understands".into());
    }
    Ok(())
}

fn nat_rule_lines(restore: &str) -> usize {
    restore
        .split("*nat\n")
        .nth(1)
        .map(|nat| nat.lines().filter(|l| l.starts_with("-A ")).count())
        .unwrap_or(0)
}

fn check_assertions(dir: &Path, case: &IptablesCase) -> Result<(), String> {
    let v = read_yaml(&dir.join("assertions.yaml"))?;
    for a in v["assertions"].as_array().into_iter().flatten() {
        if a["kind"].as_str() != Some("chainHasRuleWithDestination") {
            return Err(format!("unknown assertion {:?}", a["kind"]));
        }
        let chain = a["chain"].as_str().unwrap_or("");
        let dest = format!("-d {} ", a["destination"].as_str().unwrap_or(""));
        let has = case
            .kernel
            .chain_rules(a["table"].as_str().unwrap_or("nat"), chain)
            .unwrap_or_default()
            .iter()
            .any(|r| r.contains(&dest));
        if Some(has) != a["expected"].as_bool() {
            return Err(format!("assertion {chain} has rule with {dest}: got {has}"));
        }
    }
    Ok(())
}

/// `steps.yaml` with exact outputs (TestSyncProxyRulesRepeated) or line scans
/// (TestSyncProxyRulesLargeClusterMode).
fn check_steps(dir: &Path) -> Result<(), String> {
    let v = read_yaml(&dir.join("steps.yaml"))?;
    let mut case = IptablesCase::open(dir)?;
    case.sync(false);
    check_step(dir, &case, &v["initial"], "initial")?;
    for step in v["steps"].as_array().into_iter().flatten() {
        let label = format!("step {}", step["step"]);
        let failures_before = case.partial_failures();
        case.apply_actions(&step["actions"])
            .map_err(|e| format!("{label}: {e}"))?;
        case.sync(step["sync"].as_str() == Some("forceSyncProxyRules"));
        if step["expectSyncFailure"].as_bool() == Some(true) {
            if case.last_ok {
                return Err(format!("{label}: sync should have failed"));
            }
            let after = &step["expectAfter"];
            if let Some(chain) = after["chainStillExists"]["chain"].as_str() {
                let table = after["chainStillExists"]["table"].as_str().unwrap_or("nat");
                if !case.kernel.has_chain(table, chain) {
                    return Err(format!("{label}: chain {chain} should still exist"));
                }
            }
            if after["needFullSync"].as_bool() == Some(true) && !case.needs_full_sync() {
                return Err(format!("{label}: a full sync should be pending"));
            }
            let delta = after["partialRestoreFailuresDelta"].as_u64().unwrap_or(0);
            if case.partial_failures() - failures_before != delta {
                return Err(format!("{label}: partial restore failure counter"));
            }
            continue;
        }
        if !case.last_ok {
            return Err(format!("{label}: sync was refused by the fake kernel"));
        }
        check_step(dir, &case, step, &label)?;
    }
    Ok(())
}

fn check_step(dir: &Path, case: &IptablesCase, step: &Value, label: &str) -> Result<(), String> {
    let restore = &case.last_restore;
    if let Some(file) = step["expected"].as_str() {
        let consistency = step["checkConsistency"].as_bool().unwrap_or(false);
        compare_restore(dir, file, restore, consistency).map_err(|e| format!("{label}: {e}"))?;
    }
    if let Some(n) = step["natRulesLastSync"].as_u64() {
        if case.last.nat_rules_written as u64 != n {
            return Err(format!(
                "{label}: nat rules last sync {} != {n}",
                case.last.nat_rules_written
            ));
        }
    }
    if let Some(n) = step["natRulesTotal"].as_u64() {
        if case.last.nat_rules_total as u64 != n {
            return Err(format!(
                "{label}: nat rules total {} != {n}",
                case.last.nat_rules_total
            ));
        }
    }
    let expect = &step["expect"];
    if expect.is_null() {
        return Ok(());
    }
    let dnat: Vec<&str> = restore
        .lines()
        .filter(|l| l.starts_with("-A KUBE-SEP-") && l.contains("-j DNAT"))
        .collect();
    if let Some(n) = expect["dnatLines"].as_u64() {
        if dnat.len() as u64 != n {
            return Err(format!("{label}: {} DNAT lines, want {n}", dnat.len()));
        }
    }
    if let Some(n) = expect["commentedDnat"].as_u64() {
        let commented = dnat.iter().filter(|l| l.contains("--comment")).count() as u64;
        if commented != n {
            return Err(format!(
                "{label}: {commented} commented DNAT lines, want {n}"
            ));
        }
    }
    if let Some(substring) = expect["match"]["substring"].as_str() {
        let got = dnat
            .iter()
            .rev()
            .find(|l| l.contains(substring))
            .copied()
            .unwrap_or("");
        let want = expect["match"]["line"].as_str().unwrap_or("");
        if got != want {
            return Err(format!(
                "{label}: DNAT line for {substring}: got {got:?}, want {want:?}"
            ));
        }
    }
    for s in expect["outputContains"].as_array().into_iter().flatten() {
        let s = s.as_str().unwrap_or("");
        if !restore.contains(s) {
            return Err(format!("{label}: output should contain {s:?}"));
        }
    }
    for s in expect["outputDoesNotContain"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let s = s.as_str().unwrap_or("");
        if restore.contains(s) {
            return Err(format!("{label}: output should not contain {s:?}"));
        }
    }
    Ok(())
}
