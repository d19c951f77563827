//! Runs every nftables conformance case under `$KPROXY_CONFORMANCE_DIR/nftables`
//! (default: the workspace's `tests/conformance/nftables`).

use kproxy_nftables::conformance::{case_dirs, check_case};
use std::path::PathBuf;

fn cases_root() -> PathBuf {
    match std::env::var_os("KPROXY_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir).join("nftables"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/nftables"),
    }
}

#[test]
fn nftables_conformance() {
    let root = cases_root();
    let dirs = case_dirs(&root).unwrap_or_else(|e| panic!("cannot list cases: {e}"));
    assert!(
        !dirs.is_empty(),
        "no conformance cases under {}",
        root.display()
    );
    let mut failed = Vec::new();
    for dir in &dirs {
        let name = dir.strip_prefix(&root).unwrap_or(dir).display().to_string();
        match check_case(dir) {
            Ok(()) => println!("ok   {name}"),
            Err(e) => {
                println!("FAIL {name}\n{e}");
                failed.push(name);
            }
        }
    }
    println!(
        "nftables conformance: {} passed, {} failed",
        dirs.len() - failed.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "failed cases: {failed:?}");
}
