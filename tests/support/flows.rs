//! `flows.yaml`: packets traced through the fake kernel's state.

use super::iptables_case::IptablesCase;
use std::path::Path;

/// Runs a case's flows (plain list after the first sync, or steps with actions).
pub fn check_flows_file(_dir: &Path, _case: IptablesCase) -> Result<(), String> {
    Err("flows: tracer not wired yet".into())
}

/// Flows against a static ruleset (TestTracePacket).
pub fn check_static_flows(_dir: &Path, _case: &IptablesCase) -> Result<(), String> {
    Err("flows: tracer not wired yet".into())
}
