//! Node settings that shape the ipvs mode's desired state (the proxier's configuration).

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use kproxy_iptables::{mark_for_bit, LocalDetector};
use kproxy_model::{IpFamily, NodeTopology};

use crate::ipset::Family;
use crate::types::{SchedFlags, Scheduler};

/// How often real servers that are draining are looked at again (upstream: every minute).
pub const DRAIN_CHECK_PERIOD: Duration = Duration::from_secs(60);

/// Everything about the node that the ipvs mode's state depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct IpvsSettings {
    /// The family this proxier programs; objects of the other family are ignored.
    pub family: IpFamily,
    /// Node name and zone, for endpoint selection.
    pub topology: NodeTopology,
    /// `--ipvs-scheduler` (`rr` when unset).
    pub scheduler: Scheduler,
    /// The node's primary IP: LB source ranges that contain it let the node reach its LBs.
    pub node_ip: Option<IpAddr>,
    /// Pod-traffic detection (`--detect-local-mode`).
    pub local_detector: LocalDetector,
    /// `--masquerade-all`.
    pub masquerade_all: bool,
    /// The masquerade mark, e.g. `0x4000`.
    pub masquerade_mark: String,
    /// `--nodeport-addresses`; empty (or a match-all CIDR) means every node address.
    pub node_port_addresses: Vec<IpNet>,
    /// `--ipvs-exclude-cidrs`: virtual servers inside them are never deleted.
    pub exclude_cidrs: Vec<IpNet>,
    /// iptables supports `MASQUERADE --random-fully`.
    pub random_fully: bool,
    /// `--ipvs-strict-arp` (applied as sysctls at start-up).
    pub strict_arp: bool,
    /// IPv6 sets are named `KUBE-6-…` (production); upstream's test fake does not prefix.
    pub prefixed_ipv6_set_names: bool,
    /// A draining TCP real server is deleted after this long even with connections left.
    pub drain_timeout: Duration,
}

impl IpvsSettings {
    /// kube-proxy's defaults for a node, IPv4 or IPv6.
    pub fn new(family: IpFamily, node_name: &str) -> Self {
        IpvsSettings {
            family,
            topology: NodeTopology {
                node_name: node_name.to_string(),
                zone: None,
            },
            scheduler: Scheduler::RoundRobin,
            node_ip: None,
            local_detector: LocalDetector::None,
            masquerade_all: false,
            masquerade_mark: mark_for_bit(14),
            node_port_addresses: Vec::new(),
            exclude_cidrs: Vec::new(),
            random_fully: false,
            strict_arp: false,
            prefixed_ipv6_set_names: true,
            drain_timeout: Duration::from_secs(900),
        }
    }

    /// The scheduler from `--ipvs-scheduler`; empty means `rr`.
    pub fn scheduler_from_flag(flag: &str) -> Scheduler {
        if flag.is_empty() {
            Scheduler::RoundRobin
        } else {
            Scheduler::from_name(flag)
        }
    }

    /// Scheduler flags every virtual server gets: `mh` hashes the source port too.
    pub fn sched_flags(&self) -> SchedFlags {
        SchedFlags {
            fallback: false,
            port: self.scheduler == Scheduler::MaglevHashing,
        }
    }

    /// The ipset family of this proxier.
    pub fn set_family(&self) -> Family {
        match self.family {
            IpFamily::V4 => Family::Inet,
            IpFamily::V6 => Family::Inet6,
        }
    }

    /// The loopback network of this family (`127.0.0.0/8`, `::1/128`).
    pub fn loopback_cidr(&self) -> &'static str {
        match self.family {
            IpFamily::V4 => "127.0.0.0/8",
            IpFamily::V6 => "::1/128",
        }
    }

    /// Whether a virtual server address must be kept although no service wants it.
    pub fn keeps_unlisted(&self, addr: &IpAddr) -> bool {
        IpFamily::of(addr) != self.family || self.exclude_cidrs.iter().any(|c| c.contains(addr))
    }
}
