//! Conformance against upstream's test expectations: [`check_case`] runs one case
//! directory (`cluster.yaml`, `proxier.yaml`, `expected.nft` or `steps.yaml`,
//! `preexisting.nft`, `flows.yaml`, `cases.yaml`) against the proxier and the fake kernel,
//! tracing every flow through the synced ruleset.

mod case_settings;
pub mod compare;
mod flows;
pub mod harness;
mod steps;
mod tables;

use crate::nft::FakeNft;
use harness::Harness;
use std::path::{Path, PathBuf};

/// Checks everything a case directory asserts. `Err` names what failed; a directory
/// with nothing this checker understands is an error, never a silent pass.
pub fn check_case(case_dir: &Path) -> Result<(), String> {
    let read = |name: &str| -> Result<Option<String>, String> {
        let path = case_dir.join(name);
        if !path.exists() {
            return Ok(None);
        }
        std::fs::read_to_string(&path)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let case = case_settings::load(case_dir)?;
    let cluster = read("cluster.yaml")?;
    let mut checked = 0;
    if let Some(cases) = read("cases.yaml")? {
        checked += tables::check_cases(&cases, &case.settings)?;
    }
    if let Some(expected) = read("expected.nft")? {
        let cluster = cluster
            .as_deref()
            .ok_or("expected.nft without cluster.yaml")?;
        check_expected(
            &case,
            cluster,
            &expected,
            read("preexisting.nft")?.as_deref(),
        )?;
        checked += 1;
    }
    if case_dir.join("steps.yaml").exists() {
        let cluster = cluster
            .as_deref()
            .ok_or("steps.yaml without cluster.yaml")?;
        let mut harness = Harness::new(case.settings.clone(), FakeNft::new())?;
        checked += steps::check_steps(case_dir, cluster, &mut harness)?;
    }
    if let Some(flows) = read("flows.yaml")? {
        let cluster = cluster
            .as_deref()
            .ok_or("flows.yaml without cluster.yaml")?;
        let mut harness = Harness::new(case.settings.clone(), FakeNft::new())?;
        checked += flows::check_flows(&flows, cluster, &mut harness, &case.tracer_local_ips)?;
    }
    if checked == 0 {
        return Err(format!(
            "{}: nothing to check (no expected.nft, steps.yaml, flows.yaml or cases.yaml)",
            case_dir.display()
        ));
    }
    Ok(())
}

fn check_expected(
    case: &case_settings::CaseSettings,
    cluster: &str,
    expected: &str,
    preexisting: Option<&str>,
) -> Result<(), String> {
    let nft = match preexisting {
        Some(text) => FakeNft::with_ruleset(text).map_err(|e| format!("preexisting.nft: {e}"))?,
        None => FakeNft::new(),
    };
    let mut harness = Harness::new(case.settings.clone(), nft)?;
    harness.apply(Harness::objects(cluster)?);
    harness.sync()?;
    compare::compare("expected.nft", expected, &harness.dump())?;
    if let Some(text) = &case.expected_ops {
        let extra: usize = text
            .split(',')
            .next()
            .and_then(|t| t.trim().strip_prefix("setupOps + "))
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| format!("cannot interpret expectedOps {text:?}"))?;
        let mut empty = Harness::new(case.settings.clone(), FakeNft::new())?;
        empty.sync()?;
        let want = empty.last_ops() + extra;
        if harness.last_ops() != want {
            return Err(format!(
                "expected setupOps ({}) + {extra} = {want} operations, got {}",
                empty.last_ops(),
                harness.last_ops()
            ));
        }
    }
    Ok(())
}

/// Every case directory under `root`: directories holding a `proxier.yaml`, skipping
/// `_`-prefixed helper folders.
pub fn case_dirs(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            let helper = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('_'));
            if path.is_dir() && !helper {
                if path.join("proxier.yaml").exists() || !has_subdirs(&path) {
                    out.push(path);
                } else {
                    pending.push(path);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

fn has_subdirs(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .is_ok_and(|mut entries| entries.any(|e| e.is_ok_and(|e| e.path().is_dir())))
}
