//! The kproxy agent against what a real upstream kube-proxy (v1.30.3) programmed into a
//! real kernel. For every cluster in `tests/dumps/upstream-v1.30.3`, a fresh network
//! namespace is shaped like the dump's `proxier.yaml`, the project's fake API server serves
//! `cluster.yaml` over list/watch inside it, and the `kproxy` binary runs there with the
//! dump's flags (iptables-legacy, the dumps' backend). After its first complete sync,
//! `iptables-legacy-save` and `ip6tables-legacy-save` are compared with the dump chain by
//! chain; differences that newer upstream behaviour explains are listed in
//! `ALLOWED_DIFFERENCES` (tests/support/dump_compare.rs), anything else fails.

mod common;
#[path = "support/dump_compare.rs"]
mod dump_compare;
#[path = "support/dump_node.rs"]
mod dump_node;

use common::kernel_tests_possible;
use dump_compare::{describe, split_dump, Comparison, ALLOWED_DIFFERENCES};
use dump_node::{DumpNode, DumpSettings};
use kproxy_lab::AgentBinary;
use kproxy_model::IpFamily;
use std::path::{Path, PathBuf};

fn dump_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dumps/upstream-v1.30.3");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("dumps directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("iptables.save").exists())
        .collect();
    dirs.sort();
    dirs
}

/// Runs the agent on one dump's cluster and compares both families.
fn check_dump(binary: &AgentBinary, dir: &Path, report: &mut Comparison) -> Result<(), String> {
    let read =
        |file: &str| std::fs::read_to_string(dir.join(file)).map_err(|e| format!("{file}: {e}"));
    let settings = DumpSettings::load(&dir.join("proxier.yaml"))?;
    let (cluster, dump) = (read("cluster.yaml")?, read("iptables.save")?);
    let node = DumpNode::start(binary, &settings, &cluster)?;
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("?");
    let (v4, v6) = split_dump(&dump);
    for (family, want) in [(IpFamily::V4, v4), (IpFamily::V6, v6)] {
        let got = node.save(family)?;
        report.compare_family(&format!("{name} {family:?}"), family, want, &got);
    }
    node.stop()
}

#[test]
fn agent_programs_what_upstream_programmed() {
    if !kernel_tests_possible(
        "upstream_dumps",
        &[
            "ip",
            "iptables-legacy-restore",
            "iptables-legacy-save",
            "ip6tables-legacy-restore",
            "ip6tables-legacy-save",
        ],
    ) {
        return;
    }
    let binary = AgentBinary::at(PathBuf::from(env!("CARGO_BIN_EXE_kproxy"))).expect("kproxy");
    for name in kproxy_lab::sweep::remove_stale_labs() {
        eprintln!("removed namespace {name} left by a killed test process");
    }
    let dirs = dump_dirs();
    assert!(!dirs.is_empty(), "no dumps found");
    let mut report = Comparison::default();
    for dir in &dirs {
        let started = std::time::Instant::now();
        if let Err(e) = check_dump(&binary, dir, &mut report) {
            report.problems.push(format!("{}: {e}", dir.display()));
        }
        eprintln!("{}: checked in {:?}", dir.display(), started.elapsed());
    }
    eprintln!("allowed differences (newer upstream behaviour, kproxy additions):");
    for index in &report.allowed_used {
        let (what, reason) = &ALLOWED_DIFFERENCES[*index];
        eprintln!("  - {}: {reason}", describe(what));
    }
    let unused = report.unused_allowed();
    assert!(
        unused.is_empty(),
        "allowed differences that no longer occur (remove them):\n{}",
        unused.join("\n")
    );
    assert!(
        report.problems.is_empty(),
        "{} differences:\n{}",
        report.problems.len(),
        report.problems.join("\n")
    );
}
