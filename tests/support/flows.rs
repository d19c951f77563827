//! `flows.yaml`: packets traced through the fake kernel's state with kproxy's tracer.

use super::iptables_case::IptablesCase;
use kproxy_trace::flows::{Flow, FlowFile};
use kproxy_trace::{Ruleset, Tracer};
use std::path::Path;

fn flow_file(dir: &Path) -> Result<FlowFile, String> {
    let text = std::fs::read_to_string(dir.join("flows.yaml")).map_err(|e| e.to_string())?;
    FlowFile::parse(&text).map_err(|e| format!("flows.yaml: {e}"))
}

fn check_flows(label: &str, case: &IptablesCase, flows: &[Flow]) -> Result<(), String> {
    let ruleset = Ruleset::parse(&case.kernel.save()).map_err(|e| format!("{label}: {e}"))?;
    let tracer = Tracer::new(&ruleset, &case.settings.tracer_local_ips);
    let mut failures = Vec::new();
    for flow in flows {
        let packet = flow
            .packet()
            .map_err(|e| format!("{label}: {}: {e}", flow.name))?;
        let trace = tracer.trace(&packet);
        if let Err(mismatch) = flow.check(&trace) {
            failures.push(format!("{label}: {mismatch}\n{}", trace.render_tree()));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// Runs a case's flows: after the first sync, then after each step's actions and sync.
pub fn check_flows_file(dir: &Path, mut case: IptablesCase) -> Result<(), String> {
    let file = flow_file(dir)?;
    for (index, step) in file.steps.iter().enumerate() {
        for action in &step.actions {
            let action = serde_json::to_value(action).map_err(|e| e.to_string())?;
            case.apply_action(&action)?;
        }
        case.sync(false);
        let label = step
            .name
            .clone()
            .unwrap_or_else(|| format!("flows step {index}"));
        check_flows(&label, &case, &step.flows)?;
    }
    Ok(())
}

/// Flows against a static ruleset (TestTracePacket).
pub fn check_static_flows(dir: &Path, case: &IptablesCase) -> Result<(), String> {
    let file = flow_file(dir)?;
    for step in &file.steps {
        check_flows("static ruleset", case, &step.flows)?;
    }
    Ok(())
}
