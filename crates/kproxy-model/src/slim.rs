//! What the store keeps of each object: the API server sends much that no proxy mode
//! reads (managed fields, owner references, each endpoint's target pod), and a list
//! deserialised element by element leaves vectors with spare capacity. At 10,000 services
//! with 10 endpoints each that was about a third of the agent's memory.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The EndpointSlice annotation with the time of the change that triggered it, kept for
/// the network programming latency metric.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// Drops what only the API server needs: managed fields, owner references, uid, resource
/// version, generation and creation time. Without the resource version, an update that
/// changes nothing else compares equal to what the store has.
fn slim_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.owner_references = None;
    meta.uid = None;
    meta.resource_version = None;
    meta.generation = None;
    meta.creation_timestamp = None;
}

/// A Service as the store keeps it.
pub(crate) fn slim_service(service: &mut Service) {
    slim_meta(&mut service.metadata);
}

/// An EndpointSlice as the store keeps it: no annotations but the trigger time, and
/// endpoints without their target object, hostname or deprecated topology.
pub(crate) fn slim_slice(slice: &mut EndpointSlice) {
    slim_meta(&mut slice.metadata);
    if let Some(annotations) = slice.metadata.annotations.as_mut() {
        annotations.retain(|key, _| key == TRIGGER_TIME_ANNOTATION);
        if annotations.is_empty() {
            slice.metadata.annotations = None;
        }
    }
    for endpoint in &mut slice.endpoints {
        endpoint.target_ref = None;
        endpoint.hostname = None;
        endpoint.deprecated_topology = None;
        endpoint.addresses.shrink_to_fit();
    }
    slice.endpoints.shrink_to_fit();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::parse_manifest;
    use crate::KubeObject;

    #[test]
    fn keeps_what_the_proxy_reads() {
        let text = r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: ns
  uid: "1234"
  resourceVersion: "77"
  labels: {kubernetes.io/service-name: web}
  annotations:
    endpoints.kubernetes.io/last-change-trigger-time: "2026-12-02T05:00:00Z"
    other: x
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: ["10.0.0.1"]
  conditions: {ready: true}
  nodeName: node-0
  zone: a
  hostname: pod-0
  targetRef: {kind: Pod, name: pod-0, namespace: ns}
"#;
        let Ok(manifest) = parse_manifest(text) else {
            panic!("manifest parses");
        };
        let Some(KubeObject::EndpointSlice(mut slice)) = manifest.objects.into_iter().next() else {
            panic!("one slice");
        };
        slim_slice(&mut slice);
        let meta = &slice.metadata;
        assert_eq!(meta.resource_version, None);
        assert_eq!(meta.uid, None);
        assert_eq!(meta.labels.as_ref().map(|l| l.len()), Some(1));
        let annotations = meta.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            [TRIGGER_TIME_ANNOTATION]
        );
        let endpoint = &slice.endpoints[0];
        assert_eq!(endpoint.addresses, ["10.0.0.1"]);
        assert_eq!(endpoint.node_name.as_deref(), Some("node-0"));
        assert_eq!(endpoint.zone.as_deref(), Some("a"));
        assert!(endpoint.target_ref.is_none() && endpoint.hostname.is_none());
        assert_eq!(slice.endpoints.capacity(), 1);
    }
}
