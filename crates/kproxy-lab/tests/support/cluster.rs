//! The cluster the end-to-end tests run against, as manifest text: one node and a
//! dual-stack service per behaviour, each backed by lab pods.

use kproxy_lab::plan::{self, POD_PORT};
use kproxy_model::IpFamily;
use std::fmt::Write;

/// A service of the test cluster: name, cluster IPs, port and type-specific spec lines.
pub struct TestService {
    /// The service name (namespace `e2e`).
    pub name: &'static str,
    /// The last byte of its cluster IPs (10.96.0.N, fd00:10:96::N).
    pub ip_suffix: u8,
    /// TCP or UDP.
    pub protocol: &'static str,
    /// The service port.
    pub port: u16,
    /// The node port, if it has one.
    pub node_port: Option<u16>,
    /// More `spec:` fields (type, externalIPs, ...), one `key: value` each.
    pub spec: Vec<&'static str>,
    /// More `status:` text, or empty.
    pub status: &'static str,
    /// Server pods behind it.
    pub pods: Vec<u8>,
}

/// The node object, with both addresses.
pub fn node_yaml() -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {}}}\n\
         spec: {{podCIDRs: [10.244.0.0/24, \"fd00:10:244::/64\"]}}\n\
         status:\n  addresses:\n  - {{type: InternalIP, address: {}}}\n  - {{type: InternalIP, address: \"{}\"}}\n",
        plan::NODE_NAME,
        plan::node_ip(IpFamily::V4),
        plan::node_ip(IpFamily::V6),
    )
}

impl TestService {
    /// The service and one EndpointSlice per family, as YAML documents.
    pub fn yaml(&self) -> String {
        let n = self.ip_suffix;
        let mut text = format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: e2e}}\nspec:\n  \
             ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv4, IPv6]\n  \
             clusterIP: 10.96.0.{n}\n  clusterIPs: [10.96.0.{n}, \"fd00:10:96::{n}\"]\n  \
             ports: [{{name: p, port: {port}, protocol: {proto}, targetPort: {POD_PORT}{node_port}}}]\n{spec}",
            name = self.name,
            port = self.port,
            proto = self.protocol,
            node_port = self
                .node_port
                .map(|p| format!(", nodePort: {p}"))
                .unwrap_or_default(),
            spec = self
                .spec
                .iter()
                .map(|field| format!("  {field}\n"))
                .collect::<String>(),
        );
        if !self.status.is_empty() {
            let _ = writeln!(text, "status: {}", self.status);
        }
        for family in plan::FAMILIES {
            text.push_str(&self.slice_yaml(family));
        }
        text
    }

    fn slice_yaml(&self, family: IpFamily) -> String {
        let (suffix, address_type) = match family {
            IpFamily::V4 => ("v4", "IPv4"),
            IpFamily::V6 => ("v6", "IPv6"),
        };
        let mut text = format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: {name}-{suffix}, namespace: e2e, labels: {{kubernetes.io/service-name: {name}}}}}\n\
             addressType: {address_type}\nports: [{{name: p, port: {POD_PORT}, protocol: {proto}}}]\nendpoints:",
            name = self.name,
            proto = self.protocol,
        );
        if self.pods.is_empty() {
            text.push_str(" []");
        }
        text.push('\n');
        for &pod in &self.pods {
            let _ = writeln!(
                text,
                "- {{addresses: [\"{}\"], conditions: {{ready: true}}, nodeName: {}}}",
                plan::pod_ip(family, pod),
                plan::NODE_NAME
            );
        }
        text
    }
}

/// The whole cluster: the node and `services`.
pub fn cluster_yaml(services: &[TestService]) -> String {
    let mut text = node_yaml();
    for service in services {
        text.push_str(&service.yaml());
    }
    text
}
