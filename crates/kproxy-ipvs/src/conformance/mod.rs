//! Conformance: checks one case of the upstream-derived ipvs cases (`SPEC.md` in the case
//! folder) against kproxy's renderer and proxier, applied to in-memory fakes.
//!
//! A case folder holds `proxier.yaml` (settings) and either `cluster.yaml` +
//! `expected.yaml` (one sync, or `steps`), `expected.yaml` alone (chain declarations and
//! jump rules), or `cases.yaml` (a table). Everything a case asserts is checked; a key or
//! step the harness does not understand fails the case.

mod assertions;
mod cluster;
mod harness;
mod rules_check;
mod settings;
mod steps;
mod tables;
mod vs;
mod yaml;

use std::path::Path;

use serde_json::Value;

use crate::mode::{chain_declarations, jump_rules, FILTER_CHAINS, NAT_CHAINS};

use assertions::{check_derived, check_upstream};
use harness::Harness;
use settings::case_settings;
use yaml::read_yaml;

/// Checks every assertion of the case in `case_dir`. `Err` names what failed and how.
pub fn check_case(case_dir: &Path) -> Result<(), String> {
    let load_settings = || case_settings(&read_yaml(&case_dir.join("proxier.yaml"))?);
    if case_dir.join("cases.yaml").exists() {
        let table = read_yaml(&case_dir.join("cases.yaml"))?;
        return tables::run_table(load_settings, &table);
    }
    let expected = read_yaml(&case_dir.join("expected.yaml"))?;
    if expected.get("natChains").is_some() {
        load_settings()?;
        return check_declarations(&expected);
    }
    let docs = cluster::read_documents(&case_dir.join("cluster.yaml"))?;
    let mut h = Harness::new(load_settings()?);
    let map = expected.as_object().ok_or("expected.yaml: not a mapping")?;
    if let Some(steps) = map.get("steps") {
        return steps::run_steps(&mut h, &docs, steps);
    }
    cluster::apply_all(&mut h, &docs)?;
    h.sync()?;
    for (key, value) in map {
        match key.as_str() {
            "notes" => Ok(()),
            "upstreamAssertions" => check_upstream(&mut h, value),
            "derived" => check_derived(&mut h, value),
            other => Err(format!("unknown key {other:?}")),
        }
        .map_err(|e| format!("expected.yaml {key}: {e}"))?;
    }
    Ok(())
}

/// `TestCreateAndLinkKubeChain`: chain declarations and jump rules.
fn check_declarations(expected: &Value) -> Result<(), String> {
    for (key, chains) in [
        ("natChains", &NAT_CHAINS[..]),
        ("filterChains", &FILTER_CHAINS[..]),
    ] {
        let want = expected.get(key).and_then(Value::as_str).unwrap_or("");
        let got = chain_declarations(chains);
        if got != want {
            return Err(format!("{key}:\n{}", rules_check::line_diff(want, &got)));
        }
    }
    let want = expected
        .get("jumpRules")
        .and_then(Value::as_array)
        .ok_or("jumpRules: not a list")?;
    let got = jump_rules();
    if got.len() != want.len() {
        return Err(format!("{} jump rules, want {}", got.len(), want.len()));
    }
    for (rule, w) in got.iter().zip(want) {
        let text = format!("{} -j {}", rule.matches, rule.target);
        let same = w.get("table").and_then(Value::as_str) == Some(rule.table)
            && w.get("chain").and_then(Value::as_str) == Some(rule.chain)
            && w.get("rule").and_then(Value::as_str) == Some(text.as_str());
        if !same {
            return Err(format!(
                "jump rule {} {}: {text:?}, want {w}",
                rule.table, rule.chain
            ));
        }
    }
    Ok(())
}
