//! Table cases (`cases.yaml`): each row describes a small cluster in a few fields; the
//! cluster is built here, synced once, and one number is compared.

use serde_json::{json, Value};

use super::cluster::apply_all;
use super::harness::Harness;
use super::settings::CaseSettings;
use super::vs::actual_services;
use super::yaml::{str_field, u64_field};

/// Runs every row; a table whose columns are unknown fails.
pub(crate) fn run_table(
    settings: impl Fn() -> Result<CaseSettings, String>,
    v: &Value,
) -> Result<(), String> {
    let rows = v
        .get("cases")
        .and_then(Value::as_array)
        .ok_or("cases: not a list")?;
    for row in rows {
        let name = str_field(row, "name")?;
        let mut h = Harness::new(settings()?);
        let result = if row.get("internal").is_some() {
            no_local_endpoints_row(&mut h, row)
        } else if row.get("lbIP").is_some() {
            ingress_mode_row(&mut h, row)
        } else {
            Err("unknown table columns".to_string())
        };
        result.map_err(|e| format!("row {name:?}: {e}"))?;
    }
    Ok(())
}

/// `TestNoEndpointsMetric`: services counted with a Local policy and no local endpoint.
fn no_local_endpoints_row(h: &mut Harness, row: &Value) -> Result<(), String> {
    let mut service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "svc1", "namespace": "ns1"},
        "spec": {"clusterIP": "172.20.1.1", "selector": {"foo": "bar"},
                 "ports": [{"name": "p80", "port": 80, "targetPort": 80, "protocol": "TCP", "nodePort": 30000}]}
    });
    if let Some(itp) = row.get("itp").and_then(Value::as_str) {
        service["spec"]["internalTrafficPolicy"] = json!(itp);
    }
    if let Some(etp) = row.get("etp").and_then(Value::as_str) {
        service["spec"]["externalTrafficPolicy"] = json!(etp);
        service["spec"]["type"] = json!("NodePort");
    }
    let mut endpoints = Vec::new();
    for text in super::yaml::string_list(&row["endpoints"])? {
        let (ip, node) = text.split_once('@').ok_or("endpoint is not ip@node")?;
        endpoints.push(json!({"addresses": [ip], "nodeName": node, "conditions": {"ready": true}}));
    }
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "svc1-1", "namespace": "ns1", "labels": {"kubernetes.io/service-name": "svc1"}},
        "addressType": "IPv4", "endpoints": endpoints,
        "ports": [{"name": "p80", "port": 80, "protocol": "TCP"}]
    });
    apply_all(h, [&service, &slice])?;
    h.sync()?;
    let desired = &h.last.as_ref().ok_or("no sync")?.desired;
    let got = (
        desired.no_local_internal.len() as u64,
        desired.no_local_external.len() as u64,
    );
    let want = (u64_field(row, "internal")?, u64_field(row, "external")?);
    if got != want {
        return Err(format!("(internal, external) = {got:?}, want {want:?}"));
    }
    Ok(())
}

/// `TestLoadBalancerIngressRouteTypeProxy`: `ipMode: Proxy` ingress IPs get no virtual
/// server. kproxy has no LoadBalancerIPMode gate (it behaves as the GA gate, on); a row
/// with the gate off is run with `ipMode` removed, which is what the gate being off means.
fn ingress_mode_row(h: &mut Harness, row: &Value) -> Result<(), String> {
    let gate = row
        .get("gate")
        .and_then(Value::as_bool)
        .ok_or("gate: not a boolean")?;
    let mut ingress = json!({"ip": str_field(row, "lbIP")?});
    if let Some(mode) = row.get("ipMode").and_then(Value::as_str).filter(|_| gate) {
        ingress["ipMode"] = json!(mode);
    }
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "svc1", "namespace": "ns1"},
        "spec": {"type": "LoadBalancer", "clusterIP": str_field(row, "svcIP")?,
                 "ports": [{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3001}]},
        "status": {"loadBalancer": {"ingress": [ingress]}}
    });
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "svc1-1", "namespace": "ns1", "labels": {"kubernetes.io/service-name": "svc1"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.180.0.1"]}],
        "ports": [{"name": "p80", "port": 80, "protocol": "TCP"}]
    });
    apply_all(h, [&service, &slice])?;
    h.sync()?;
    let got = actual_services(h)?.len() as u64;
    let want = u64_field(row, "virtualServers")?;
    if got != want {
        return Err(format!("{got} virtual servers, want {want}"));
    }
    Ok(())
}
