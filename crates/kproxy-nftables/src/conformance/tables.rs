//! `cases.yaml`: table tests whose assertion is one number or boolean (no-local-endpoint
//! gauges; whether an LB ingress IP gets a `service-ips` element).

use super::harness::Harness;
use crate::nft::FakeNft;
use crate::render::base::SERVICE_IPS;
use crate::settings::ProxierSettings;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    name: String,
    #[serde(default)]
    itp: Option<String>,
    #[serde(default)]
    etp: Option<String>,
    #[serde(default)]
    endpoints: Vec<String>,
    #[serde(default)]
    internal: Option<usize>,
    #[serde(default)]
    external: Option<usize>,
    #[serde(default, rename = "svcIP")]
    svc_ip: Option<String>,
    #[serde(default, rename = "lbIP")]
    lb_ip: Option<String>,
    #[serde(default)]
    ip_mode: Option<String>,
    #[serde(default, rename = "serviceIPsElementExists")]
    service_ips_element_exists: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct CasesFile {
    cases: Vec<Case>,
}

/// Runs every table case; returns how many were checked.
pub fn check_cases(text: &str, settings: &ProxierSettings) -> Result<usize, String> {
    let file: CasesFile = serde_yaml_ng::from_str(text).map_err(|e| format!("cases.yaml: {e}"))?;
    let mut failures = Vec::new();
    for case in &file.cases {
        let result = if case.internal.is_some() && case.external.is_some() {
            no_local_endpoints(case, settings)
        } else if case.service_ips_element_exists.is_some() {
            ingress_mode(case, settings)
        } else {
            Err("cannot interpret case (no known assertion)".to_string())
        };
        if let Err(e) = result {
            failures.push(format!("case {:?}: {e}", case.name));
        }
    }
    if failures.is_empty() {
        Ok(file.cases.len())
    } else {
        Err(failures.join("\n"))
    }
}

fn no_local_endpoints(case: &Case, settings: &ProxierSettings) -> Result<(), String> {
    let mut spec = vec![
        "clusterIP: 172.30.1.1".to_string(),
        "selector: {foo: bar}".to_string(),
    ];
    spec.push("ports: [{name: \"\", port: 80, protocol: TCP, nodePort: 123}]".to_string());
    if let Some(itp) = &case.itp {
        spec.push(format!("internalTrafficPolicy: {itp}"));
    }
    if let Some(etp) = &case.etp {
        spec.push("type: NodePort".to_string());
        spec.push(format!("externalTrafficPolicy: {etp}"));
    }
    let endpoints: Vec<String> = case
        .endpoints
        .iter()
        .map(|e| {
            let (ip, node) = e.split_once('@').unwrap_or((e, ""));
            format!("{{addresses: [{ip}], conditions: {{ready: true}}, nodeName: \"{node}\"}}")
        })
        .collect();
    let yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: svc1, namespace: ns1}}\nspec: {{{}}}\n---\n\
apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
metadata: {{name: svc1-1, namespace: ns1, labels: {{kubernetes.io/service-name: svc1}}}}\n\
addressType: IPv4\nendpoints: [{}]\nports: [{{name: \"\", port: 80, protocol: TCP}}]\n",
        spec.join(", "),
        endpoints.join(", ")
    );
    let harness = synced(&yaml, settings)?;
    let got = harness.proxier.no_local_endpoints();
    let want = (case.internal.unwrap_or(0), case.external.unwrap_or(0));
    if got != want {
        return Err(format!(
            "no-local-endpoint gauges (internal, external) = {got:?}, expected {want:?}"
        ));
    }
    Ok(())
}

fn ingress_mode(case: &Case, settings: &ProxierSettings) -> Result<(), String> {
    let svc_ip = case.svc_ip.as_deref().ok_or("missing svcIP")?;
    let lb_ip = case.lb_ip.as_deref().ok_or("missing lbIP")?;
    let mode = case
        .ip_mode
        .as_deref()
        .map(|m| format!(", ipMode: {m}"))
        .unwrap_or_default();
    let yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: svc1, namespace: ns1}}\n\
spec: {{type: LoadBalancer, clusterIP: {svc_ip}, ports: [{{name: p80, port: 80, protocol: TCP, nodePort: 3001}}]}}\n\
status: {{loadBalancer: {{ingress: [{{ip: {lb_ip}{mode}}}]}}}}\n---\n\
apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
metadata: {{name: svc1-1, namespace: ns1, labels: {{kubernetes.io/service-name: svc1}}}}\n\
addressType: IPv4\nendpoints: [{{addresses: [10.180.0.1]}}]\nports: [{{name: p80, port: 80, protocol: TCP}}]\n"
    );
    let harness = synced(&yaml, settings)?;
    let key = format!("{lb_ip} . tcp . 80");
    let exists = harness
        .nft
        .state()
        .table(harness.proxier.family(), &settings.table)
        .and_then(|t| t.elements.get(SERVICE_IPS))
        .is_some_and(|m| m.contains_key(&key));
    if Some(exists) != case.service_ips_element_exists {
        return Err(format!(
            "service-ips element {key:?} exists = {exists}, expected {:?}",
            case.service_ips_element_exists
        ));
    }
    Ok(())
}

fn synced(yaml: &str, settings: &ProxierSettings) -> Result<Harness, String> {
    let mut harness = Harness::new(settings.clone(), FakeNft::new())?;
    harness.apply(Harness::objects(yaml)?);
    harness.sync()?;
    Ok(harness)
}
