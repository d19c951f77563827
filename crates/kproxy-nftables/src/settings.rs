//! What the nftables proxier is configured with.

use ipnet::IpNet;
use kproxy_model::{IpFamily, NodeTopology};
use std::net::IpAddr;

/// How kproxy tells pod traffic from other traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalTrafficDetector {
    /// No detection: no ClusterIP masquerade rule, no pod short-circuit.
    None,
    /// Pods are the sources inside this CIDR (`--cluster-cidr`).
    ClusterCidr(IpNet),
    /// Pods sit behind this bridge (`--pod-bridge-interface`).
    BridgeInterface(String),
    /// Pod interfaces start with this prefix (`--pod-interface-name-prefix`).
    InterfaceNamePrefix(String),
}

/// The proxier's configuration for one IP family.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxierSettings {
    /// The family this proxier programs (`ip` or `ip6` table).
    pub family: IpFamily,
    /// The table name (`kube-proxy`).
    pub table: String,
    /// This node's name (for local endpoints and topology hints).
    pub node_name: String,
    /// This node's zone label (for topology hints).
    pub zone: Option<String>,
    /// The primary node IP (LoadBalancerSourceRanges containing it admit the LB IPs).
    pub node_ip: Option<IpAddr>,
    /// Every local address; those inside `node_port_addresses` accept NodePorts.
    pub local_addresses: Vec<IpAddr>,
    /// `--nodeport-addresses`; empty means every local address.
    pub node_port_addresses: Vec<IpNet>,
    /// Local-traffic detection.
    pub local_detector: LocalTrafficDetector,
    /// `--masquerade-all`.
    pub masquerade_all: bool,
    /// `--iptables-masquerade-bit` (the mark is `1 << bit`).
    pub masquerade_bit: u8,
    /// Service CIDRs (from ServiceCIDR objects); other-family entries are ignored.
    pub service_cidrs: Vec<IpNet>,
}

impl ProxierSettings {
    /// Defaults for a family and node: table `kube-proxy`, mark bit 14, no detector.
    pub fn new(family: IpFamily, node_name: impl Into<String>) -> ProxierSettings {
        ProxierSettings {
            family,
            table: "kube-proxy".to_string(),
            node_name: node_name.into(),
            zone: None,
            node_ip: None,
            local_addresses: Vec::new(),
            node_port_addresses: Vec::new(),
            local_detector: LocalTrafficDetector::None,
            masquerade_all: false,
            masquerade_bit: 14,
            service_cidrs: Vec::new(),
        }
    }

    /// The masquerade mark.
    pub fn masquerade_mark(&self) -> u32 {
        1u32 << u32::from(self.masquerade_bit.min(31))
    }

    /// Topology inputs for endpoint selection.
    pub fn topology(&self) -> NodeTopology {
        NodeTopology {
            node_name: self.node_name.clone(),
            zone: self.zone.clone(),
        }
    }

    /// Whether NodePorts are accepted on every local address (no usable
    /// `--nodeport-addresses` of this family, or a catch-all one).
    pub fn node_ports_on_all_addresses(&self) -> bool {
        let own: Vec<&IpNet> = self.own_family(&self.node_port_addresses).collect();
        own.is_empty() || own.iter().any(|n| n.prefix_len() == 0)
    }

    /// Local addresses of this family inside `--nodeport-addresses`, loopback excluded.
    pub fn node_port_ips(&self) -> Vec<IpAddr> {
        let nets: Vec<&IpNet> = self.own_family(&self.node_port_addresses).collect();
        let mut ips: Vec<IpAddr> = self
            .local_addresses
            .iter()
            .filter(|ip| IpFamily::of(ip) == self.family && !ip.is_loopback())
            .filter(|ip| nets.iter().any(|n| n.contains(*ip)))
            .copied()
            .collect();
        ips.sort();
        ips.dedup();
        ips
    }

    /// Service CIDRs of this family, in input order.
    pub fn own_service_cidrs(&self) -> Vec<IpNet> {
        self.own_family(&self.service_cidrs).copied().collect()
    }

    fn own_family<'a>(&'a self, nets: &'a [IpNet]) -> impl Iterator<Item = &'a IpNet> + 'a {
        nets.iter()
            .filter(move |n| IpFamily::of_net(n) == self.family)
    }
}
