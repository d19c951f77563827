//! What the node's kernel holds once the agent says it synced: how many Services' ClusterIP
//! dispatch entries, and where the measured Service sits among them. Parsing is pure; only
//! [`inspect`] runs a tool (through the lab, inside the node namespace).

use crate::cluster::{BenchCluster, MEASURED_CLUSTER_IP};
use crate::error::BenchError;
use kproxy_lab::{Netns, ProxyMode};
use kproxy_model::IpFamily;
use serde::Serialize;
use std::time::Duration;

/// How long dumping a large ruleset may take.
const DUMP_TIMEOUT: Duration = Duration::from_secs(120);
/// The nftables mode's map from (ClusterIP, protocol, port) to a Service's chain.
const LIST_SERVICE_IPS: [&str; 5] = ["list", "map", "ip", "kube-proxy", "service-ips"];

/// Where the measured Service's dispatch entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// The last ClusterIP rule of `KUBE-SERVICES`: every first packet walks past all others.
    LastOfWalk,
    /// A ClusterIP rule of `KUBE-SERVICES`, this many from the start (1-based).
    InWalkAt(usize),
    /// An element of the `service-ips` verdict map (one lookup, whatever the size).
    InVerdictMap,
    /// Not programmed.
    Missing,
}

/// The kernel's dispatch entries for ClusterIPs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Dispatch {
    /// Services with a ClusterIP entry.
    pub services: usize,
    /// Where the measured one is.
    pub placement: Placement,
}

/// Reads the dispatch entries of `mode` from the node's kernel.
pub fn inspect(node: &Netns, mode: ProxyMode) -> Result<Dispatch, BenchError> {
    Ok(match mode {
        ProxyMode::Nftables => {
            let listing = node.exec_with_timeout("nft", &LIST_SERVICE_IPS, DUMP_TIMEOUT)?;
            verdict_map_dispatch(&listing)
        }
        ProxyMode::IptablesNft | ProxyMode::IptablesLegacy => {
            let (program, _) = mode.dump_command(IpFamily::V4);
            walk_dispatch(&node.exec_with_timeout(program, &["-t", "nat"], DUMP_TIMEOUT)?)
        }
    })
}

/// The ClusterIP rules of `KUBE-SERVICES` in `iptables-save` text, in walk order.
pub fn walk_dispatch(save: &str) -> Dispatch {
    let comment = format!("\"{}\"", BenchCluster::measured_comment());
    let rules: Vec<&str> = save
        .lines()
        .filter(|l| l.starts_with("-A KUBE-SERVICES ") && l.contains(" cluster IP\""))
        .collect();
    let placement = match rules.iter().position(|l| l.contains(&comment)) {
        Some(index) if index + 1 == rules.len() => Placement::LastOfWalk,
        Some(index) => Placement::InWalkAt(index + 1),
        None => Placement::Missing,
    };
    Dispatch {
        services: rules.len(),
        placement,
    }
}

/// The elements of the `service-ips` map in `nft list map` text.
pub fn verdict_map_dispatch(listing: &str) -> Dispatch {
    let services = listing.matches(" : goto ").count();
    let measured = format!("{MEASURED_CLUSTER_IP} . tcp . ");
    let placement = if listing.contains(&measured) {
        Placement::InVerdictMap
    } else {
        Placement::Missing
    };
    Dispatch {
        services,
        placement,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_measured_rule_at_the_end_of_the_walk() {
        let save = "*nat\n\
            -A KUBE-SERVICES -d 10.96.0.16/32 -p tcp -m comment --comment \"bench/svc-000000:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-A\n\
            -A KUBE-SERVICES -d 10.111.255.200/32 -p tcp -m comment --comment \"zz-bench/measured:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-B\n\
            -A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n";
        assert_eq!(
            walk_dispatch(save),
            Dispatch {
                services: 2,
                placement: Placement::LastOfWalk
            }
        );
        let swapped: String = save.lines().rev().map(|l| format!("{l}\n")).collect();
        assert_eq!(walk_dispatch(&swapped).placement, Placement::InWalkAt(1));
        assert_eq!(walk_dispatch("*nat\n").placement, Placement::Missing);
    }

    #[test]
    fn counts_verdict_map_elements() {
        let listing = "table ip kube-proxy {\n\tmap service-ips {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\
            \t\telements = { 10.96.0.16 . tcp . 80 : goto service-X-bench/svc-000000/tcp/http,\n\
            \t\t\t     10.111.255.200 . tcp . 80 : goto service-Y-zz-bench/measured/tcp/http }\n\t}\n}\n";
        assert_eq!(
            verdict_map_dispatch(listing),
            Dispatch {
                services: 2,
                placement: Placement::InVerdictMap
            }
        );
    }
}
