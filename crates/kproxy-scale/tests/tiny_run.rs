//! The harness end to end at a tiny size (50 services × 3 endpoints, iptables-nft): the
//! agent programs the cluster, an endpoint change and a new service reach the kernel, and
//! the floor is measured. Needs root, `ip`, iptables-nft and the `kproxy` binary built
//! next to the harness (as `cargo test --workspace` does); under `CI=true` a missing
//! requirement fails the test instead of skipping it.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HARNESS: &str = env!("CARGO_BIN_EXE_kproxy-scale");
/// The harness bounds itself with `--timeout`; this is the test's own backstop.
const BACKSTOP: Duration = Duration::from_secs(90);

fn skip_or_fail(reason: &str) -> Option<PathBuf> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("scale harness test cannot run under CI=true: {reason}");
    }
    eprintln!("!!! SKIPPING scale harness test: {reason}");
    None
}

/// The kproxy binary, when everything the run needs is here.
fn requirements() -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip_or_fail("not running as root");
    }
    for tool in [
        "ip",
        "iptables-nft",
        "iptables-nft-restore",
        "iptables-nft-save",
    ] {
        if !["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .any(|dir| Path::new(dir).join(tool).exists())
        {
            return skip_or_fail(&format!("{tool} is not installed"));
        }
    }
    let kproxy = Path::new(HARNESS).with_file_name("kproxy");
    if !kproxy.is_file() {
        return skip_or_fail(&format!(
            "{} not built (cargo build --bin kproxy, or cargo test --workspace)",
            kproxy.display()
        ));
    }
    Some(kproxy)
}

/// Runs the harness, interrupting it (it then cleans up) if it outlives the backstop;
/// returns its report and its process id.
fn run_harness(kproxy: &Path) -> (String, u32) {
    let mut child = Command::new(HARNESS)
        .args(["--services", "50", "--endpoints", "3", "--backend", "nft"])
        .args(["--timeout", "20", "--changes", "2", "--json", "--kproxy"])
        .arg(kproxy)
        .stdout(Stdio::piped())
        .spawn()
        .expect("harness starts");
    let deadline = Instant::now() + BACKSTOP;
    while child.try_wait().expect("harness status").is_none() {
        if Instant::now() > deadline {
            let pid = libc::pid_t::try_from(child.id()).expect("pid");
            // SAFETY: signalling our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGINT) };
            let _ = child.wait();
            panic!("harness did not finish in {BACKSTOP:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = child.id();
    let output = child.wait_with_output().expect("harness output");
    assert!(output.status.success(), "harness failed: {}", output.status);
    (String::from_utf8(output.stdout).expect("UTF-8 report"), pid)
}

fn seconds(report: &Value, pointer: &str) -> f64 {
    report
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} is not a time in {report:#}"))
}

#[test]
fn a_tiny_cluster_reaches_the_kernel_and_every_figure_is_reported() {
    let Some(kproxy) = requirements() else {
        return;
    };
    let (text, pid) = run_harness(&kproxy);
    let report: Value = serde_json::from_str(&text).expect("JSON report");
    assert!(seconds(&report, "/first_sync/to_kernel") < 20.0);
    assert_eq!(report["table"]["Ok"]["dnat_rules"], 150, "{report:#}");
    for step in ["endpoint_change", "new_service"] {
        assert!(seconds(&report, &format!("/{step}/to_kernel")) < 20.0);
        assert!(
            report[step]["restore_bytes"].as_u64() > Some(0),
            "{report:#}"
        );
    }
    assert_eq!(
        report["endpoint_changes"].as_array().map(Vec::len),
        Some(2),
        "{report:#}"
    );
    assert!(report["agent_usage"]["peak_rss_bytes"].as_u64() > Some(0));
    assert!(seconds(&report, "/floor/Ok/full_restore") > 0.0);
    assert!(seconds(&report, "/floor/Ok/small_change") > 0.0);
    assert!(seconds(&report, "/floor/Ok/full_restore_noflush") > 0.0);
    let leftover = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    assert!(
        !String::from_utf8_lossy(&leftover.stdout).contains(&format!("kproxy-scale-{pid}-")),
        "namespaces left behind"
    );
}
