//! The conformance runner: every case under `$KPROXY_CONFORMANCE_DIR` (default: the
//! project's copy in `tests/conformance`), each mode's cases checked against kproxy.
//! `KPROXY_CONFORMANCE_MODES=iptables,nftables` picks modes (default: all).
//! Ends with `conformance: N passed, M failed`; exits non-zero when any case failed.

mod support;

use std::path::{Path, PathBuf};

fn case_dirs(root: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('_') {
            continue;
        }
        if dir.join("proxier.yaml").exists() {
            out.push(dir.clone());
        }
        case_dirs(&dir, out);
    }
}

fn main() {
    let root = std::env::var_os("KPROXY_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance"));
    let modes = std::env::var("KPROXY_CONFORMANCE_MODES")
        .unwrap_or_else(|_| "iptables,nftables,ipvs".into());
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let (mut passed, mut failed) = (0, 0);
    for mode in modes.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let mut cases = Vec::new();
        case_dirs(&root.join(mode), &mut cases);
        if cases.is_empty() {
            println!("FAIL {mode}: no cases under {}", root.join(mode).display());
            failed += 1;
        }
        for dir in cases {
            let name = dir
                .strip_prefix(&root)
                .unwrap_or(&dir)
                .display()
                .to_string();
            if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
                continue;
            }
            let result = std::panic::catch_unwind(|| support::check_case(mode, &dir))
                .unwrap_or_else(|_| Err("the check panicked".into()));
            match result {
                Ok(()) => {
                    passed += 1;
                    println!("ok   {name}");
                }
                Err(e) => {
                    failed += 1;
                    println!("FAIL {name}\n{}", indent(&e));
                }
            }
        }
    }
    println!("conformance: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}
