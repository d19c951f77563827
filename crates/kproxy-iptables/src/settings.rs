//! Node settings that shape the iptables ruleset (the proxier's configuration).

use ipnet::IpNet;
use kproxy_model::{IpFamily, NodeTopology};
use std::net::IpAddr;
use std::time::Duration;

/// Name of the nfacct counter on the INVALID-drop rule.
pub const INVALID_DROPPED_COUNTER: &str = "ct_state_invalid_dropped_pkts";
/// Name of the nfacct counter on localhost NodePort rules.
pub const LOCALHOST_NODEPORT_COUNTER: &str = "localhost_nps_accepted_pkts";
/// Above this many endpoints in total, per-endpoint comments are dropped.
pub const LARGE_CLUSTER_ENDPOINTS_THRESHOLD: usize = 1000;

/// How kproxy tells pod traffic from other traffic (`--detect-local-mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalDetector {
    /// No detection: off-cluster traffic to ClusterIPs is not masqueraded.
    None,
    /// Pod traffic is traffic from these CIDRs (ClusterCIDR or NodeCIDR mode).
    Cidrs(Vec<IpNet>),
    /// Pod traffic arrives on interfaces with this name pattern (`cni+`, `br+`).
    Interface(String),
}

impl LocalDetector {
    /// Whether the detector can tell pod traffic apart at all.
    pub fn is_implemented(&self) -> bool {
        !matches!(self, LocalDetector::None)
    }

    /// Match arguments for "from a local pod".
    pub fn if_local(&self) -> String {
        match self {
            LocalDetector::None => String::new(),
            LocalDetector::Cidrs(cidrs) => cidrs
                .iter()
                .map(|c| format!("-s {c}"))
                .collect::<Vec<_>>()
                .join(" "),
            LocalDetector::Interface(name) => format!("-i {name}"),
        }
    }

    /// Match arguments for "not from a local pod".
    pub fn if_not_local(&self) -> String {
        match self {
            LocalDetector::None => String::new(),
            LocalDetector::Cidrs(cidrs) => cidrs
                .iter()
                .map(|c| format!("! -s {c}"))
                .collect::<Vec<_>>()
                .join(" "),
            LocalDetector::Interface(name) => format!("! -i {name}"),
        }
    }
}

/// Everything about the node that the iptables ruleset depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct IptablesSettings {
    /// The family this ruleset is for.
    pub family: IpFamily,
    /// Node name and zone, for endpoint selection.
    pub topology: NodeTopology,
    /// The node's primary IP (LB source ranges that contain it let the node reach its LBs).
    pub node_ip: Option<IpAddr>,
    /// Pod-traffic detection.
    pub local_detector: LocalDetector,
    /// Masquerade all traffic to ClusterIPs.
    pub masquerade_all: bool,
    /// The masquerade mark, e.g. `0x4000`.
    pub masquerade_mark: String,
    /// Node IPs that accept NodePorts; `None` means every local address.
    pub node_port_ips: Option<Vec<IpAddr>>,
    /// Accept NodePorts on 127.0.0.0/8 (IPv4 only).
    pub localhost_node_ports: bool,
    /// Conntrack is liberal about TCP windows: no INVALID drop rule needed.
    pub conntrack_tcp_liberal: bool,
    /// nfacct counters that exist in the kernel (added to rules that count).
    pub nfacct_counters: Vec<String>,
    /// iptables supports `MASQUERADE --random-fully`.
    pub random_fully: bool,
    /// Period of the stale-chain cleanup in large clusters.
    pub sync_period: Duration,
    /// A full sync is forced at least this often.
    pub full_sync_period: Duration,
    /// On partial syncs, change only the dispatch and filter rules of changed services
    /// (`-D`/`-I`) instead of rewriting those chains whole. The kernel ends up with the
    /// same rules; the restore input is no longer upstream's. The agent turns this on;
    /// conformance runs without it.
    pub incremental_dispatch: bool,
    /// On full syncs, send the per-service chains in restores of at most this many
    /// service ports ahead of the main restore (see `SyncPlan::chunks`). iptables-nft's
    /// `--noflush` restore costs the square of its size, so one 10,000-service restore
    /// never finishes while eighty of 125 take seconds. `None` keeps one restore.
    pub max_services_per_restore: Option<usize>,
}

impl IptablesSettings {
    /// kube-proxy's defaults for a node, IPv4 or IPv6.
    pub fn new(family: IpFamily, node_name: &str) -> Self {
        IptablesSettings {
            family,
            topology: NodeTopology {
                node_name: node_name.to_string(),
                zone: None,
            },
            node_ip: None,
            local_detector: LocalDetector::None,
            masquerade_all: false,
            masquerade_mark: mark_for_bit(14),
            node_port_ips: None,
            localhost_node_ports: true,
            conntrack_tcp_liberal: false,
            nfacct_counters: Vec::new(),
            random_fully: false,
            sync_period: Duration::from_secs(30),
            full_sync_period: Duration::from_secs(3600),
            incremental_dispatch: false,
            max_services_per_restore: None,
        }
    }

    /// Whether an nfacct counter exists.
    pub fn has_counter(&self, name: &str) -> bool {
        self.nfacct_counters.iter().any(|c| c == name)
    }
}

/// The mark for `--iptables-masquerade-bit`: `1 << bit` in hex (`0x4000` for 14).
pub fn mark_for_bit(bit: u32) -> String {
    format!("{:#x}", 1u64 << bit.min(31))
}
