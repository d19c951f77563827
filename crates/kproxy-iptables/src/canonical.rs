//! Upstream's way of comparing rulesets: parse restore text, then print it in canonical
//! order (tables sorted, kube chains first, dispatch chains stably sorted by service name),
//! plus the consistency check of jumps and chains. Used by the conformance runner.

use std::collections::BTreeSet;

/// One table of a parsed restore text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedTable {
    /// The table name.
    pub name: String,
    /// Declared chains with their counters text (`- [0:0]`), in declaration order.
    pub chains: Vec<(String, String)>,
    /// Rule lines, raw (trimmed), in input order.
    pub rules: Vec<String>,
    /// Chains deleted with `-X`.
    pub deleted: Vec<String>,
}

/// A parse error with the line number.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct CanonicalError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses restore text (`*table`, `:CHAIN`, `-A`, `-X`, `COMMIT`) into tables.
pub fn parse_restore(text: &str) -> Result<Vec<ParsedTable>, CanonicalError> {
    let mut tables = Vec::new();
    let mut current: Option<ParsedTable> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let err = |message: String| CanonicalError {
            line: index + 1,
            message,
        };
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            current = Some(ParsedTable {
                name: name.to_string(),
                ..ParsedTable::default()
            });
            continue;
        }
        if line == "COMMIT" {
            tables.extend(current.take());
            continue;
        }
        let table = current
            .as_mut()
            .ok_or_else(|| err("rule outside a table".into()))?;
        if let Some(decl) = line.strip_prefix(':') {
            let (name, counters) = decl.split_once(' ').unwrap_or((decl, ""));
            table.chains.push((name.to_string(), counters.to_string()));
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let chain = rest.split(' ').next().unwrap_or("");
            if !table.chains.iter().any(|(c, _)| c == chain) {
                return Err(err(format!("-A for undeclared chain {chain}")));
            }
            if table.deleted.iter().any(|c| c == chain) {
                return Err(err(format!("-A for deleted chain {chain}")));
            }
            table.rules.push(line.to_string());
        } else if let Some(chain) = line.strip_prefix("-X ") {
            if table.rules.iter().any(|r| rule_chain(r) == chain) {
                return Err(err(format!("-X on chain {chain} that has rules")));
            }
            table.deleted.push(chain.to_string());
        } else {
            return Err(err(format!("unexpected line {line:?}")));
        }
    }
    Ok(tables)
}

fn rule_chain(rule: &str) -> &str {
    rule.strip_prefix("-A ")
        .and_then(|r| r.split(' ').next())
        .unwrap_or("")
}

fn chain_rank(chain: &str) -> (u8, &str) {
    match chain {
        "KUBE-NODEPORTS" => (0, chain),
        "KUBE-SERVICES" => (1, chain),
        c if c.starts_with("KUBE-") => (2, chain),
        _ => (3, chain),
    }
}

/// The service-name sort key: the comment value up to the first space or `:`.
fn service_sort_key(rule: &str) -> String {
    let Some(pos) = rule.find("--comment ") else {
        return String::new();
    };
    let rest = rule[pos + "--comment ".len()..].trim_start_matches('"');
    rest.split([' ', ':', '"']).next().unwrap_or("").to_string()
}

/// Prints parsed restore text in upstream's canonical form.
pub fn canonical(tables: &[ParsedTable]) -> String {
    let mut sorted: Vec<&ParsedTable> = tables.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::new();
    for table in sorted {
        out.push('*');
        out.push_str(&table.name);
        out.push('\n');
        let mut chains: Vec<&(String, String)> = table.chains.iter().collect();
        chains.sort_by(|a, b| chain_rank(&a.0).cmp(&chain_rank(&b.0)));
        chains.dedup_by(|a, b| a.0 == b.0);
        for (chain, counters) in &chains {
            out.push_str(&format!(":{chain} {counters}\n"));
        }
        for (chain, _) in &chains {
            let mut rules: Vec<&String> = table
                .rules
                .iter()
                .filter(|r| rule_chain(r) == chain)
                .collect();
            let sorted_chain = matches!(
                (table.name.as_str(), chain.as_str()),
                ("filter", "KUBE-NODEPORTS")
                    | ("nat", "KUBE-NODEPORTS")
                    | ("filter", "KUBE-SERVICES")
                    | ("nat", "KUBE-SERVICES")
            );
            if sorted_chain {
                let last_rule = table.name == "nat" && chain == "KUBE-SERVICES";
                rules.sort_by_key(|r| {
                    (
                        last_rule && r.contains("must be the last rule"),
                        service_sort_key(r),
                    )
                });
            }
            for rule in rules {
                out.push_str(rule);
                out.push('\n');
            }
        }
        let mut deleted: Vec<&String> = table.deleted.iter().collect();
        deleted.sort_by(|a, b| chain_rank(a).cmp(&chain_rank(b)));
        for chain in deleted {
            out.push_str(&format!("-X {chain}\n"));
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// Parses and canonicalizes restore text in one step.
pub fn canonicalize(text: &str) -> Result<String, CanonicalError> {
    parse_restore(text.trim_start()).map(|tables| canonical(&tables))
}

const BUILTIN_TARGETS: [&str; 8] = [
    "ACCEPT",
    "REJECT",
    "DROP",
    "MARK",
    "RETURN",
    "DNAT",
    "SNAT",
    "MASQUERADE",
];
const ALWAYS_USED: [&str; 8] = [
    "KUBE-SERVICES",
    "KUBE-EXTERNAL-SERVICES",
    "KUBE-NODEPORTS",
    "KUBE-POSTROUTING",
    "KUBE-FORWARD",
    "KUBE-MARK-MASQ",
    "KUBE-PROXY-FIREWALL",
    "KUBE-FIREWALL",
];

/// Upstream's consistency check of a full ruleset: every jumped-to or filled chain is
/// declared, every jumped-to chain has rules, and every declared chain is used.
pub fn check_consistency(text: &str) -> Result<(), String> {
    for section in text.split("COMMIT\n") {
        let table = section
            .lines()
            .find_map(|l| l.strip_prefix('*'))
            .unwrap_or("")
            .to_string();
        let mut created: BTreeSet<&str> = BTreeSet::new();
        let mut filled: BTreeSet<&str> = BTreeSet::new();
        let mut jumped: BTreeSet<&str> = BTreeSet::new();
        let mut deleted: BTreeSet<&str> = BTreeSet::new();
        for line in section.lines() {
            if let Some(decl) = line.strip_prefix(':') {
                created.insert(decl.split(' ').next().unwrap_or(""));
            } else if let Some(chain) = line.strip_prefix("-X ") {
                deleted.insert(chain.split(' ').next().unwrap_or(""));
            } else if line.starts_with("-A ") {
                filled.insert(rule_chain(line));
                if let Some(pos) = line.find("-j ") {
                    let target = line[pos + 3..].split(' ').next().unwrap_or("");
                    if !BUILTIN_TARGETS.contains(&target) {
                        jumped.insert(target);
                    }
                }
            }
        }
        let created: BTreeSet<&str> = created.difference(&deleted).copied().collect();
        let used: BTreeSet<&str> = jumped.union(&filled).copied().collect();
        let missing: Vec<&str> = used.difference(&created).copied().collect();
        if !missing.is_empty() {
            return Err(format!(
                "some chains in {table} are used but were not created: [{}]",
                missing.join(" ")
            ));
        }
        let empty: Vec<&str> = jumped
            .difference(&filled)
            .filter(|c| **c != "KUBE-NODEPORTS")
            .copied()
            .collect();
        if !empty.is_empty() {
            return Err(format!(
                "some chains in {table} are jumped to but have no rules: [{}]",
                empty.join(" ")
            ));
        }
        let unused: Vec<&str> = created
            .difference(&jumped)
            .filter(|c| !ALWAYS_USED.contains(c))
            .copied()
            .collect();
        if !unused.is_empty() {
            return Err(format!(
                "some chains in {table} are created but not used: [{}]",
                unused.join(" ")
            ));
        }
    }
    Ok(())
}
