//! Facts about the local Node that the modes use.

use crate::addr::parse_ip_sloppy;
use crate::selection::NodeTopology;
use k8s_openapi::api::core::v1::Node;
use std::net::IpAddr;

/// The label holding a node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// What kproxy takes from its own Node object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// The node's name.
    pub name: String,
    /// The zone label.
    pub zone: Option<String>,
    /// InternalIP addresses (then ExternalIP ones when there is no InternalIP).
    pub addresses: Vec<IpAddr>,
    /// `spec.podCIDRs` (or `spec.podCIDR`).
    pub pod_cidrs: Vec<String>,
}

impl NodeFacts {
    /// Reads the facts from a Node object.
    pub fn from_node(node: &Node) -> Self {
        let addresses_of = |kind: &str| -> Vec<IpAddr> {
            node.status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .into_iter()
                .flatten()
                .filter(|a| a.type_ == kind)
                .filter_map(|a| parse_ip_sloppy(&a.address))
                .collect()
        };
        let mut addresses = addresses_of("InternalIP");
        if addresses.is_empty() {
            addresses = addresses_of("ExternalIP");
        }
        let spec = node.spec.as_ref();
        let mut pod_cidrs: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
        if pod_cidrs.is_empty() {
            pod_cidrs.extend(spec.and_then(|s| s.pod_cidr.clone()));
        }
        NodeFacts {
            name: node.metadata.name.clone().unwrap_or_default(),
            zone: node
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(ZONE_LABEL))
                .cloned(),
            addresses,
            pod_cidrs,
        }
    }

    /// The topology facts for endpoint selection.
    pub fn topology(&self) -> NodeTopology {
        NodeTopology {
            node_name: self.name.clone(),
            zone: self.zone.clone(),
        }
    }
}
