//! kube-proxy's jumps from the built-in chains into its own chains.
//!
//! kube-proxy writes those jumps with separate `iptables` calls, so the text it feeds to
//! `iptables-restore` (and upstream's `expected.iptables`) lacks them. When a table has a
//! `KUBE-SERVICES` chain but no built-in rule jumps to it, the tracer adds them.

use crate::rule::parse_rule;
use crate::ruleset::{Rule, Ruleset, TableKind};
use crate::targets::Target;
use crate::text::TextSource;
use crate::tokenizer::tokenize_into;
use std::collections::HashMap;
use std::sync::Arc;

/// One jump kube-proxy installs: built-in chain, rule text without `-A CHAIN`, target chain.
type Jump = (&'static str, &'static str, &'static str);

const NAT_JUMPS: &[Jump] = &[
    (
        "PREROUTING",
        r#"-m comment --comment "kubernetes service portals" -j KUBE-SERVICES"#,
        "KUBE-SERVICES",
    ),
    (
        "OUTPUT",
        r#"-m comment --comment "kubernetes service portals" -j KUBE-SERVICES"#,
        "KUBE-SERVICES",
    ),
    (
        "POSTROUTING",
        r#"-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING"#,
        "KUBE-POSTROUTING",
    ),
];

const FILTER_JUMPS: &[Jump] = &[
    (
        "INPUT",
        "-m conntrack --ctstate NEW -j KUBE-PROXY-FIREWALL",
        "KUBE-PROXY-FIREWALL",
    ),
    ("INPUT", "-j KUBE-NODEPORTS", "KUBE-NODEPORTS"),
    (
        "INPUT",
        "-m conntrack --ctstate NEW -j KUBE-EXTERNAL-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
    ),
    ("INPUT", "-j KUBE-FIREWALL", "KUBE-FIREWALL"),
    (
        "FORWARD",
        "-m conntrack --ctstate NEW -j KUBE-PROXY-FIREWALL",
        "KUBE-PROXY-FIREWALL",
    ),
    ("FORWARD", "-j KUBE-FORWARD", "KUBE-FORWARD"),
    (
        "FORWARD",
        "-m conntrack --ctstate NEW -j KUBE-SERVICES",
        "KUBE-SERVICES",
    ),
    (
        "FORWARD",
        "-m conntrack --ctstate NEW -j KUBE-EXTERNAL-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
    ),
    (
        "OUTPUT",
        "-m conntrack --ctstate NEW -j KUBE-PROXY-FIREWALL",
        "KUBE-PROXY-FIREWALL",
    ),
    (
        "OUTPUT",
        "-m conntrack --ctstate NEW -j KUBE-SERVICES",
        "KUBE-SERVICES",
    ),
    ("OUTPUT", "-j KUBE-FIREWALL", "KUBE-FIREWALL"),
];

const BUILTIN: &[&str] = &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// Rules the tracer runs before a built-in chain's own rules.
#[derive(Debug, Default)]
pub(crate) struct AddedJumps {
    rules: HashMap<(TableKind, &'static str), Vec<Rule>>,
    /// One line per table that got jumps, for the trace's notes.
    pub notes: Vec<String>,
}

impl AddedJumps {
    /// The added rules for a built-in chain (empty if none).
    pub fn for_chain(&self, table: TableKind, chain: &str) -> &[Rule] {
        BUILTIN
            .iter()
            .find(|&&b| b == chain)
            .and_then(|b| self.rules.get(&(table, *b)))
            .map_or(&[], Vec::as_slice)
    }
}

/// Works out which of kube-proxy's jumps the ruleset lacks.
pub(crate) fn kube_proxy_jumps(ruleset: &Ruleset) -> AddedJumps {
    let mut added = AddedJumps::default();
    for (table, jumps) in [
        (TableKind::Nat, NAT_JUMPS),
        (TableKind::Filter, FILTER_JUMPS),
    ] {
        if !needs_jumps(ruleset, table) {
            continue;
        }
        let mut count = 0;
        for (chain, args, target) in jumps {
            if ruleset.chain(table, target).is_none() {
                continue;
            }
            if let Some(rule) = jump_rule(chain, args) {
                added.rules.entry((table, chain)).or_default().push(rule);
                count += 1;
            }
        }
        added.notes.push(format!(
            "{table} table has KUBE-SERVICES but no built-in chain jumps to it: \
             added kube-proxy's {count} standard jump rules"
        ));
    }
    added
}

fn needs_jumps(ruleset: &Ruleset, table: TableKind) -> bool {
    let Some(t) = ruleset.table(table) else {
        return false;
    };
    t.chain("KUBE-SERVICES").is_some()
        && !BUILTIN.iter().filter_map(|b| t.chain(b)).any(|chain| {
            chain.rules.iter().any(
            |r| matches!(&r.target, Target::Jump(n) | Target::Goto(n) if &**n == "KUBE-SERVICES"),
        )
        })
}

fn jump_rule(chain: &str, args: &str) -> Option<Rule> {
    let text = format!("-A {chain} {args}");
    let source = TextSource::new(Arc::new(text.clone()));
    let mut words = Vec::new();
    tokenize_into(args, &mut words).ok()?;
    let (matches, target) = parse_rule(&words, &source, &mut Vec::new()).ok()?;
    Some(Rule::new(0, source.text(&text), matches, target))
}
