//! Facts about the local Node that the modes use.

use crate::addr::parse_ip_sloppy;
use crate::selection::NodeTopology;
use crate::slim::SlimNode;
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
    pub fn from_node(node: &SlimNode) -> Self {
        let addresses_of = |kind: &str| -> Vec<IpAddr> {
            node.addresses
                .iter()
                .filter(|a| a.type_ == kind)
                .filter_map(|a| parse_ip_sloppy(&a.address))
                .collect()
        };
        let mut addresses = addresses_of("InternalIP");
        if addresses.is_empty() {
            addresses = addresses_of("ExternalIP");
        }
        let mut pod_cidrs = node.spec.pod_cidrs.clone();
        if pod_cidrs.is_empty() {
            pod_cidrs.extend(node.spec.pod_cidr.clone());
        }
        NodeFacts {
            name: node.metadata.name.clone(),
            zone: node.metadata.labels.get(ZONE_LABEL).cloned(),
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
