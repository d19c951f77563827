//! The Kubernetes objects as kproxy keeps them: only the fields some mode reads, decoded
//! straight from the API server's JSON (or a manifest) by serde, which skips everything
//! else (managed fields, owner references, each endpoint's target pod) without keeping it.
//! Addresses are parsed once, conditions are booleans and node names are shared. At
//! 10,000 services with 10 endpoints each, the k8s-openapi objects these replace were
//! about 80 MB of the agent's memory.
//!
//! Decoding is as lenient as k8s-openapi's: a missing or `null` field is its default, and
//! a field of the wrong type is an error naming it.

mod decode;
mod node;
mod service;
mod slice;

pub use decode::{IpText, ProtocolField};
pub use node::{NodeAddress, NodeMeta, SlimNode, SlimNodeSpec};
pub use service::{
    LoadBalancerIngress, ServiceType, SlimMeta, SlimService, SlimServicePort, SlimServiceSpec,
};
pub use slice::{
    AddressType, Conditions, Hints, SliceMeta, SlimEndpoint, SlimEndpointPort, SlimEndpointSlice,
    TRIGGER_TIME_ANNOTATION,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::parse_manifest;
    use crate::service::Protocol;
    use crate::KubeObject;

    #[test]
    fn a_slice_keeps_what_the_proxy_reads() {
        let text = r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: ns
  uid: "1234"
  resourceVersion: "77"
  managedFields: [{manager: x, operation: Update}]
  labels: {kubernetes.io/service-name: web, other: y}
  annotations:
    endpoints.kubernetes.io/last-change-trigger-time: "2026-12-02T05:00:00Z"
    other: x
addressType: IPv4
ports: [{name: http, port: 8080, protocol: UDP}, {port: null}]
endpoints:
- addresses: ["10.0.0.1", "10.0.0.9"]
  conditions: {ready: true, terminating: false}
  nodeName: node-0
  zone: a
  hostname: pod-0
  targetRef: {kind: Pod, name: pod-0, namespace: ns}
  hints: {forZones: [{name: a}]}
- addresses: []
  conditions: null
"#;
        let Ok(manifest) = parse_manifest(text) else {
            panic!("manifest parses");
        };
        let Some(KubeObject::EndpointSlice(slice)) = manifest.objects.into_iter().next() else {
            panic!("one slice");
        };
        let meta = &slice.metadata;
        assert_eq!(
            (meta.name.as_str(), meta.namespace.as_str()),
            ("web-abc", "ns")
        );
        assert_eq!(meta.resource_version.as_deref(), Some("77"));
        assert_eq!(meta.service_name.as_deref(), Some("web"));
        assert_eq!(meta.trigger_time.as_deref(), Some("2026-12-02T05:00:00Z"));
        assert_eq!(slice.address_type, AddressType::V4);
        assert_eq!(slice.ports.len(), 2);
        assert_eq!(slice.ports[0].protocol, ProtocolField::Known(Protocol::Udp));
        assert_eq!(
            (slice.ports[1].name.as_str(), slice.ports[1].port),
            ("", None)
        );
        let endpoint = &slice.endpoints[0];
        assert_eq!(endpoint.address, Some(IpText::Ip([10, 0, 0, 1].into())));
        assert_eq!(endpoint.conditions.ready, Some(true));
        assert_eq!(endpoint.conditions.serving, None);
        assert_eq!(endpoint.node_name.as_deref(), Some("node-0"));
        let hints = endpoint.hints.as_deref().map(|h| h.for_zones.clone());
        assert_eq!(hints, Some(vec!["a".to_string()]));
        assert_eq!(slice.endpoints[1], SlimEndpoint::default());
    }

    #[test]
    fn an_endpoint_stays_small() {
        // 100,000 endpoints at 10,000 services: every byte here is 100 kB of agent memory.
        assert!(std::mem::size_of::<SlimEndpoint>() <= 56);
    }

    #[test]
    fn a_service_keeps_what_the_proxy_reads() {
        let text = r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ns, labels: {app: web}}
spec:
  type: LoadBalancer
  clusterIP: 10.0.0.10
  clusterIPs: [10.0.0.10, "fd00::10"]
  externalIPs: [bad]
  externalTrafficPolicy: Local
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  healthCheckNodePort: 30999
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}, {port: 81, protocol: ICMP}]
status:
  loadBalancer:
    ingress: [{ip: 1.2.3.4, ipMode: Proxy}]
"#;
        let Ok(manifest) = parse_manifest(text) else {
            panic!("manifest parses");
        };
        let Some(KubeObject::Service(service)) = manifest.objects.into_iter().next() else {
            panic!("one service");
        };
        let Some(spec) = &service.spec else {
            panic!("a spec");
        };
        assert_eq!(spec.type_, ServiceType::LoadBalancer);
        assert_eq!(spec.cluster_ips.len(), 2);
        assert_eq!(spec.external_ips, [IpText::Invalid("bad".into())]);
        assert!(spec.external_policy_local && !spec.internal_policy_local);
        assert!(spec.client_ip_affinity);
        assert_eq!(spec.affinity_timeout_seconds, Some(60));
        assert_eq!(spec.health_check_node_port, Some(30999));
        assert_eq!(spec.ports[0].node_port, Some(30080));
        assert_eq!(
            spec.ports[1].protocol,
            ProtocolField::Unknown("ICMP".into())
        );
        assert_eq!(
            service.load_balancer_ingress[0].ip_mode.as_deref(),
            Some("Proxy")
        );
    }

    #[test]
    fn a_node_keeps_what_the_proxy_reads() {
        let text = r#"
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {topology.kubernetes.io/zone: a}, deletionTimestamp: "2026-12-02T05:00:00Z"}
spec: {podCIDRs: [10.64.0.0/24], taints: [{key: k, effect: NoSchedule}]}
status: {addresses: [{type: InternalIP, address: 192.168.0.1}]}
"#;
        let Ok(manifest) = parse_manifest(text) else {
            panic!("manifest parses");
        };
        let Some(KubeObject::Node(node)) = manifest.objects.into_iter().next() else {
            panic!("one node");
        };
        assert!(node.metadata.deleting);
        assert_eq!(node.metadata.labels.len(), 1);
        assert_eq!(node.spec.taint_keys, ["k"]);
        assert_eq!(node.spec.pod_cidrs, ["10.64.0.0/24"]);
        assert_eq!(node.addresses[0].address, "192.168.0.1");
    }
}
