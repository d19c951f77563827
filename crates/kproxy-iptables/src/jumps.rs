//! The rules kube-proxy (and kproxy) keep in the built-in chains so that packets reach the
//! kube chains. They are not part of the restore input: the runner makes sure each one is
//! present (inserted at the top) before a full sync.

use kproxy_model::IpFamily;

/// One rule in a built-in chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpRule {
    /// The table.
    pub table: &'static str,
    /// The built-in chain.
    pub chain: &'static str,
    /// The kube chain created for it.
    pub target: &'static str,
    /// The match arguments, without `-A CHAIN` and `-j TARGET`.
    pub matches: String,
}

impl JumpRule {
    /// The rule in restore syntax (`-A CHAIN … -j TARGET`).
    pub fn rule_text(&self) -> String {
        format!("-A {} {} -j {}", self.chain, self.matches, self.target)
    }
}

const NEW: &str = "-m conntrack --ctstate NEW";

fn jump(
    table: &'static str,
    chain: &'static str,
    target: &'static str,
    matches: &str,
    comment: &str,
) -> JumpRule {
    let matches = if comment.is_empty() {
        matches.to_string()
    } else if matches.is_empty() {
        format!("-m comment --comment \"{comment}\"")
    } else {
        format!("{matches} -m comment --comment \"{comment}\"")
    };
    JumpRule {
        table,
        chain,
        target,
        matches,
    }
}

/// The jump rules, in the order they should appear at the top of each chain.
pub fn jump_rules(family: IpFamily, localhost_node_ports: bool) -> Vec<JumpRule> {
    let portals = "kubernetes service portals";
    let external = "kubernetes externally-visible service portals";
    let firewall = "kubernetes load balancer firewall";
    let mut rules = vec![
        jump("filter", "INPUT", "KUBE-PROXY-FIREWALL", NEW, firewall),
        jump(
            "filter",
            "INPUT",
            "KUBE-NODEPORTS",
            "",
            "kubernetes health check service ports",
        ),
        jump("filter", "INPUT", "KUBE-EXTERNAL-SERVICES", NEW, external),
        jump("filter", "FORWARD", "KUBE-PROXY-FIREWALL", NEW, firewall),
        jump(
            "filter",
            "FORWARD",
            "KUBE-FORWARD",
            "",
            "kubernetes forwarding rules",
        ),
        jump("filter", "FORWARD", "KUBE-SERVICES", NEW, portals),
        jump("filter", "FORWARD", "KUBE-EXTERNAL-SERVICES", NEW, external),
        jump("filter", "OUTPUT", "KUBE-PROXY-FIREWALL", NEW, firewall),
        jump("filter", "OUTPUT", "KUBE-SERVICES", NEW, portals),
        jump("nat", "PREROUTING", "KUBE-SERVICES", "", portals),
        jump("nat", "OUTPUT", "KUBE-SERVICES", "", portals),
        jump(
            "nat",
            "POSTROUTING",
            "KUBE-POSTROUTING",
            "",
            "kubernetes postrouting rules",
        ),
    ];
    if family == IpFamily::V4 && localhost_node_ports {
        rules.insert(0, jump("filter", "INPUT", "KUBE-FIREWALL", "", ""));
        rules.insert(8, jump("filter", "OUTPUT", "KUBE-FIREWALL", "", ""));
    }
    rules
}
