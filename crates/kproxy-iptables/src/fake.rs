//! An in-memory kernel for tests: it applies restore text with `--noflush` semantics the
//! way the kernel does (declared chains are flushed and refilled, `-X` deletes, undeclared
//! chains are kept) and refuses a table whose jumps would point at missing chains, rolling
//! that table back. It dumps its state as text the tracer reads.

use crate::canonical::{parse_restore, CanonicalError};
use std::collections::BTreeMap;

/// Targets that are not chains.
const BUILTIN_TARGETS: [&str; 8] = [
    "ACCEPT",
    "DROP",
    "RETURN",
    "REJECT",
    "DNAT",
    "SNAT",
    "MASQUERADE",
    "MARK",
];

/// Why a restore was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FakeRestoreError {
    /// The text does not parse.
    #[error("parse error: {0}")]
    Parse(#[from] CanonicalError),
    /// A rule jumps to a chain that does not exist after the restore.
    #[error("table {table}: chain {chain} is referenced by existing rules but does not exist")]
    DanglingJump {
        /// The table.
        table: String,
        /// The missing chain.
        chain: String,
    },
}

/// One table: chains in creation order, each with its rules (raw `-A` lines).
type Table = Vec<(String, Vec<String>)>;

/// The fake kernel's tables.
#[derive(Debug, Clone)]
pub struct FakeKernel {
    tables: BTreeMap<String, Table>,
}

impl Default for FakeKernel {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeKernel {
    /// A kernel with the built-in chains of filter, nat and mangle.
    pub fn new() -> Self {
        let builtin = |names: &[&str]| -> Table {
            names.iter().map(|n| (n.to_string(), Vec::new())).collect()
        };
        let mut tables = BTreeMap::new();
        tables.insert(
            "nat".to_string(),
            builtin(&["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]),
        );
        tables.insert(
            "filter".to_string(),
            builtin(&["INPUT", "FORWARD", "OUTPUT"]),
        );
        tables.insert("mangle".to_string(), Table::new());
        FakeKernel { tables }
    }

    /// Applies restore text with `--noflush`. Each table is checked on its own; a table
    /// with a dangling jump is left as it was and the error is returned.
    pub fn restore(&mut self, text: &str) -> Result<(), FakeRestoreError> {
        let parsed = parse_restore(text)?;
        let mut first_error = None;
        for table in parsed {
            let mut chains = self.tables.get(&table.name).cloned().unwrap_or_default();
            for (name, _) in &table.chains {
                match chains.iter_mut().find(|(c, _)| c == name) {
                    Some((_, rules)) => rules.clear(),
                    None => chains.push((name.clone(), Vec::new())),
                }
            }
            for rule in &table.rules {
                let chain = rule_chain(rule);
                if let Some((_, rules)) = chains.iter_mut().find(|(c, _)| c == chain) {
                    rules.push(rule.clone());
                }
            }
            chains.retain(|(c, _)| !table.deleted.contains(c));
            match dangling_jump(&chains) {
                Some(chain) => {
                    first_error.get_or_insert(FakeRestoreError::DanglingJump {
                        table: table.name.clone(),
                        chain,
                    });
                }
                None => {
                    self.tables.insert(table.name.clone(), chains);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Appends a rule (`-A CHAIN …`) directly, as another program would.
    pub fn append_rule(&mut self, table: &str, rule: &str) {
        let chain = rule_chain(rule).to_string();
        let chains = self.tables.entry(table.to_string()).or_default();
        match chains.iter_mut().find(|(c, _)| *c == chain) {
            Some((_, rules)) => rules.push(rule.to_string()),
            None => chains.push((chain, vec![rule.to_string()])),
        }
    }

    /// Inserts a rule at the top of its chain (`-I`), creating nothing else.
    pub fn insert_rule(&mut self, table: &str, rule: &str) {
        let chain = rule_chain(rule).to_string();
        let chains = self.tables.entry(table.to_string()).or_default();
        match chains.iter_mut().find(|(c, _)| *c == chain) {
            Some((_, rules)) if !rules.iter().any(|r| r == rule) => {
                rules.insert(0, rule.to_string())
            }
            Some(_) => {}
            None => chains.push((chain, vec![rule.to_string()])),
        }
    }

    /// Makes sure kube-proxy's jump rules are in the built-in chains, in order, at the top,
    /// creating the kube chains they point at when missing (as the real runner does).
    pub fn ensure_jumps(&mut self, jumps: &[crate::jumps::JumpRule]) {
        for jump in jumps.iter().rev() {
            if !self.has_chain(jump.table, jump.target) {
                self.tables
                    .entry(jump.table.to_string())
                    .or_default()
                    .push((jump.target.to_string(), Vec::new()));
            }
            self.insert_rule(jump.table, &jump.rule_text());
        }
    }

    /// Whether a chain exists.
    pub fn has_chain(&self, table: &str, chain: &str) -> bool {
        self.tables
            .get(table)
            .is_some_and(|chains| chains.iter().any(|(c, _)| c == chain))
    }

    /// The rules of one chain, or `None` if it does not exist.
    pub fn chain_rules(&self, table: &str, chain: &str) -> Option<&[String]> {
        self.tables
            .get(table)?
            .iter()
            .find(|(c, _)| c == chain)
            .map(|(_, rules)| rules.as_slice())
    }

    /// Names of all chains of a table.
    pub fn chains(&self, table: &str) -> Vec<String> {
        self.tables
            .get(table)
            .map(|chains| chains.iter().map(|(c, _)| c.clone()).collect())
            .unwrap_or_default()
    }

    /// The whole state in `iptables-save` layout (restore syntax).
    pub fn save(&self) -> String {
        let mut out = String::new();
        for (name, chains) in &self.tables {
            out.push_str(&format!("*{name}\n"));
            for (chain, _) in chains {
                out.push_str(&format!(":{chain} - [0:0]\n"));
            }
            for (_, rules) in chains {
                for rule in rules {
                    out.push_str(rule);
                    out.push('\n');
                }
            }
            out.push_str("COMMIT\n");
        }
        out
    }
}

fn rule_chain(rule: &str) -> &str {
    rule.strip_prefix("-A ")
        .and_then(|r| r.split(' ').next())
        .unwrap_or("")
}

fn dangling_jump(chains: &Table) -> Option<String> {
    for (_, rules) in chains {
        for rule in rules {
            let Some(pos) = rule.find(" -j ").or_else(|| rule.find(" -g ")) else {
                continue;
            };
            let target = rule[pos + 4..].split(' ').next().unwrap_or("");
            if !BUILTIN_TARGETS.contains(&target) && !chains.iter().any(|(c, _)| c == target) {
                return Some(target.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noflush_keeps_undeclared_chains_and_rolls_back_dangling_jumps() {
        let mut kernel = FakeKernel::new();
        let first = "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-A - [0:0]\n:KUBE-SEP-A - [0:0]\n\
                     -A KUBE-SVC-A -j KUBE-SEP-A\n-A KUBE-SEP-A -j DNAT --to-destination 10.0.0.1:80\nCOMMIT\n";
        assert_eq!(kernel.restore(first), Ok(()));
        let delete_target = "*nat\n:KUBE-SEP-A - [0:0]\n-X KUBE-SEP-A\nCOMMIT\n";
        assert!(kernel.restore(delete_target).is_err());
        assert!(kernel.has_chain("nat", "KUBE-SEP-A"));
        assert_eq!(
            kernel.chain_rules("nat", "KUBE-SVC-A").map(|r| r.len()),
            Some(1)
        );
    }
}
