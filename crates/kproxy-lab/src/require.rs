//! Whether this machine can run the lab, and what a test does when it cannot: fail under
//! `CI=true`, otherwise skip with a loud message.

use crate::command::tool_exists;
use crate::error::LabError;

/// The tools the lab and the agent need.
pub const TOOLS: [&str; 4] = ["ip", "iptables-nft-save", "iptables-legacy-save", "nft"];

/// Checks for root and the tools in [`TOOLS`].
pub fn check_machine() -> Result<(), LabError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::Unsupported("not running as root".into()));
    }
    if let Some(missing) = TOOLS.iter().find(|t| !tool_exists(t)) {
        return Err(LabError::Unsupported(format!(
            "{missing} is not installed (scripts/install-deps installs it)"
        )));
    }
    Ok(())
}

/// Whether `CI=true`: then a lab test that cannot run must fail.
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// For a test that cannot run here: panics under CI, else prints a loud skip notice.
pub fn skip_or_fail(test: &str, reason: &LabError) {
    if in_ci() {
        panic!("{test}: cannot run under CI=true: {reason}");
    }
    eprintln!("!!! SKIPPING {test}: {reason}");
}
