//! The assertions a case makes after a sync, each checked against the fakes.

use std::collections::BTreeSet;
use std::net::IpAddr;

use kproxy_model::parse_ip_sloppy;
use serde_json::Value;

use super::harness::Harness;
use super::rules_check::{check_chains, check_first_rule, check_line, line_diff};
use super::vs::{actual_services, check_in_order, check_listed};
use super::yaml::string_list;

/// Free-text keys that document a check rather than make one.
const DOCUMENTATION: [&str; 5] = ["check", "notes", "iptablesCheck", "ipsetCheck", "ruleNotes"];

/// Checks an `upstreamAssertions` (or step) mapping.
pub(crate) fn check_upstream(h: &mut Harness, v: &Value) -> Result<(), String> {
    let map = v.as_object().ok_or("assertions: not a mapping")?;
    let exact = map.contains_key("exactIPVS");
    for (key, value) in map {
        let result = match key.as_str() {
            k if DOCUMENTATION.contains(&k) || k == "exactIPVS" || k == "do" => Ok(()),
            "virtualServers" => check_listed(h, value, exact),
            "virtualServerCount" => check_count(h, value),
            "realServersInOrder" => check_in_order(h, value),
            "ipsets" => check_sets(h, value, false),
            "iptables" => check_chains(h.restore_text(), value),
            "kubeIpvs0Addresses" => check_bound(h, value),
            "masqueradeRule" => check_line(h.restore_text(), value),
            "firstKubeServicesRule" => check_first_rule(h.restore_text(), value),
            "upstreamAssertions" => check_upstream(h, value),
            "derived" => check_derived(h, value),
            other => check_set_key(h, other, value),
        };
        result.map_err(|e| format!("{key}: {e}"))?;
    }
    Ok(())
}

/// Checks a `derived` mapping: the complete state, compared exactly.
pub(crate) fn check_derived(h: &mut Harness, v: &Value) -> Result<(), String> {
    let map = v.as_object().ok_or("derived: not a mapping")?;
    for (key, value) in map {
        let result = match key.as_str() {
            "notes" => Ok(()),
            "virtualServers" => check_listed(h, value, true),
            "ipsets" => check_sets(h, value, true),
            "kubeIpvs0Addresses" => check_bound(h, value),
            "iptablesRestore" => check_restore(h.restore_text(), value),
            other => Err(format!("unknown derived key {other:?}")),
        };
        result.map_err(|e| format!("derived.{key}: {e}"))?;
    }
    Ok(())
}

fn check_count(h: &mut Harness, v: &Value) -> Result<(), String> {
    let want = v.as_u64().ok_or("not a number")? as usize;
    let actual = actual_services(h)?;
    if actual.len() != want {
        let keys: Vec<&String> = actual.keys().collect();
        return Err(format!(
            "{} virtual servers {keys:?}, want {want}",
            actual.len()
        ));
    }
    Ok(())
}

fn set_entries(h: &Harness, name: &str) -> BTreeSet<String> {
    h.kernel.ipset.entries(name).cloned().unwrap_or_default()
}

/// Listed sets hold exactly the listed entries; with `complete`, no other set has entries.
fn check_sets(h: &mut Harness, v: &Value, complete: bool) -> Result<(), String> {
    let map = v.as_object().ok_or("not a mapping")?;
    for (name, list) in map {
        let want: BTreeSet<String> = string_list(list)?.into_iter().collect();
        let got = set_entries(h, name);
        if got != want {
            return Err(format!("set {name}: {got:?}, want {want:?}"));
        }
    }
    if complete {
        let names: Vec<String> = h.kernel.ipset.names().map(str::to_string).collect();
        for name in names {
            let got = set_entries(h, &name);
            if !got.is_empty() && !map.contains_key(&name) {
                return Err(format!("set {name} has entries {got:?}, want none"));
            }
        }
    }
    Ok(())
}

/// `SET.activeEntries` and `SET.activeEntryCount`.
fn check_set_key(h: &mut Harness, key: &str, v: &Value) -> Result<(), String> {
    let (name, what) = key
        .split_once('.')
        .ok_or_else(|| format!("unknown assertion {key:?}"))?;
    let got = set_entries(h, name);
    match what {
        "activeEntries" => {
            let want: BTreeSet<String> = string_list(v)?.into_iter().collect();
            if got != want {
                return Err(format!("{got:?}, want {want:?}"));
            }
        }
        "activeEntryCount" => {
            let want = v.as_u64().ok_or("not a number")? as usize;
            if got.len() != want {
                return Err(format!("{} entries {got:?}, want {want}", got.len()));
            }
        }
        _ => return Err(format!("unknown assertion {key:?}")),
    }
    Ok(())
}

fn check_bound(h: &mut Harness, v: &Value) -> Result<(), String> {
    let mut want = BTreeSet::new();
    for text in string_list(v)? {
        let ip: IpAddr = parse_ip_sloppy(&text).ok_or_else(|| format!("{text:?}: bad address"))?;
        want.insert(ip);
    }
    let got = &h.kernel.link.addresses;
    if *got != want {
        return Err(format!("kube-ipvs0 holds {got:?}, want {want:?}"));
    }
    Ok(())
}

fn check_restore(got: &str, v: &Value) -> Result<(), String> {
    let want = v.as_str().ok_or("not a string")?;
    if got != want {
        return Err(format!("restore text differs:\n{}", line_diff(want, got)));
    }
    Ok(())
}
