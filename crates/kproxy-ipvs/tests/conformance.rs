//! Runs every ipvs conformance case under `$KPROXY_CONFORMANCE_DIR/ipvs` (default: the
//! project's copy in `tests/conformance/ipvs`) through `kproxy_ipvs::conformance::check_case`.
//! Prints `ipvs conformance: N passed, M failed` and fails if any case failed.
//! An argument filters cases by name.

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
    let root = match std::env::var_os("KPROXY_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir).join("ipvs"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/ipvs"),
    };
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut cases = Vec::new();
    case_dirs(&root, &mut cases);
    let (mut passed, mut failed) = (0, 0);
    if cases.is_empty() {
        println!("FAIL no ipvs cases under {}", root.display());
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
        let result = std::panic::catch_unwind(|| kproxy_ipvs::conformance::check_case(&dir))
            .unwrap_or_else(|_| Err("the check panicked".into()));
        match result {
            Ok(()) => {
                passed += 1;
                println!("ok   {name}");
            }
            Err(e) => {
                failed += 1;
                println!("FAIL {name}");
                for line in e.lines() {
                    println!("    {line}");
                }
            }
        }
    }
    println!("ipvs conformance: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
