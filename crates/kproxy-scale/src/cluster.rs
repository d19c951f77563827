//! The generated cluster: N Services with one port each (one in ten a NodePort), one
//! EndpointSlice per Service with M ready endpoints spread over 100 nodes, and the Node the
//! agent runs as. Pure: values in, Kubernetes JSON out.

use serde_json::{json, Value};
use std::net::Ipv4Addr;

/// The Node the agent runs as.
pub const NODE_NAME: &str = "node-0";
/// The node's address on its `eth0`.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);
/// The cluster's pod CIDR, given to the agent as `--cluster-cidr`.
pub const CLUSTER_CIDR: &str = "10.64.0.0/10";
/// Nodes the endpoints are spread over (so about one in a hundred is local).
const NODES: u32 = 100;
/// First ClusterIP: 10.96.0.10 in the usual 10.96.0.0/12.
const FIRST_CLUSTER_IP: u32 = u32::from_be_bytes([10, 96, 0, 10]);
/// First pod IP: 10.64.0.1 in [`CLUSTER_CIDR`].
const FIRST_POD_IP: u32 = u32::from_be_bytes([10, 64, 0, 1]);
/// Pod IPs handed out by changes (the top /16 of [`CLUSTER_CIDR`], never generated).
const FIRST_SPARE_POD_IP: u32 = u32::from_be_bytes([10, 127, 0, 1]);
/// How many pod IPs the generated endpoints may use (below the spare range).
pub const MAX_ENDPOINTS: u32 = FIRST_SPARE_POD_IP - FIRST_POD_IP;
/// Most Services: their NodePorts (30000 + index / 10) must stay below 65536.
pub const MAX_SERVICES: u32 = 355_000;
/// Services per namespace.
const SERVICES_PER_NAMESPACE: u32 = 100;
const TEAMS: [&str; 8] = [
    "payments", "checkout", "search", "catalog", "identity", "billing", "shipping", "media",
];
const COMPONENTS: [&str; 6] = ["api", "worker", "cache", "frontend", "db-proxy", "events"];

/// The shape of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Number of Services.
    pub services: u32,
    /// Endpoints per Service.
    pub endpoints: u32,
}

impl Shape {
    /// Checks that the addresses fit the ranges the generator uses.
    pub fn validate(self) -> Result<Self, String> {
        if self.services == 0 || self.services > MAX_SERVICES {
            return Err(format!("--services must be 1..={MAX_SERVICES}"));
        }
        let total = u64::from(self.services + 1) * u64::from(self.endpoints);
        if self.endpoints == 0 || total > u64::from(MAX_ENDPOINTS) {
            return Err(format!(
                "--services × --endpoints must stay under {MAX_ENDPOINTS} pod IPs, and --endpoints ≥ 1"
            ));
        }
        Ok(self)
    }
}

/// One generated Service (index `index`) and what its rules are named after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Position in the cluster; the ClusterIP and pod IPs derive from it.
    pub index: u32,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The port's name.
    pub port_name: &'static str,
    /// The Service port.
    pub port: u16,
    /// The endpoints' port.
    pub target_port: u16,
    /// The NodePort, for one Service in ten.
    pub node_port: Option<u16>,
}

impl ServiceSpec {
    /// The `index`th Service of any cluster.
    pub fn nth(index: u32) -> ServiceSpec {
        let namespace_index = index / SERVICES_PER_NAMESPACE;
        let team = TEAMS[namespace_index as usize % TEAMS.len()];
        let component = COMPONENTS[index as usize % COMPONENTS.len()];
        let grpc = index.is_multiple_of(3);
        ServiceSpec {
            index,
            namespace: format!("{team}-{:03}", namespace_index / TEAMS.len() as u32),
            name: format!("{component}-{index:05}"),
            port_name: if grpc { "grpc" } else { "http" },
            port: if grpc { 9090 } else { 80 },
            target_port: if grpc { 9090 } else { 8080 },
            // Below 65536 for every index under MAX_SERVICES.
            node_port: index
                .is_multiple_of(10)
                .then(|| 30000 + (index / 10) as u16),
        }
    }

    /// The ClusterIP.
    pub fn cluster_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(FIRST_CLUSTER_IP + self.index)
    }

    /// The generated endpoints' pod IPs.
    pub fn pod_ips(&self, endpoints: u32) -> Vec<Ipv4Addr> {
        let first = FIRST_POD_IP + self.index * endpoints;
        (first..first + endpoints).map(Ipv4Addr::from).collect()
    }

    /// The Service object.
    pub fn service_json(&self) -> Value {
        let mut port = json!({
            "name": self.port_name,
            "port": self.port,
            "protocol": "TCP",
            "targetPort": self.target_port,
        });
        if let Some(node_port) = self.node_port {
            port["nodePort"] = json!(node_port);
        }
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/name": self.name},
            },
            "spec": {
                "type": if self.node_port.is_some() { "NodePort" } else { "ClusterIP" },
                "clusterIP": self.cluster_ip().to_string(),
                "clusterIPs": [self.cluster_ip().to_string()],
                "ipFamilies": ["IPv4"],
                "selector": {"app.kubernetes.io/name": self.name},
                "ports": [port],
            },
        })
    }

    /// The EndpointSlice with these pod IPs, all ready.
    pub fn slice_json(&self, pod_ips: &[Ipv4Addr]) -> Value {
        let endpoints: Vec<Value> = pod_ips
            .iter()
            .map(|ip| {
                let node = u32::from(*ip) % NODES;
                json!({
                    "addresses": [ip.to_string()],
                    "conditions": {"ready": true, "serving": true, "terminating": false},
                    "nodeName": format!("node-{node}"),
                    "targetRef": {
                        "kind": "Pod",
                        "namespace": self.namespace,
                        "name": format!("{}-{:x}", self.name, u32::from(*ip)),
                    },
                })
            })
            .collect();
        json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{}-{:05x}", self.name, self.index.wrapping_mul(2_654_435_761) >> 12),
                "namespace": self.namespace,
                "labels": {
                    "kubernetes.io/service-name": self.name,
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                },
            },
            "addressType": "IPv4",
            "ports": [{"name": self.port_name, "port": self.target_port, "protocol": "TCP"}],
            "endpoints": endpoints,
        })
    }
}

/// A spare pod IP no generated endpoint has (the `n`th).
pub fn spare_pod_ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(FIRST_SPARE_POD_IP + n)
}

/// The Node object.
pub fn node_json() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "labels": {"kubernetes.io/hostname": NODE_NAME, "topology.kubernetes.io/zone": "zone-a"},
        },
        "spec": {"podCIDR": "10.64.0.0/24"},
        "status": {"addresses": [
            {"type": "InternalIP", "address": NODE_IP.to_string()},
            {"type": "Hostname", "address": NODE_NAME},
        ]},
    })
}

/// Every object of a cluster, the Node first.
pub fn objects(shape: Shape) -> impl Iterator<Item = Value> {
    std::iter::once(node_json()).chain((0..shape.services).flat_map(move |i| {
        let spec = ServiceSpec::nth(i);
        let slice = spec.slice_json(&spec.pod_ips(shape.endpoints));
        [spec.service_json(), slice]
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_distinct_and_one_in_ten_is_a_node_port() {
        let shape = Shape {
            services: 1000,
            endpoints: 10,
        };
        let specs: Vec<ServiceSpec> = (0..shape.services).map(ServiceSpec::nth).collect();
        let names: std::collections::BTreeSet<_> = specs
            .iter()
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .collect();
        assert_eq!(names.len(), 1000);
        assert_eq!(specs.iter().filter(|s| s.node_port.is_some()).count(), 100);
        assert_eq!(specs[1].cluster_ip(), Ipv4Addr::new(10, 96, 0, 11));
        assert_eq!(specs[999].pod_ips(10)[9], Ipv4Addr::new(10, 64, 39, 16));
        assert!(!specs[999].pod_ips(10).contains(&spare_pod_ip(0)));
    }

    #[test]
    fn objects_parse_as_kubernetes_manifests() {
        let shape = Shape {
            services: 3,
            endpoints: 2,
        };
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects(shape).collect::<Vec<_>>()});
        let manifest = kproxy_model::parse_manifest(&list.to_string()).expect("parses");
        assert_eq!(manifest.objects.len(), 7);
    }

    #[test]
    fn shapes_outside_the_address_ranges_are_refused() {
        let too_many = Shape {
            services: 1_000_000,
            endpoints: 10,
        };
        assert!(too_many.validate().is_err());
        let ok = Shape {
            services: 30_000,
            endpoints: 10,
        };
        assert_eq!(ok.validate(), Ok(ok));
    }
}
