//! Whether a test that needs the guest kernel may run here.

use std::io::Write;

/// True inside the ipvs-vm guest. Elsewhere the test is skipped with a loud
/// message, except under `CI=true`, where not being able to run is a failure.
pub fn in_guest(test: &str) -> bool {
    if std::env::var_os("IPVS_VM").is_some() {
        return true;
    }
    let message =
        format!("{test}: needs the IPVS guest kernel; run tools/ipvs-vm/test (IPVS_VM is not set)");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{message}");
    }
    // Straight to stderr: the test harness captures eprintln! of passing tests.
    let _ = writeln!(std::io::stderr(), "SKIPPED {message}");
    false
}
