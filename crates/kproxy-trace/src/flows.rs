//! Upstream's packet-flow expectations (`flows.yaml` in the conformance cases) and how to
//! check a trace against one.
//!
//! A file holds either a top-level `flows:` list (checked after the initial sync) or
//! `steps:`, each with optional `actions:` (applied by the caller, then one sync) and
//! `flows:`. Both forms read into [`FlowFile::steps`]; the plain form is one step without
//! actions.

use crate::packet::{Packet, Protocol, UnknownProtocol};
use crate::trace::Trace;
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;

/// A flows file or proxier file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The YAML does not have the expected shape.
    #[error("cannot read flows: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    /// The file has neither `flows:` nor `steps:`.
    #[error("the file has neither flows: nor steps:")]
    Empty,
}

/// One packet and the result upstream's tracer gives for it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Flow {
    /// What the flow tests.
    pub name: String,
    /// The packet's source.
    #[serde(rename = "sourceIP")]
    pub source_ip: IpAddr,
    /// The protocol; empty means TCP.
    #[serde(default)]
    pub protocol: String,
    /// The packet's destination.
    #[serde(rename = "destIP")]
    pub dest_ip: IpAddr,
    /// The destination port.
    #[serde(rename = "destPort")]
    pub dest_port: u16,
    /// Expected [`Trace::output`].
    #[serde(default)]
    pub output: String,
    /// Expected [`Trace::masquerade`].
    #[serde(default)]
    pub masq: bool,
}

impl Flow {
    /// The packet to trace for this flow.
    pub fn packet(&self) -> Result<Packet, UnknownProtocol> {
        let protocol: Protocol = self.protocol.parse()?;
        Ok(Packet::new(
            self.source_ip,
            self.dest_ip,
            protocol,
            self.dest_port,
        ))
    }

    /// Compares a trace of [`Flow::packet`] with the expectation.
    pub fn check(&self, trace: &Trace) -> Result<(), FlowMismatch> {
        let (output, masq) = (trace.output(), trace.masquerade());
        if output == self.output && masq == self.masq {
            return Ok(());
        }
        Err(FlowMismatch {
            flow: self.name.clone(),
            expected_output: self.output.clone(),
            expected_masq: self.masq,
            output,
            masq,
        })
    }
}

/// A trace that did not give the flow's expected result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMismatch {
    /// The flow's name.
    pub flow: String,
    /// What upstream expects.
    pub expected_output: String,
    /// What upstream expects.
    pub expected_masq: bool,
    /// What the trace gave.
    pub output: String,
    /// What the trace gave.
    pub masq: bool,
}

impl fmt::Display for FlowMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "flow {:?}: expected output {:?} masq {}, got output {:?} masq {}",
            self.flow, self.expected_output, self.expected_masq, self.output, self.masq
        )
    }
}

impl std::error::Error for FlowMismatch {}

/// The flows to check after one sync.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowStep {
    /// The step's label (`step:`), if the file has steps.
    pub name: Option<String>,
    /// The actions to apply before this step's sync (`{op: add, object: ...}` etc.), as
    /// written; empty for the first step.
    pub actions: Vec<serde_yaml_ng::Value>,
    /// The flows to check after the sync.
    pub flows: Vec<Flow>,
}

/// A whole `flows.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowFile {
    /// The steps, in order (a single step for the plain `flows:` form).
    pub steps: Vec<FlowStep>,
}

#[derive(Deserialize)]
struct RawFile {
    flows: Option<Vec<Flow>>,
    steps: Option<Vec<RawStep>>,
}

#[derive(Deserialize)]
struct RawStep {
    step: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    actions: Vec<serde_yaml_ng::Value>,
    #[serde(default)]
    flows: Vec<Flow>,
}

impl FlowFile {
    /// Reads a `flows.yaml` text.
    pub fn parse(text: &str) -> Result<FlowFile, FlowError> {
        let raw: RawFile = serde_yaml_ng::from_str(text)?;
        if let Some(steps) = raw.steps {
            let steps = steps
                .into_iter()
                .map(|s| FlowStep {
                    name: s.step.map(|v| match v {
                        serde_yaml_ng::Value::String(s) => s,
                        other => serde_yaml_ng::to_string(&other)
                            .map(|s| s.trim().to_string())
                            .unwrap_or_default(),
                    }),
                    actions: s.actions,
                    flows: s.flows,
                })
                .collect();
            return Ok(FlowFile { steps });
        }
        let flows = raw.flows.ok_or(FlowError::Empty)?;
        Ok(FlowFile {
            steps: vec![FlowStep {
                name: None,
                actions: Vec::new(),
                flows,
            }],
        })
    }
}

/// Reads `tracerLocalIPs` from a case's `proxier.yaml` (empty if absent).
pub fn tracer_local_ips(proxier_yaml: &str) -> Result<Vec<IpAddr>, FlowError> {
    #[derive(Deserialize)]
    struct Proxier {
        #[serde(rename = "tracerLocalIPs", default)]
        tracer_local_ips: Vec<IpAddr>,
    }
    let proxier: Proxier = serde_yaml_ng::from_str(proxier_yaml)?;
    Ok(proxier.tracer_local_ips)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_stepped_forms() {
        let plain = FlowFile::parse(
            "flows:\n  - name: a\n    sourceIP: 10.0.0.2\n    destIP: 172.30.0.41\n    destPort: 80\n    output: \"10.180.0.1:80\"\n",
        )
        .unwrap();
        assert_eq!(plain.steps.len(), 1);
        assert_eq!(plain.steps[0].flows[0].protocol, "");
        assert!(!plain.steps[0].flows[0].masq);
        let stepped = FlowFile::parse(
            "steps:\n  - step: first\n    flows: []\n  - step: 2\n    actions:\n      - {op: delete, kind: Service, namespace: ns1, name: svc1}\n    flows:\n      - {name: b, sourceIP: \"::1\", protocol: UDP, destIP: \"fd00::1\", destPort: 53, output: REJECT, masq: false}\n",
        )
        .unwrap();
        assert_eq!(stepped.steps[1].name.as_deref(), Some("2"));
        assert_eq!(stepped.steps[1].actions.len(), 1);
        let flow = &stepped.steps[1].flows[0];
        assert_eq!(flow.packet().unwrap().protocol, Protocol::Udp);
        assert!(FlowFile::parse("other: 1\n").is_err());
    }
}
