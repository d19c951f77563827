//! Shared helpers of the conformance runner.

pub mod flows;
pub mod iptables_case;
pub mod iptables_checks;
pub mod proxier_yaml;

use std::path::Path;

/// Checks one case of a mode.
pub fn check_case(mode: &str, dir: &Path) -> Result<(), String> {
    match mode {
        "iptables" => iptables_checks::check_case(dir),
        "nftables" => kproxy_nftables::conformance::check_case(dir),
        "ipvs" => kproxy_ipvs::conformance::check_case(dir),
        other => Err(format!("mode {other} is not implemented yet")),
    }
}
