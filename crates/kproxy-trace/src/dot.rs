//! One service's chains as a Graphviz graph.

use crate::matches::{Direction, Match, RecentAction};
use crate::ruleset::{Rule, Ruleset, TableKind};
use crate::targets::Target;
use std::collections::{BTreeSet, VecDeque};
use std::fmt::Write;

/// Prefixes of the per-service chains kube-proxy writes.
const SERVICE_CHAINS: &[&str] = &[
    "KUBE-SVC-",
    "KUBE-SVL-",
    "KUBE-EXT-",
    "KUBE-FW-",
    "KUBE-SEP-",
];
/// Dispatch chains whose rules carry the service's comment.
const NAT_ENTRIES: &[&str] = &["KUBE-SERVICES", "KUBE-NODEPORTS"];
const FILTER_ENTRIES: &[&str] = &[
    "KUBE-SERVICES",
    "KUBE-EXTERNAL-SERVICES",
    "KUBE-NODEPORTS",
    "KUBE-PROXY-FIREWALL",
];

/// Renders the chains of a service as a Graphviz `digraph`. `service` is
/// `NAMESPACE/NAME` (all ports) or `NAMESPACE/NAME:PORTNAME`. The graph starts at the
/// `KUBE-SERVICES`/`KUBE-NODEPORTS` rules whose comment names the service, follows jumps
/// into its `KUBE-SVC/SVL/EXT/FW/SEP` chains, and ends at DNAT destinations; filter
/// rules for the service (REJECT, DROP, ACCEPT) are shown too.
pub fn service_graph_dot(ruleset: &Ruleset, service: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", quote(service));
    out.push_str("  rankdir=LR;\n  node [shape=box, fontname=monospace];\n");
    let mut queue = VecDeque::new();
    let mut seen = BTreeSet::new();
    for (table, entries) in [
        (TableKind::Nat, NAT_ENTRIES),
        (TableKind::Filter, FILTER_ENTRIES),
    ] {
        for &chain in entries {
            let Some(c) = ruleset.chain(table, chain) else {
                continue;
            };
            let from = format!("{table} {chain}");
            for rule in c.rules.iter().filter(|r| names_service(r, service)) {
                edge(&mut out, &from, rule, &mut queue);
            }
        }
    }
    while let Some(chain) = queue.pop_front() {
        if !seen.insert(chain.clone()) {
            continue;
        }
        if let Some(c) = ruleset.chain(TableKind::Nat, &chain) {
            for rule in &c.rules {
                edge(&mut out, &chain, rule, &mut queue);
            }
        }
    }
    out.push_str("}\n");
    out
}

/// Whether the rule's comment names the service: upstream comments start with
/// `NS/NAME:PORT` (or `NS/NAME` for an unnamed port) followed by a space or the end.
fn names_service(rule: &Rule, service: &str) -> bool {
    let Some(comment) = rule.comment() else {
        return false;
    };
    let name = comment.split(' ').next().unwrap_or_default();
    name == service || (!service.contains(':') && name.starts_with(&format!("{service}:")))
}

fn edge(out: &mut String, from: &str, rule: &Rule, queue: &mut VecDeque<String>) {
    let label = summarize(rule);
    let to = match &rule.target {
        Target::Jump(name) | Target::Goto(name) => {
            if SERVICE_CHAINS.iter().any(|p| name.starts_with(p)) {
                queue.push_back(name.to_string());
            }
            name.to_string()
        }
        Target::Dnat { to } => {
            let _ = writeln!(out, "  {} [shape=ellipse, style=filled];", quote(to));
            to.to_string()
        }
        Target::Accept => "ACCEPT".to_string(),
        Target::Drop => "DROP".to_string(),
        Target::Reject { .. } => "REJECT".to_string(),
        Target::None => return,
        other => format!("{other:?}"),
    };
    if label.is_empty() {
        let _ = writeln!(out, "  {} -> {};", quote(from), quote(&to));
    } else {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}];",
            quote(from),
            quote(&to),
            quote(&label)
        );
    }
}

/// A short text of the conditions that decide which way a packet goes.
fn summarize(rule: &Rule) -> String {
    let mut parts = Vec::new();
    for m in rule.matches() {
        let not = |negated: bool| if negated { "! " } else { "" };
        let part = match m {
            Match::Source { negated, net } => format!("{}-s {net}", not(*negated)),
            Match::Destination { negated, net } => format!("{}-d {net}", not(*negated)),
            Match::Port {
                negated,
                direction: Direction::Destination,
                range,
            } if range.from == range.to => format!("{}dport {}", not(*negated), range.from),
            Match::AddrType {
                negated, direction, ..
            } => format!(
                "{}{}-type LOCAL",
                not(*negated),
                if *direction == Direction::Source {
                    "src"
                } else {
                    "dst"
                }
            ),
            Match::Statistic { probability, .. } => format!("p={probability:.4}"),
            Match::Recent {
                action: RecentAction::Check,
                ..
            } => "affinity".to_string(),
            _ => continue,
        };
        parts.push(part);
    }
    parts.join(" ")
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_follows_the_service_chains_only() {
        let rules = Ruleset::parse(concat!(
            "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-A - [0:0]\n:KUBE-SEP-A1 - [0:0]\n:KUBE-SVC-B - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n",
            "-A KUBE-SERVICES -m comment --comment \"ns/a:p80 cluster IP\" -d 172.30.0.1 -p tcp -m tcp --dport 80 -j KUBE-SVC-A\n",
            "-A KUBE-SERVICES -m comment --comment \"ns/b:p80 cluster IP\" -d 172.30.0.2 -p tcp -m tcp --dport 80 -j KUBE-SVC-B\n",
            "-A KUBE-SVC-A ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ\n",
            "-A KUBE-SVC-A -j KUBE-SEP-A1\n",
            "-A KUBE-SEP-A1 -p tcp -m tcp -j DNAT --to-destination 10.1.0.1:80\n",
            "COMMIT\n"
        ))
        .unwrap();
        let dot = service_graph_dot(&rules, "ns/a");
        assert!(dot.contains(
            "\"nat KUBE-SERVICES\" -> \"KUBE-SVC-A\" [label=\"-d 172.30.0.1 dport 80\"]"
        ));
        assert!(dot.contains("\"KUBE-SEP-A1\" -> \"10.1.0.1:80\""));
        assert!(dot.contains("\"KUBE-SVC-A\" -> \"KUBE-MARK-MASQ\" [label=\"! -s 10.0.0.0/8\"]"));
        assert!(!dot.contains("KUBE-SVC-B"));
        let body = |d: &str| d.lines().skip(1).collect::<Vec<_>>().join("\n");
        assert_eq!(body(&dot), body(&service_graph_dot(&rules, "ns/a:p80")));
    }
}
