//! Multi-step cases: each step's `do` (a short sentence) is turned into store events, then
//! a sync, then the step's assertions.

use kproxy_model::ObjectKind;
use serde_json::Value;

use super::assertions::check_upstream;
use super::cluster::{apply_all, delete_all, kind_of};
use super::harness::Harness;

/// What a step does before its sync.
#[derive(Debug, PartialEq)]
enum Action {
    /// Apply every object of `cluster.yaml`.
    AddAll,
    /// Apply the n-th (1-based) Service of `cluster.yaml`.
    ServiceVersion(usize),
    /// Apply every Service with this health check node port.
    HealthCheckNodePort(u64),
    /// Delete every EndpointSlice.
    DeleteSlices,
    /// Delete every Service.
    DeleteServices,
}

fn number_after(text: &str, prefix: &str) -> Option<u64> {
    let rest = text.strip_prefix(prefix)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// Reads a step's `do`; a sentence it does not know is an error.
fn action(text: &str) -> Result<Action, String> {
    let (what, then) = text.split_once(';').unwrap_or((text, ""));
    if then.trim() != "sync" {
        return Err(format!("step {text:?} does not end in a sync"));
    }
    let what = what.trim();
    let version = number_after(what, "add version ").or(number_after(what, "update to version "));
    if let Some(n) = version {
        return Ok(Action::ServiceVersion(n as usize));
    }
    if let Some(port) = number_after(what, "update healthCheckNodePort to ") {
        return Ok(Action::HealthCheckNodePort(port));
    }
    match what {
        "delete EndpointSlice" | "delete the EndpointSlice" => Ok(Action::DeleteSlices),
        "delete the Service" => Ok(Action::DeleteServices),
        w if w.starts_with("add ") => Ok(Action::AddAll),
        _ => Err(format!("step {text:?} is not understood")),
    }
}

fn perform(h: &mut Harness, docs: &[Value], action: Action) -> Result<(), String> {
    let services = || docs.iter().filter(|d| kind_of(d) == "Service");
    match action {
        Action::AddAll => apply_all(h, docs),
        Action::ServiceVersion(n) => {
            let doc = services()
                .nth(n.saturating_sub(1))
                .ok_or_else(|| format!("cluster.yaml has no Service version {n}"))?;
            apply_all(h, [doc])
        }
        Action::HealthCheckNodePort(port) => {
            let mut changed: Vec<Value> = services().cloned().collect();
            for doc in &mut changed {
                doc["spec"]["healthCheckNodePort"] = Value::from(port);
            }
            apply_all(h, &changed)
        }
        Action::DeleteSlices => {
            delete_all(h, docs, ObjectKind::EndpointSlice);
            Ok(())
        }
        Action::DeleteServices => {
            delete_all(h, docs, ObjectKind::Service);
            Ok(())
        }
    }
}

/// Runs every step with its assertions.
pub(crate) fn run_steps(h: &mut Harness, docs: &[Value], steps: &Value) -> Result<(), String> {
    for (index, step) in steps
        .as_array()
        .ok_or("steps: not a list")?
        .iter()
        .enumerate()
    {
        let text = step.get("do").and_then(Value::as_str).unwrap_or("");
        let n = index + 1;
        perform(h, docs, action(text).map_err(|e| format!("step {n}: {e}"))?)?;
        h.sync().map_err(|e| format!("step {n} ({text}): {e}"))?;
        check_upstream(h, step).map_err(|e| format!("step {n} ({text}): {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_sentences_are_read() {
        assert_eq!(
            action("add Service + EndpointSlice; sync"),
            Ok(Action::AddAll)
        );
        assert_eq!(
            action("update to version 3 (1234/TCP, 1235/TCP, 1236/UDP); sync"),
            Ok(Action::ServiceVersion(3))
        );
        assert_eq!(
            action("update healthCheckNodePort to 30001; sync"),
            Ok(Action::HealthCheckNodePort(30001))
        );
        assert_eq!(
            action("delete the EndpointSlice; sync"),
            Ok(Action::DeleteSlices)
        );
        assert!(action("restart the proxier; sync").is_err());
        assert!(action("add Service").is_err());
    }
}
