//! An in-memory kernel for tests: it applies restore text with `--noflush` semantics the
//! way the kernel does (declared chains are flushed and refilled, `-X` deletes, undeclared
//! chains are kept) and refuses a table whose jumps would point at missing chains, rolling
//! that table back. It dumps its state as text the tracer reads.

use crate::canonical::CanonicalError;
use crate::jumps::is_builtin_chain;
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

    /// Applies restore text with `--noflush`, line by line as the kernel does (`:CHAIN`
    /// creates or flushes, `-A`, `-I CHAIN [N]`, `-D`, `-X`). Each table is committed on
    /// its own; a table with a bad line or a dangling jump is left as it was.
    pub fn restore(&mut self, text: &str) -> Result<(), FakeRestoreError> {
        let mut first_error = None;
        let mut current: Option<(String, Table)> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(name) = line.strip_prefix('*') {
                let table = self.tables.get(name).cloned().unwrap_or_default();
                current = Some((name.to_string(), table));
                continue;
            }
            let Some((name, table)) = current.as_mut() else {
                first_error.get_or_insert(bad_line(index, "rule outside a table"));
                continue;
            };
            if line == "COMMIT" {
                let (name, table) = current.take().unwrap_or_default();
                match dangling_jump(&table) {
                    Some(chain) => {
                        first_error
                            .get_or_insert(FakeRestoreError::DanglingJump { table: name, chain });
                    }
                    None => {
                        self.tables.insert(name, table);
                    }
                }
                continue;
            }
            if let Err(message) = apply_line(table, line) {
                first_error.get_or_insert(bad_line(index, &format!("table {name}: {message}")));
                current = None;
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

fn bad_line(index: usize, message: &str) -> FakeRestoreError {
    FakeRestoreError::Parse(CanonicalError {
        line: index + 1,
        message: message.to_string(),
    })
}

/// Applies one restore line to a table being built. Built-in chains exist without being
/// declared, as in the kernel.
fn apply_line(table: &mut Table, line: &str) -> Result<(), String> {
    let find = |table: &mut Table, chain: &str| table.iter().position(|(c, _)| c == chain);
    if let Some(decl) = line.strip_prefix(':') {
        let chain = decl.split(' ').next().unwrap_or("");
        match find(table, chain) {
            Some(i) => table[i].1.clear(),
            None => table.push((chain.to_string(), Vec::new())),
        }
        return Ok(());
    }
    let (op, rest) = line.split_at(line.find(' ').unwrap_or(line.len()));
    let rest = rest.trim_start();
    let (chain, spec) = rest.split_once(' ').unwrap_or((rest, ""));
    if is_builtin_chain(chain) && find(table, chain).is_none() {
        table.push((chain.to_string(), Vec::new()));
    }
    let index = find(table, chain).ok_or_else(|| format!("no chain {chain}"))?;
    match op {
        "-A" => table[index].1.push(line.to_string()),
        "-I" => {
            let (position, spec) = match spec.split_once(' ') {
                Some((n, tail)) if n.bytes().all(|b| b.is_ascii_digit()) => {
                    (n.parse::<usize>().unwrap_or(1).max(1) - 1, tail)
                }
                _ => (0, spec),
            };
            let rules = &mut table[index].1;
            rules.insert(position.min(rules.len()), format!("-A {chain} {spec}"));
        }
        "-D" => {
            let wanted = format!("-A {chain} {spec}");
            let rules = &mut table[index].1;
            let at = rules
                .iter()
                .position(|r| *r == wanted)
                .ok_or_else(|| format!("-D: no such rule in {chain}"))?;
            rules.remove(at);
        }
        "-X" => {
            if !table[index].1.is_empty() {
                return Err(format!("-X: chain {chain} is not empty"));
            }
            table.remove(index);
        }
        other => return Err(format!("unknown command {other}")),
    }
    Ok(())
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
