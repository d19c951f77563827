//! `steps.yaml`: a sequence of cluster changes and syncs, each followed by a whole-ruleset
//! comparison, an operation count and the stale-chain list. The `do` text is a small
//! language (`add Service ns/name {ClusterIP ip, port name 80/TCP}; sync`, ...); a phrase
//! this module does not know fails the case.

use super::compare::compare;
use super::harness::Harness;
use kproxy_model::{ObjectKind, ObjectRef, StoreEvent};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StepSpec {
    step: u32,
    #[serde(rename = "do")]
    action: String,
    expect: String,
    #[serde(default)]
    ops: Option<usize>,
    #[serde(default)]
    stale_chains: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct StepsFile {
    steps: Vec<StepSpec>,
}

/// A slice the steps manage: where it lives and what it holds.
#[derive(Debug, Clone)]
struct SliceSpec {
    namespace: String,
    service: String,
    ips: Vec<String>,
    port: PortSpec,
}

#[derive(Debug, Clone)]
struct PortSpec {
    name: String,
    number: u16,
    protocol: String,
}

/// Runs every step; returns how many were checked.
pub fn check_steps(dir: &Path, cluster: &str, harness: &mut Harness) -> Result<usize, String> {
    let text =
        std::fs::read_to_string(dir.join("steps.yaml")).map_err(|e| format!("steps.yaml: {e}"))?;
    let file: StepsFile = serde_yaml_ng::from_str(&text).map_err(|e| format!("steps.yaml: {e}"))?;
    let mut runner = StepRunner {
        cluster: cluster.to_string(),
        slices: BTreeMap::new(),
        emptied: None,
    };
    for step in &file.steps {
        let label = format!("step {}", step.step);
        for action in step.action.split(';') {
            runner
                .run(action.trim(), harness)
                .map_err(|e| format!("{label}: {e}"))?;
        }
        let expected = std::fs::read_to_string(dir.join(&step.expect))
            .map_err(|e| format!("{label}: {}: {e}", step.expect))?;
        compare(
            &format!("{label} ({})", step.expect),
            &expected,
            &harness.dump(),
        )?;
        if let Some(ops) = step.ops {
            if harness.last_ops() != ops {
                return Err(format!(
                    "{label}: expected {ops} operations in the last transaction, got {}",
                    harness.last_ops()
                ));
            }
        }
        if let Some(expected) = &step.stale_chains {
            let mut want = expected.clone();
            want.sort();
            let got: Vec<String> = harness.proxier.stale_chains().map(str::to_string).collect();
            if got != want {
                return Err(format!("{label}: stale chains {got:?}, expected {want:?}"));
            }
        }
    }
    Ok(file.steps.len())
}

struct StepRunner {
    cluster: String,
    slices: BTreeMap<String, SliceSpec>,
    emptied: Option<(String, Vec<String>)>,
}

impl StepRunner {
    fn run(&mut self, action: &str, h: &mut Harness) -> Result<(), String> {
        if action == "sync" || action == "sync with no changes" {
            return h.sync().map(|_| ());
        }
        if action == "apply cluster.yaml" {
            h.apply(Harness::objects(&self.cluster)?);
            return Ok(());
        }
        if action == "age staleChains" {
            h.advance(Duration::from_secs(2));
            return Ok(());
        }
        if action == "restore slice" {
            let (name, ips) = self
                .emptied
                .take()
                .ok_or("restore slice: nothing was emptied")?;
            return self.set_endpoints(&name, ips, h);
        }
        if let Some(rest) = action.strip_prefix("delete Service ") {
            let (namespace, name) = rest
                .trim()
                .split_once('/')
                .ok_or("delete Service: expected ns/name")?;
            h.event(StoreEvent::Delete(ObjectRef {
                kind: ObjectKind::Service,
                namespace: namespace.to_string(),
                name: name.to_string(),
            }));
            return Ok(());
        }
        if let Some(rest) = action.strip_prefix("add Service ") {
            return self.add_service(rest, h);
        }
        if let Some(rest) = action.strip_prefix("add slice ") {
            let (name, body) = rest
                .split_once(' ')
                .ok_or("add slice: expected name {...}")?;
            return self.add_slice(name, body, None, h);
        }
        if let Some(name) = action.strip_prefix("empty slice ") {
            let old = self.slice(name)?.ips.clone();
            self.emptied = Some((name.to_string(), old));
            return self.set_endpoints(name, Vec::new(), h);
        }
        if let Some(rest) = action.strip_prefix("update slice ") {
            return self.update_slice(rest, h);
        }
        Err(format!("cannot interpret action {action:?}"))
    }

    fn slice(&self, name: &str) -> Result<&SliceSpec, String> {
        self.slices
            .get(name)
            .ok_or_else(|| format!("unknown slice {name:?}"))
    }

    fn add_service(&mut self, rest: &str, h: &mut Harness) -> Result<(), String> {
        let (service_part, slice_part) = match rest.split_once(" + slice ") {
            Some((s, slice)) => (s, Some(slice)),
            None => (rest.trim_end_matches(", no slice"), None),
        };
        let (full_name, body) = service_part
            .split_once(' ')
            .ok_or("add Service: expected ns/name {...}")?;
        let (namespace, name) = full_name
            .split_once('/')
            .ok_or("add Service: expected ns/name")?;
        let items = braced_items(body)?;
        let cluster_ip = items
            .iter()
            .find_map(|i| i.strip_prefix("ClusterIP "))
            .ok_or("add Service: no ClusterIP")?;
        let port = port_spec(items.last().ok_or("add Service: no port")?)?;
        let yaml = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
spec: {{type: ClusterIP, clusterIP: {cluster_ip}, ports: [{{name: {}, port: {}, protocol: {}}}]}}\n",
            port.name, port.number, port.protocol
        );
        h.apply(Harness::objects(&yaml)?);
        if let Some(slice) = slice_part {
            let (slice_name, slice_body) =
                slice.split_once(' ').ok_or("slice: expected name {...}")?;
            self.add_slice(slice_name, slice_body, Some((namespace, name)), h)?;
        }
        Ok(())
    }

    fn add_slice(
        &mut self,
        name: &str,
        body: &str,
        owner: Option<(&str, &str)>,
        h: &mut Harness,
    ) -> Result<(), String> {
        let items = braced_items(body)?;
        let (port_item, ips) = items.split_last().ok_or("slice: empty")?;
        let port = port_spec(port_item)?;
        let service = name.rsplit_once('-').map_or(name, |(s, _)| s).to_string();
        let namespace = match owner {
            Some((ns, _)) => ns.to_string(),
            None => h
                .store
                .services()
                .find(|(key, _)| key.name == service)
                .map(|(key, _)| key.namespace.clone())
                .ok_or_else(|| format!("slice {name}: no service {service:?}"))?,
        };
        let spec = SliceSpec {
            namespace,
            service: owner.map_or(service, |(_, s)| s.to_string()),
            ips: ips.to_vec(),
            port,
        };
        self.slices.insert(name.to_string(), spec);
        self.apply_slice(name, h)
    }

    fn update_slice(&mut self, rest: &str, h: &mut Harness) -> Result<(), String> {
        if let Some((name, change)) = rest.split_once(": ") {
            if let Some(list) = change.strip_prefix("endpoints ") {
                return self.set_endpoints(name, bracket_list(list)?, h);
            }
            if let Some((old, new)) = change.split_once(" -> ") {
                let mut ips = self.slice(name)?.ips.clone();
                let at = ips
                    .iter()
                    .position(|ip| ip == old.trim())
                    .ok_or_else(|| format!("slice {name} has no {old}"))?;
                ips[at] = new.trim().to_string();
                return self.set_endpoints(name, ips, h);
            }
        }
        if let Some((name, change)) = rest.split_once(" back to ") {
            let list = change.trim_end_matches(" immediately");
            return self.set_endpoints(name, bracket_list(list)?, h);
        }
        Err(format!("cannot interpret slice update {rest:?}"))
    }

    fn set_endpoints(
        &mut self,
        name: &str,
        ips: Vec<String>,
        h: &mut Harness,
    ) -> Result<(), String> {
        let spec = self
            .slices
            .get_mut(name)
            .ok_or_else(|| format!("unknown slice {name:?}"))?;
        spec.ips = ips;
        self.apply_slice(name, h)
    }

    fn apply_slice(&self, name: &str, h: &mut Harness) -> Result<(), String> {
        let s = self.slice(name)?;
        let endpoints: Vec<String> = s
            .ips
            .iter()
            .map(|ip| format!("{{addresses: [{ip}]}}"))
            .collect();
        let yaml = format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
metadata: {{name: {name}, namespace: {}, labels: {{kubernetes.io/service-name: {}}}}}\n\
addressType: IPv4\nendpoints: [{}]\nports: [{{name: {}, port: {}, protocol: {}}}]\n",
            s.namespace,
            s.service,
            endpoints.join(", "),
            s.port.name,
            s.port.number,
            s.port.protocol
        );
        h.apply(Harness::objects(&yaml)?);
        Ok(())
    }
}

/// `{a, b, c}` → `["a", "b", "c"]`.
fn braced_items(text: &str) -> Result<Vec<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| format!("expected {{...}}, found {text:?}"))?;
    Ok(inner
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// `[a, b]` → `["a", "b"]`.
fn bracket_list(text: &str) -> Result<Vec<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| format!("expected [...], found {text:?}"))?;
    Ok(inner
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// `[port] p80 80/TCP`.
fn port_spec(text: &str) -> Result<PortSpec, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let [.., name, number_proto] = words.as_slice() else {
        return Err(format!("bad port {text:?}"));
    };
    let (number, protocol) = number_proto
        .split_once('/')
        .ok_or_else(|| format!("bad port {text:?}"))?;
    Ok(PortSpec {
        name: name.to_string(),
        number: number
            .parse()
            .map_err(|_| format!("bad port number in {text:?}"))?,
        protocol: protocol.to_string(),
    })
}
