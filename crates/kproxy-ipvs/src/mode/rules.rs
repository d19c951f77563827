//! The ipvs mode's `iptables-restore` text: a fixed set of chains whose rules match
//! ipsets, so the ruleset stays small however many services there are. Pure.

use std::collections::BTreeSet;
use std::fmt::Write;

use kproxy_iptables::rule::push_quoted;
use kproxy_iptables::JumpRule;

use crate::ipset::KubeSet;
use crate::types::ServiceKey;

use super::sets::{set_name, SetEntries};
use super::settings::IpvsSettings;

/// nat chains the mode owns, declared (and so flushed) by every restore.
pub const NAT_CHAINS: [&str; 5] = [
    "KUBE-SERVICES",
    "KUBE-POSTROUTING",
    "KUBE-NODE-PORT",
    "KUBE-LOAD-BALANCER",
    "KUBE-MARK-MASQ",
];

/// filter chains the mode owns, declared (and so flushed) by every restore.
pub const FILTER_CHAINS: [&str; 6] = [
    "KUBE-FORWARD",
    "KUBE-NODE-PORT",
    "KUBE-PROXY-FIREWALL",
    "KUBE-SOURCE-RANGES-FIREWALL",
    "KUBE-IPVS-FILTER",
    "KUBE-IPVS-OUT-FILTER",
];

/// The rules in built-in chains that lead into the mode's chains, in the order they are
/// inserted at the top of their chain when missing.
pub fn jump_rules() -> Vec<JumpRule> {
    let jump = |table, chain, target, comment: &str| {
        let mut matches = String::from("-m comment --comment ");
        push_quoted(&mut matches, comment);
        JumpRule {
            table,
            chain,
            target,
            matches,
        }
    };
    let portals = "kubernetes service portals";
    let firewall = "kube-proxy firewall rules";
    let filter = "kubernetes ipvs access filter";
    vec![
        jump("nat", "OUTPUT", "KUBE-SERVICES", portals),
        jump("nat", "PREROUTING", "KUBE-SERVICES", portals),
        jump(
            "nat",
            "POSTROUTING",
            "KUBE-POSTROUTING",
            "kubernetes postrouting rules",
        ),
        jump(
            "filter",
            "FORWARD",
            "KUBE-FORWARD",
            "kubernetes forwarding rules",
        ),
        jump(
            "filter",
            "INPUT",
            "KUBE-NODE-PORT",
            "kubernetes health check rules",
        ),
        jump("filter", "INPUT", "KUBE-PROXY-FIREWALL", firewall),
        jump("filter", "FORWARD", "KUBE-PROXY-FIREWALL", firewall),
        jump("filter", "INPUT", "KUBE-IPVS-FILTER", filter),
        jump("filter", "OUTPUT", "KUBE-IPVS-OUT-FILTER", filter),
    ]
}

/// The chain declaration lines of a table (`:CHAIN - [0:0]`).
pub fn chain_declarations(chains: &[&str]) -> String {
    chains.iter().map(|c| format!(":{c} - [0:0]\n")).collect()
}

/// Restore text that flushes and deletes the mode's chains (jump rules into them must be
/// gone first).
pub fn render_cleanup() -> String {
    let mut out = String::new();
    for (table, chains) in [("nat", &NAT_CHAINS[..]), ("filter", &FILTER_CHAINS[..])] {
        out.push_str(&format!("*{table}\n"));
        out.push_str(&chain_declarations(chains));
        for chain in chains {
            out.push_str(&format!("-X {chain}\n"));
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// Writes rules into one table's text.
struct RuleWriter<'a> {
    out: String,
    settings: &'a IpvsSettings,
    sets: &'a SetEntries,
}

impl RuleWriter<'_> {
    fn line(&mut self, text: &str) {
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// `-A CHAIN [prefix] -m comment --comment "…" -m set --match-set SET MATCH [suffix] -j TARGET`
    /// when `set` has entries.
    fn set_rule(&mut self, chain: &str, prefix: &str, set: KubeSet, flags: &str, target: &str) {
        if !self.sets.has(set) {
            return;
        }
        let mut line = format!("-A {chain} ");
        if !prefix.is_empty() {
            line.push_str(prefix);
            line.push(' ');
        }
        line.push_str("-m comment --comment ");
        push_quoted(&mut line, set.comment());
        let _ = write!(
            line,
            " -m set --match-set {} {flags} -j {target}",
            set_name(self.settings, set)
        );
        self.line(&line);
    }

    /// A rule without a comment matching `set` (written whether or not it has entries).
    fn bare_set_rule(&mut self, chain: &str, set: KubeSet, flags: &str, target: &str) {
        let name = set_name(self.settings, set);
        self.line(&format!(
            "-A {chain} -m set --match-set {name} {flags} -j {target}"
        ));
    }
}

/// The nat and filter tables for one sync.
pub fn render_rules(
    settings: &IpvsSettings,
    sets: &SetEntries,
    node_blocked_lbs: &BTreeSet<ServiceKey>,
) -> String {
    let mut w = RuleWriter {
        out: String::new(),
        settings,
        sets,
    };
    w.line("*nat");
    w.out.push_str(&chain_declarations(&NAT_CHAINS));
    nat_rules(&mut w);
    w.line("COMMIT");
    w.line("*filter");
    w.out.push_str(&chain_declarations(&FILTER_CHAINS));
    filter_rules(&mut w, node_blocked_lbs);
    w.line("COMMIT");
    w.out
}

fn nat_rules(w: &mut RuleWriter<'_>) {
    let s = w.settings;
    w.line(&format!(
        "-A KUBE-SERVICES -s {} -j RETURN",
        s.loopback_cidr()
    ));
    let masq = "KUBE-MARK-MASQ";
    w.set_rule(
        "KUBE-POSTROUTING",
        "",
        KubeSet::LoopBack,
        "dst,dst,src",
        "MASQUERADE",
    );
    w.set_rule(
        "KUBE-SERVICES",
        "",
        KubeSet::LoadBalancer,
        "dst,dst",
        "KUBE-LOAD-BALANCER",
    );
    w.set_rule(
        "KUBE-LOAD-BALANCER",
        "",
        KubeSet::LoadBalancerLocal,
        "dst,dst",
        "RETURN",
    );
    let node_ports = [
        (
            "-p tcp",
            KubeSet::NodePortLocalTcp,
            KubeSet::NodePortTcp,
            "dst",
        ),
        (
            "-p udp",
            KubeSet::NodePortLocalUdp,
            KubeSet::NodePortUdp,
            "dst",
        ),
        (
            "-p sctp",
            KubeSet::NodePortLocalSctp,
            KubeSet::NodePortSctp,
            "dst,dst",
        ),
    ];
    for (proto, local, all, flags) in node_ports {
        w.set_rule("KUBE-NODE-PORT", proto, local, flags, "RETURN");
        w.set_rule("KUBE-NODE-PORT", proto, all, flags, masq);
    }
    let cluster_match = if s.masquerade_all {
        "dst,dst".to_string()
    } else if s.local_detector.is_implemented() {
        format!("dst,dst {}", s.local_detector.if_not_local())
    } else {
        "src,dst".to_string()
    };
    w.set_rule(
        "KUBE-SERVICES",
        "",
        KubeSet::ClusterIp,
        &cluster_match,
        masq,
    );
    w.set_rule("KUBE-SERVICES", "", KubeSet::ExternalIp, "dst,dst", masq);
    for set in [KubeSet::ExternalIp, KubeSet::ExternalIpLocal] {
        let bridged = "dst,dst -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL";
        w.set_rule("KUBE-SERVICES", "", set, bridged, "ACCEPT");
        w.set_rule(
            "KUBE-SERVICES",
            "",
            set,
            "dst,dst -m addrtype --dst-type LOCAL",
            "ACCEPT",
        );
    }
    w.line("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT");
    w.line("-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ");
    for set in [KubeSet::ClusterIp, KubeSet::LoadBalancer] {
        if w.sets.has(set) {
            w.bare_set_rule("KUBE-SERVICES", set, "dst,dst", "ACCEPT");
        }
    }
    let mark = s.masquerade_mark.clone();
    w.line(&format!(
        "-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN"
    ));
    w.line(&format!("-A KUBE-POSTROUTING -j MARK --xor-mark {mark}"));
    let random = if s.random_fully {
        " --random-fully"
    } else {
        ""
    };
    w.line(&format!(
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE{random}"
    ));
    w.line(&format!("-A KUBE-MARK-MASQ -j MARK --or-mark {mark}"));
}

fn filter_rules(w: &mut RuleWriter<'_>, node_blocked_lbs: &BTreeSet<ServiceKey>) {
    let ranges = "KUBE-SOURCE-RANGES-FIREWALL";
    w.set_rule(
        "KUBE-PROXY-FIREWALL",
        "",
        KubeSet::LoadBalancerFw,
        "dst,dst",
        ranges,
    );
    w.set_rule(
        ranges,
        "",
        KubeSet::LoadBalancerSourceCidr,
        "dst,dst,src",
        "RETURN",
    );
    w.set_rule(
        ranges,
        "",
        KubeSet::LoadBalancerSourceIp,
        "dst,dst,src",
        "RETURN",
    );
    w.line("-A KUBE-SOURCE-RANGES-FIREWALL -j DROP");
    for key in node_blocked_lbs {
        w.line(&format!(
            "-A KUBE-IPVS-OUT-FILTER -s {addr} -m ipvs --vaddr {addr} --vproto {proto} --vport {port} -j DROP",
            addr = key.addr,
            proto = key.protocol.as_str(),
            port = key.port
        ));
    }
    let mark = w.settings.masquerade_mark.clone();
    w.line(&format!(
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark}/{mark} -j ACCEPT"
    ));
    w.line("-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT");
    let health = set_name(w.settings, KubeSet::HealthCheckNodePort);
    w.line(&format!(
        "-A KUBE-NODE-PORT -m comment --comment \"Kubernetes health check node port\" -m set --match-set {health} dst -j ACCEPT"
    ));
    for set in [
        KubeSet::LoadBalancer,
        KubeSet::ClusterIp,
        KubeSet::ExternalIp,
        KubeSet::ExternalIpLocal,
    ] {
        w.bare_set_rule("KUBE-IPVS-FILTER", set, "dst,dst", "RETURN");
    }
    w.bare_set_rule(
        "KUBE-IPVS-FILTER",
        KubeSet::HealthCheckNodePort,
        "dst",
        "RETURN",
    );
    let vips = set_name(w.settings, KubeSet::IpvsIps);
    w.line(&format!(
        "-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set {vips} dst -j REJECT"
    ));
}
