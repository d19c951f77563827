//! Services and EndpointSlices for the end-to-end tests, as API objects.

use serde_json::{json, Value};

/// A NodePort Service `ns1/{name}` on port 80 to target 8080.
pub fn service(name: &str, cluster_ip: &str, node_port: u16, client_ip_affinity: bool) -> Value {
    let mut svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "ns1"},
        "spec": {"type": "NodePort", "clusterIP": cluster_ip,
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                            "protocol": "TCP", "nodePort": node_port}]}
    });
    if client_ip_affinity {
        svc["spec"]["sessionAffinity"] = json!("ClientIP");
    }
    svc
}

/// The EndpointSlice of `ns1/{service}` with ready endpoints on port 8080 of other nodes.
pub fn slice(service: &str, ips: &[&str]) -> Value {
    let endpoints: Vec<Value> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip], "nodeName": "elsewhere"}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-1"), "namespace": "ns1",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4", "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    })
}
