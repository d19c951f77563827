//! Builders for the rule expressions kproxy writes. Every value reaching a rule passes
//! through here as a typed address, network, port or validated name.

use crate::nft::Family;
use ipnet::IpNet;
use std::net::IpAddr;

/// Expression builders for one family (`ip` or `ip6` matches).
#[derive(Debug, Clone, Copy)]
pub struct Expr {
    family: Family,
}

impl Expr {
    /// Builders for a family.
    pub fn new(family: Family) -> Expr {
        Expr { family }
    }

    fn ip(&self) -> &'static str {
        self.family.keyword()
    }

    /// `ip daddr <ip>`.
    pub fn daddr_is(&self, ip: &IpAddr) -> String {
        format!("{} daddr {ip}", self.ip())
    }

    /// `ip saddr <ip>`.
    pub fn saddr_is(&self, ip: &IpAddr) -> String {
        format!("{} saddr {ip}", self.ip())
    }

    /// `ip saddr <net>` / `ip saddr != <net>`.
    pub fn saddr_in_net(&self, net: &IpNet, negate: bool) -> String {
        format!(
            "{} saddr {}{net}",
            self.ip(),
            if negate { "!= " } else { "" }
        )
    }

    /// `ip saddr != { a, b } drop`.
    pub fn saddr_not_in_drop(&self, sources: &[String]) -> String {
        format!("{} saddr != {{ {} }} drop", self.ip(), sources.join(", "))
    }

    /// `ip daddr { a,b } drop`.
    pub fn daddr_in_drop(&self, nets: &[IpNet]) -> String {
        let joined: Vec<String> = nets.iter().map(IpNet::to_string).collect();
        format!("{} daddr {{ {} }} drop", self.ip(), joined.join(","))
    }

    /// `ip daddr @set`.
    pub fn daddr_in_set(&self, set: &str) -> String {
        format!("{} daddr @{set}", self.ip())
    }

    /// `ip saddr @set`.
    pub fn saddr_in_set(&self, set: &str) -> String {
        format!("{} saddr @{set}", self.ip())
    }

    /// `ip daddr . meta l4proto . th dport vmap @map`.
    pub fn service_vmap(&self, map: &str) -> String {
        format!("{} daddr . meta l4proto . th dport vmap @{map}", self.ip())
    }

    /// `meta l4proto . th dport vmap @map`.
    pub fn port_vmap(map: &str) -> String {
        format!("meta l4proto . th dport vmap @{map}")
    }

    /// `ip daddr != 127.0.0.0/8` / `ip6 daddr != ::1`.
    pub fn daddr_not_loopback(&self) -> String {
        match self.family {
            Family::Ip => "ip daddr != 127.0.0.0/8".to_string(),
            Family::Ip6 => "ip6 daddr != ::1".to_string(),
        }
    }

    /// `update @set { ip saddr }`.
    pub fn update_affinity(&self, set: &str) -> String {
        format!("update @{set} {{ {} saddr }}", self.ip())
    }
}

/// `jump <chain>`.
pub fn jump(chain: &str) -> String {
    format!("jump {chain}")
}

/// `goto <chain>`.
pub fn goto(chain: &str) -> String {
    format!("goto {chain}")
}

/// `numgen random mod N vmap { 0 : goto A , 1 : goto B }`.
pub fn numgen_vmap(chains: &[&str]) -> String {
    let branches: Vec<String> = chains
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{i} : goto {c}"))
        .collect();
    format!(
        "numgen random mod {} vmap {{ {} }}",
        chains.len(),
        branches.join(" , ")
    )
}

/// `meta l4proto <proto> dnat to <addr>`.
pub fn dnat(protocol: &str, endpoint: &str) -> String {
    format!("meta l4proto {protocol} dnat to {endpoint}")
}

/// Joins expression fragments with spaces.
pub fn concat(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}
