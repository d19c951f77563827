//! `flows.yaml`: packets traced through the synced ruleset, with the expected DNAT
//! destinations (or DROP/REJECT/"") and masquerade flag.

use super::harness::Harness;
use crate::trace::Packet;
use kproxy_model::{parse_ip_sloppy, KubeObject, ObjectKind, StoreEvent};
use serde::Deserialize;
use std::net::IpAddr;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Flow {
    name: String,
    #[serde(rename = "sourceIP")]
    source_ip: String,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(rename = "destIP")]
    dest_ip: String,
    dest_port: u16,
    output: String,
    masq: bool,
}

#[derive(Debug, Deserialize)]
struct Step {
    after: String,
    flows: Vec<Flow>,
}

#[derive(Debug, Deserialize)]
struct FlowsFile {
    #[serde(default)]
    flows: Option<Vec<Flow>>,
    #[serde(default)]
    steps: Option<Vec<Step>>,
}

/// Runs a case's flows; returns the number of flows checked.
pub fn check_flows(
    text: &str,
    cluster: &str,
    harness: &mut Harness,
    local_ips: &[IpAddr],
) -> Result<usize, String> {
    let file: FlowsFile = serde_yaml_ng::from_str(text).map_err(|e| format!("flows.yaml: {e}"))?;
    let objects = Harness::objects(cluster)?;
    match (file.flows, file.steps) {
        (Some(flows), None) => {
            harness.apply(objects);
            harness.sync()?;
            run_flows("", &flows, harness, local_ips)
        }
        (None, Some(steps)) => run_steps(&steps, objects, harness, local_ips),
        _ => Err("flows.yaml: expected exactly one of `flows` or `steps`".into()),
    }
}

/// Upstream's sequence: two empty syncs, Services then EndpointSlices added and a sync,
/// then (second step) the EndpointSlices deleted and a sync.
fn run_steps(
    steps: &[Step],
    objects: Vec<KubeObject>,
    harness: &mut Harness,
    local_ips: &[IpAddr],
) -> Result<usize, String> {
    let mut checked = 0;
    let slices: Vec<_> = objects
        .iter()
        .filter(|o| o.kind() == ObjectKind::EndpointSlice)
        .map(KubeObject::object_ref)
        .collect();
    for (index, step) in steps.iter().enumerate() {
        match step.after.as_str() {
            "EndpointSlice added, syncProxyRules()" => {
                harness.sync()?;
                harness.sync()?;
                let (services, others): (Vec<_>, Vec<_>) = objects
                    .iter()
                    .cloned()
                    .partition(|o| o.kind() == ObjectKind::Service);
                harness.apply(services);
                harness.apply(others);
            }
            "EndpointSlice deleted, syncProxyRules()" => {
                for slice in &slices {
                    harness.event(StoreEvent::Delete(slice.clone()));
                }
            }
            other => {
                return Err(format!(
                    "flows.yaml step {}: cannot interpret {other:?}",
                    index + 1
                ))
            }
        }
        harness.sync()?;
        checked += run_flows(
            &format!("step {}: ", index + 1),
            &step.flows,
            harness,
            local_ips,
        )?;
    }
    Ok(checked)
}

fn run_flows(
    prefix: &str,
    flows: &[Flow],
    harness: &Harness,
    local_ips: &[IpAddr],
) -> Result<usize, String> {
    let mut failures = Vec::new();
    for flow in flows {
        let packet = Packet {
            src: parse_ip_sloppy(&flow.source_ip)
                .ok_or_else(|| format!("flow {:?}: bad sourceIP", flow.name))?,
            dst: parse_ip_sloppy(&flow.dest_ip)
                .ok_or_else(|| format!("flow {:?}: bad destIP", flow.name))?,
            protocol: flow
                .protocol
                .as_deref()
                .unwrap_or("TCP")
                .to_ascii_lowercase(),
            dport: flow.dest_port,
        };
        let got = harness
            .trace(&packet, local_ips)
            .map_err(|e| format!("{prefix}flow {:?}: {e}", flow.name))?;
        if got.output != flow.output || got.masq != flow.masq {
            failures.push(format!(
                "{prefix}flow {:?}: expected output {:?} masq {}, got {:?} masq {}",
                flow.name, flow.output, flow.masq, got.output, got.masq
            ));
        }
    }
    if failures.is_empty() {
        Ok(flows.len())
    } else {
        Err(failures.join("\n"))
    }
}
