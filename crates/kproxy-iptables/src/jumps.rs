//! The rules kube-proxy (and kproxy) keep in the built-in chains so that packets reach the
//! kube chains, and kproxy's localnet guard. They are not part of the restore input: the
//! runner makes sure each one is present (inserted at the top) before a full sync.

use kproxy_model::IpFamily;

/// One rule the runner keeps outside the restore input: a jump from a built-in chain to a
/// kube chain, or a rule of the localnet guard chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpRule {
    /// The table.
    pub table: &'static str,
    /// The chain holding the rule (built-in, or [`LOCALNET_GUARD_CHAIN`]).
    pub chain: &'static str,
    /// The kube chain created for it, or a verdict (`DROP`).
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

/// kproxy's chain in the raw table that drops packets for 127.0.0.0/8 arriving on any
/// interface but `lo` (CVE-2020-8558). Upstream's "block incoming localnet connections" rule
/// spares DNATed traffic, so a neighbour's packet to `127.0.0.1:<NodePort>` still reaches a
/// pod there; the raw table sees the packet before any NAT, and replies to the node's own
/// localhost NodePort connections arrive addressed to the node's IP, not 127.0.0.1.
pub const LOCALNET_GUARD_CHAIN: &str = "KPROXY-LOCALNET";

/// Whether a chain is one of netfilter's built-in chains.
pub fn is_builtin_chain(chain: &str) -> bool {
    matches!(
        chain,
        "PREROUTING" | "INPUT" | "FORWARD" | "OUTPUT" | "POSTROUTING"
    )
}

/// Whether a rule target is a verdict rather than a chain.
pub fn is_verdict(target: &str) -> bool {
    matches!(target, "ACCEPT" | "DROP" | "RETURN" | "REJECT")
}

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
        rules.push(jump(
            "raw",
            "PREROUTING",
            LOCALNET_GUARD_CHAIN,
            "",
            "kproxy localnet guard",
        ));
        rules.push(jump(
            "raw",
            LOCALNET_GUARD_CHAIN,
            "DROP",
            "! -i lo -d 127.0.0.0/8",
            "kproxy: drop packets for localhost from other interfaces (CVE-2020-8558)",
        ));
    }
    rules
}
