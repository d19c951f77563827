//! The parsed ruleset: tables of chains of rules, indexed by chain name.

use crate::matches::Match;
use crate::targets::Target;
use crate::text::Text;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

/// An iptables table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    /// `raw`: before connection tracking.
    Raw,
    /// `mangle`: packet alteration.
    Mangle,
    /// `nat`: consulted for the first packet of a connection only.
    Nat,
    /// `filter`: the verdict table.
    Filter,
    /// `security`: SELinux marks; parsed but not simulated.
    Security,
}

impl TableKind {
    /// Every table, in the order `iptables-save` prints them does not matter; this is a fixed order.
    pub const ALL: [TableKind; 5] = [
        TableKind::Raw,
        TableKind::Mangle,
        TableKind::Nat,
        TableKind::Filter,
        TableKind::Security,
    ];

    /// The table's name as written after `*`.
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Raw => "raw",
            TableKind::Mangle => "mangle",
            TableKind::Nat => "nat",
            TableKind::Filter => "filter",
            TableKind::Security => "security",
        }
    }

    /// Looks a table up by name.
    pub fn from_name(name: &str) -> Option<TableKind> {
        TableKind::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for TableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The default verdict of a built-in chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Policy {
    /// `ACCEPT`
    Accept,
    /// `DROP`
    Drop,
}

/// The conditions of one rule while it is parsed: a scratch list reused from rule to
/// rule, copied into an exact-size slice when the rule is stored.
pub(crate) type Matches = Vec<Match>;

/// One rule: where it came from, what it matches and what it does.
#[derive(Clone)]
pub struct Rule {
    /// 1-based line number in the parsed text (0 for rules the tracer adds itself).
    pub line: usize,
    text: Text,
    matches: Box<[Match]>,
    /// What happens when every match holds.
    pub target: Target,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("line", &self.line)
            .field("text", &self.text())
            .field("matches", &self.matches)
            .field("target", &self.target)
            .finish()
    }
}

impl PartialEq for Rule {
    fn eq(&self, other: &Rule) -> bool {
        self.line == other.line
            && self.text() == other.text()
            && self.matches == other.matches
            && self.target == other.target
    }
}

impl Rule {
    /// A rule read from line `line`.
    pub(crate) fn new(line: usize, text: Text, matches: Box<[Match]>, target: Target) -> Rule {
        Rule {
            line,
            text,
            matches,
            target,
        }
    }

    /// The rule as written, starting with `-A CHAIN`.
    pub fn text(&self) -> &str {
        self.text.as_str()
    }

    /// The match conditions, in order.
    pub fn matches(&self) -> &[Match] {
        &self.matches
    }

    /// Descriptions of the parts of this rule kproxy does not understand (empty if none).
    /// Whether a jump's chain exists is a property of the table: see
    /// [`Ruleset::unknown_rules`].
    pub fn unknown_parts(&self) -> Vec<String> {
        let mut parts: Vec<String> = self
            .matches
            .iter()
            .filter_map(|m| match m {
                Match::Unknown { module, reason } => Some(format!("match {module}: {reason}")),
                _ => None,
            })
            .collect();
        if let Target::Unknown { name, .. } = &self.target {
            parts.push(format!("target {name}"));
        }
        parts
    }

    /// The value of `-m comment --comment`, if the rule has one.
    pub fn comment(&self) -> Option<&str> {
        self.matches.iter().find_map(|m| match m {
            Match::Comment(c) => Some(&**c),
            _ => None,
        })
    }
}

/// A chain and its rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    /// The chain's name.
    pub name: Text,
    /// The policy for built-in chains; `None` for user chains (and `-` in restore text).
    pub policy: Option<Policy>,
    /// The rules, in order.
    pub rules: Vec<Rule>,
}

/// A fast hash for chain names (the standard SipHash dominates parsing otherwise).
#[derive(Default, Clone, Copy)]
pub(crate) struct NameHasher(u64);

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// One table's chains, indexed by name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    chains: Vec<Chain>,
    index: HashMap<Text, usize, BuildHasherDefault<NameHasher>>,
}

impl Table {
    /// The position of a chain in [`Table::chains`].
    pub(crate) fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Looks a chain up by name.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.index.get(name).map(|&i| &self.chains[i])
    }

    /// The chains in declaration order.
    pub fn chains(&self) -> &[Chain] {
        &self.chains
    }

    pub(crate) fn chains_mut(&mut self) -> &mut [Chain] {
        &mut self.chains
    }

    pub(crate) fn chain_mut(&mut self, name: &str) -> Option<&mut Chain> {
        self.index.get(name).map(|&i| &mut self.chains[i])
    }

    /// Declares `name` (or flushes it if it exists), as a `:NAME` line does; returns
    /// its position.
    pub(crate) fn declare(&mut self, name: Text, policy: Option<Policy>) -> usize {
        match self.position(&name) {
            Some(i) => {
                let chain = &mut self.chains[i];
                chain.rules.clear();
                chain.policy = policy.or(chain.policy);
                i
            }
            None => {
                let i = self.chains.len();
                self.index.insert(name.clone(), i);
                self.chains.push(Chain {
                    name,
                    policy,
                    rules: Vec::new(),
                });
                i
            }
        }
    }

    /// Deletes a chain, as `-X NAME` does.
    pub(crate) fn delete(&mut self, name: &str) {
        if let Some(i) = self.index.remove(name) {
            self.chains.remove(i);
            for slot in self.index.values_mut() {
                if *slot > i {
                    *slot -= 1;
                }
            }
        }
    }
}

/// A rule kproxy parsed but does not fully understand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnknownRule {
    /// The table holding the rule.
    pub table: TableKind,
    /// The chain holding the rule.
    pub chain: String,
    /// The rule's line number in the parsed text.
    pub line: usize,
    /// The rule as written.
    pub text: String,
    /// What was not understood.
    pub parts: Vec<String>,
}

/// The rules of one IP family: every table that the text declared.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ruleset {
    tables: HashMap<TableKind, Table>,
}

impl Ruleset {
    /// A table, if the text declared it.
    pub fn table(&self, kind: TableKind) -> Option<&Table> {
        self.tables.get(&kind)
    }

    /// Looks a chain up in a table.
    pub fn chain(&self, kind: TableKind, name: &str) -> Option<&Chain> {
        self.table(kind).and_then(|t| t.chain(name))
    }

    pub(crate) fn table_mut(&mut self, kind: TableKind) -> &mut Table {
        self.tables.entry(kind).or_default()
    }

    /// Every rule with a match module, option or target kproxy does not know
    /// (including a jump to a chain the table does not have).
    pub fn unknown_rules(&self) -> Vec<UnknownRule> {
        let mut found = Vec::new();
        for kind in TableKind::ALL {
            let Some(table) = self.table(kind) else {
                continue;
            };
            for chain in table.chains() {
                for rule in &chain.rules {
                    let mut parts = rule.unknown_parts();
                    if let Target::Jump(name) | Target::Goto(name) = &rule.target {
                        if table.chain(name).is_none() {
                            parts.push(format!("target {name}: no such target or chain"));
                        }
                    }
                    if !parts.is_empty() {
                        found.push(UnknownRule {
                            table: kind,
                            chain: chain.name.to_string(),
                            line: rule.line,
                            text: rule.text().to_string(),
                            parts,
                        });
                    }
                }
            }
        }
        found
    }

    /// The number of rules over all tables.
    pub fn rule_count(&self) -> usize {
        self.tables
            .values()
            .flat_map(|t| t.chains())
            .map(|c| c.rules.len())
            .sum()
    }
}

/// The IPv4 and IPv6 rulesets of one node, as a combined dump holds them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DualStackRuleset {
    /// What `iptables-save` printed.
    pub ipv4: Ruleset,
    /// What `ip6tables-save` printed (empty if the dump had no IPv6 part).
    pub ipv6: Ruleset,
}

impl DualStackRuleset {
    /// The ruleset of `addr`'s family.
    pub fn for_addr(&self, addr: IpAddr) -> &Ruleset {
        if addr.is_ipv4() {
            &self.ipv4
        } else {
            &self.ipv6
        }
    }
}
