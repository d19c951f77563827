//! The cluster file the agent reads: a Node and Services with one EndpointSlice each,
//! as YAML text, written atomically so the agent's poller never sees half a file.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

/// The port every pod serves on.
pub const POD_PORT: u16 = 8080;

/// One TCP Service on port 80 (targeting [`POD_PORT`]) and its ready endpoints.
#[derive(Debug, Clone)]
pub struct Service {
    /// The Service's name, in namespace `e2e`.
    pub name: String,
    /// Its ClusterIP.
    pub cluster_ip: Ipv4Addr,
    /// Its NodePort, making it a `NodePort` Service.
    pub node_port: Option<u16>,
    /// `sessionAffinity: ClientIP`.
    pub client_ip_affinity: bool,
    /// The ready endpoints' addresses.
    pub endpoints: Vec<Ipv4Addr>,
    /// The endpoints run on another node (else on this one).
    pub endpoints_elsewhere: bool,
}

impl Service {
    /// A plain ClusterIP Service.
    pub fn cluster_ip(name: &str, cluster_ip: Ipv4Addr, endpoints: &[Ipv4Addr]) -> Service {
        Service {
            name: name.to_string(),
            cluster_ip,
            node_port: None,
            client_ip_affinity: false,
            endpoints: endpoints.to_vec(),
            endpoints_elsewhere: false,
        }
    }

    fn write_yaml(&self, node: &str, out: &mut String) {
        let kind = if self.node_port.is_some() {
            "NodePort"
        } else {
            "ClusterIP"
        };
        let node_port = self
            .node_port
            .map(|p| format!(", nodePort: {p}"))
            .unwrap_or_default();
        let _ = write!(
            out,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: e2e}}\n\
             spec:\n  type: {kind}\n  clusterIP: {ip}\n  clusterIPs: [{ip}]\n  \
             ports: [{{name: p, port: 80, protocol: TCP, targetPort: {POD_PORT}{node_port}}}]\n",
            name = self.name,
            ip = self.cluster_ip,
        );
        if self.client_ip_affinity {
            out.push_str("  sessionAffinity: ClientIP\n");
        }
        let _ = write!(
            out,
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: {name}-1, namespace: e2e, labels: {{kubernetes.io/service-name: {name}}}}}\n\
             addressType: IPv4\nports: [{{name: p, port: {POD_PORT}, protocol: TCP}}]\nendpoints:",
            name = self.name,
        );
        if self.endpoints.is_empty() {
            out.push_str(" []");
        }
        out.push('\n');
        let node = if self.endpoints_elsewhere {
            "another-node"
        } else {
            node
        };
        for ip in &self.endpoints {
            let _ = writeln!(
                out,
                "- {{addresses: [\"{ip}\"], conditions: {{ready: true}}, nodeName: {node}}}"
            );
        }
    }
}

/// The Node `node` with InternalIP `node_ip`, and `services`.
pub fn cluster_yaml(node: &str, node_ip: Ipv4Addr, services: &[Service]) -> String {
    let mut text = format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {node}}}\n\
         status:\n  addresses:\n  - {{type: InternalIP, address: {node_ip}}}\n"
    );
    for service in services {
        service.write_yaml(node, &mut text);
    }
    text
}

/// Writes `text` to `path` through a temporary file and a rename.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, text).map_err(|e| format!("writing {}: {e}", temp.display()))?;
    std::fs::rename(&temp, path).map_err(|e| format!("renaming to {}: {e}", path.display()))
}
