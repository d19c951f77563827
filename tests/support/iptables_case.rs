//! Runs one iptables conformance case: the case's cluster through kproxy's proxier into a
//! fake kernel, then every assertion the case's files make.

use super::proxier_yaml::{load, read_yaml, CaseSettings};
use kproxy_iptables::canonical::{canonicalize, check_consistency, parse_restore};
use kproxy_iptables::fake::FakeKernel;
use kproxy_iptables::{jump_rules, IptablesProxier, SyncPlan};
use kproxy_model::objects::decode_object;
use kproxy_model::{
    parse_manifest, ClusterStore, NamespacedName, ObjectKind, ObjectRef, Snapshot, StoreEvent,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// A case being run.
pub struct IptablesCase {
    pub settings: CaseSettings,
    store: ClusterStore,
    snapshot: Snapshot,
    proxier: IptablesProxier,
    pub kernel: FakeKernel,
    pub last: SyncPlan,
    /// The last sync's restore input as one text.
    pub last_restore: String,
    pub last_ok: bool,
}

impl IptablesCase {
    pub fn open(dir: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(dir.join("cluster.yaml")).map_err(|e| e.to_string())?;
        let manifest = parse_manifest(&text).map_err(|e| format!("cluster.yaml: {e}"))?;
        Self::with_store(dir, ClusterStore::from_objects(manifest.objects))
    }

    /// A case with no cluster: its kernel state is given as a static ruleset.
    pub fn open_static(dir: &Path) -> Result<Self, String> {
        Self::with_store(dir, ClusterStore::new())
    }

    fn with_store(dir: &Path, store: ClusterStore) -> Result<Self, String> {
        let settings = load(&dir.join("proxier.yaml"))?;
        let family = settings.iptables.family;
        let node = settings.iptables.topology.node_name.clone();
        Ok(IptablesCase {
            proxier: IptablesProxier::new(settings.iptables.clone()),
            settings,
            store,
            snapshot: Snapshot::new(family, node),
            kernel: FakeKernel::new(),
            last: SyncPlan::default(),
            last_restore: String::new(),
            last_ok: false,
        })
    }

    /// One sync: refresh the snapshot, render, apply to the fake kernel.
    pub fn sync(&mut self, force_full: bool) {
        let changes = self.store.take_changes();
        let mut warnings = Vec::new();
        let changed: BTreeSet<NamespacedName> = changes.services.clone();
        self.snapshot.refresh(&self.store, &changed, &mut warnings);
        if force_full {
            self.proxier.force_full_sync();
        }
        let plan = self.proxier.sync(&self.snapshot, &changed, Instant::now());
        if plan.full {
            let s = self.proxier.settings();
            self.kernel
                .ensure_jumps(&jump_rules(s.family, s.localhost_node_ports));
        }
        self.last_restore = plan.restore.to_string();
        self.last_ok = self.kernel.restore(&self.last_restore).is_ok();
        self.proxier.applied(self.last_ok);
        self.last = plan;
    }

    pub fn needs_full_sync(&self) -> bool {
        self.proxier.needs_full_sync()
    }

    pub fn partial_failures(&self) -> u64 {
        self.proxier.partial_restore_failures()
    }

    pub fn apply_action(&mut self, action: &Value) -> Result<(), String> {
        match action["op"].as_str().unwrap_or("") {
            "add" | "update" => {
                let object = action["object"].clone();
                let kind = object["kind"].as_str().unwrap_or("").to_string();
                let decoded = decode_object(&kind, object, 1)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("cannot apply object of kind {kind:?}"))?;
                self.store.apply(StoreEvent::Apply(decoded));
            }
            "delete" => {
                let kind = match action["kind"].as_str() {
                    Some("Service") => ObjectKind::Service,
                    Some("EndpointSlice") => ObjectKind::EndpointSlice,
                    other => return Err(format!("cannot delete kind {other:?}")),
                };
                self.store.apply(StoreEvent::Delete(ObjectRef {
                    kind,
                    namespace: action["namespace"].as_str().unwrap_or("").into(),
                    name: action["name"].as_str().unwrap_or("").into(),
                }));
            }
            "injectKernelRule" => {
                let table = action["table"].as_str().unwrap_or("nat");
                self.kernel
                    .append_rule(table, action["rule"].as_str().unwrap_or(""));
            }
            "setProxierField" => {
                let value = action["value"].as_str().unwrap_or("");
                let now = Instant::now();
                let when = if value == "now" {
                    Some(now)
                } else {
                    let back = self.proxier.settings().sync_period + Duration::from_nanos(1);
                    now.checked_sub(back)
                };
                self.proxier.set_last_cleanup(when);
            }
            other => return Err(format!("unknown action op {other:?}")),
        }
        Ok(())
    }

    pub fn apply_actions(&mut self, actions: &Value) -> Result<(), String> {
        for action in actions.as_array().into_iter().flatten() {
            self.apply_action(action)?;
        }
        Ok(())
    }
}

/// Compares a sync's restore text with an expected file the way upstream does.
pub fn compare_restore(
    dir: &Path,
    file: &str,
    result: &str,
    consistency: bool,
) -> Result<(), String> {
    let expected = std::fs::read_to_string(dir.join(file)).map_err(|e| format!("{file}: {e}"))?;
    let expected = expected.trim_start();
    if consistency {
        check_consistency(expected).map_err(|e| format!("{file}: consistency: {e}"))?;
    }
    let got = canonicalize(result).map_err(|e| format!("{file}: result does not parse: {e}"))?;
    if got != expected {
        return Err(format!(
            "{file}: ruleset differs:\n{}",
            line_diff(expected, &got)
        ));
    }
    Ok(())
}

/// A small line diff: lines only in expected (-) and only in the result (+).
pub fn line_diff(expected: &str, got: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let g: Vec<&str> = got.lines().collect();
    let mut out = String::new();
    for line in &e {
        if !g.contains(line) {
            out.push_str(&format!("- {line}\n"));
        }
    }
    for line in &g {
        if !e.contains(line) {
            out.push_str(&format!("+ {line}\n"));
        }
    }
    if out.is_empty() {
        out.push_str("(same lines, different order)\n");
    }
    out
}

/// `expected_chains.yaml`: one chain's rules in the last restore input, exact and in order.
pub fn check_expected_chains(dir: &Path, case: &IptablesCase) -> Result<(), String> {
    let v = read_yaml(&dir.join("expected_chains.yaml"))?;
    let tables = parse_restore(&case.last_restore).map_err(|e| e.to_string())?;
    for check in v["chains"].as_array().into_iter().flatten() {
        let table = check["table"].as_str().unwrap_or("");
        let chain = check["chain"].as_str().unwrap_or("");
        let expected: Vec<String> = check["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect();
        let got: Vec<String> = tables
            .iter()
            .filter(|t| t.name == table)
            .flat_map(|t| t.rules.iter())
            .filter(|r| r.starts_with(&format!("-A {chain} ")))
            .cloned()
            .collect();
        if got != expected {
            return Err(format!(
                "expected_chains.yaml: {table}/{chain}:\nexpected {expected:#?}\ngot {got:#?}"
            ));
        }
    }
    Ok(())
}
