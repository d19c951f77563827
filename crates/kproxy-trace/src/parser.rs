//! Parsing `iptables-save` output and `iptables-restore` input into a [`Ruleset`].

use crate::rule::parse_rule;
use crate::ruleset::{DualStackRuleset, Policy, Rule, Ruleset, Table, TableKind};
use crate::text::TextSource;
use crate::tokenizer::{tokenize_into, TokenizeError};
use std::borrow::Cow;
use std::sync::Arc;

/// The line that separates the `iptables-save` part from the `ip6tables-save` part of a
/// combined dump.
pub const IP6TABLES_SEPARATOR: &str = "# ---- ip6tables";

/// A ruleset text could not be read; `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ParseError {
    /// The line with the problem.
    pub line: usize,
    /// What is wrong with it.
    pub kind: ParseErrorKind,
}

/// What is wrong with a line of ruleset text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// Quoting is broken.
    #[error(transparent)]
    Tokenize(#[from] TokenizeError),
    /// A chain or rule line before any `*table` line.
    #[error("{0:?} is outside a table (no *table line before it)")]
    OutsideTable(String),
    /// `*name` with a name that is not an iptables table.
    #[error("unknown table {0:?}")]
    UnknownTable(String),
    /// A `*table` line while another table was still open.
    #[error("table {0} starts before the previous table was committed")]
    NestedTable(String),
    /// `COMMIT` without an open table.
    #[error("COMMIT outside a table")]
    CommitOutsideTable,
    /// The text ended inside a table.
    #[error("table {0} is never committed")]
    MissingCommit(String),
    /// A `:CHAIN POLICY [p:b]` line that cannot be read.
    #[error("cannot read chain line {0:?}")]
    BadChainLine(String),
    /// A rule for a chain that was not declared.
    #[error("chain {0} was not declared")]
    UndeclaredChain(String),
    /// `-X` of a chain that still has rules.
    #[error("cannot delete chain {0}: it has rules")]
    DeleteNonEmpty(String),
    /// A rule whose words cannot be read.
    #[error("bad rule in chain {chain}: {reason}")]
    BadRule {
        /// The rule's chain.
        chain: String,
        /// What is wrong.
        reason: String,
    },
    /// A command other than `-A`, `-N`, `-X`, `-F`.
    #[error("unsupported command {0:?}")]
    UnsupportedCommand(String),
}

impl Ruleset {
    /// Parses the text of one IP family: `iptables-save` output or `iptables-restore`
    /// input. Line numbers in errors and rules count from 1.
    pub fn parse(text: &str) -> Result<Ruleset, ParseError> {
        parse_lines(text, 0)
    }
}

impl DualStackRuleset {
    /// Parses a combined dump: `iptables-save` output, then a line
    /// `# ---- ip6tables`, then `ip6tables-save` output. Without the separator line the
    /// whole text is IPv4. Line numbers refer to the whole text.
    pub fn parse(text: &str) -> Result<DualStackRuleset, ParseError> {
        let mut offset = 0;
        for (index, line) in text.split_inclusive('\n').enumerate() {
            if line.trim() == IP6TABLES_SEPARATOR {
                let ipv4 = parse_lines(&text[..offset], 0)?;
                let ipv6 = parse_lines(&text[offset + line.len()..], index + 1)?;
                return Ok(DualStackRuleset { ipv4, ipv6 });
            }
            offset += line.len();
        }
        Ok(DualStackRuleset {
            ipv4: parse_lines(text, 0)?,
            ipv6: Ruleset::default(),
        })
    }
}

/// The table being read between `*name` and `COMMIT`.
struct OpenTable {
    kind: TableKind,
    table: Table,
    /// The chains of the latest `-A` lines, most recent first: kube-proxy writes a
    /// service's chains together, so most lookups hit here instead of the index.
    recent_chains: [Option<usize>; 4],
}

/// A line of the shared text, so that rules can refer to it.
struct LineRef<'a> {
    source: &'a TextSource,
    text: &'a str,
    number: usize,
}

fn parse_lines(text: &str, first_line_offset: usize) -> Result<Ruleset, ParseError> {
    let shared: Arc<str> = Arc::from(text);
    let text = &*shared;
    let source = TextSource::new(Arc::clone(&shared));
    let mut ruleset = Ruleset::default();
    let mut open: Option<OpenTable> = None;
    let mut words: Vec<Cow<'_, str>> = Vec::with_capacity(32);
    let mut last_line = first_line_offset;
    for (index, raw) in text.lines().enumerate() {
        let line_no = first_line_offset + index + 1;
        last_line = line_no;
        let line = strip_counters(raw.trim());
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |kind| ParseError {
            line: line_no,
            kind,
        };
        if let Some(name) = line.strip_prefix('*') {
            if let Some(t) = &open {
                return Err(fail(ParseErrorKind::NestedTable(t.kind.to_string())));
            }
            let kind = TableKind::from_name(name)
                .ok_or_else(|| fail(ParseErrorKind::UnknownTable(name.to_string())))?;
            let table = ruleset.table(kind).cloned().unwrap_or_default();
            open = Some(OpenTable {
                kind,
                table,
                recent_chains: [None; 4],
            });
            continue;
        }
        if line == "COMMIT" {
            let t = open
                .take()
                .ok_or_else(|| fail(ParseErrorKind::CommitOutsideTable))?;
            *ruleset.table_mut(t.kind) = t.table;
            continue;
        }
        let t = open
            .as_mut()
            .ok_or_else(|| fail(ParseErrorKind::OutsideTable(line.to_string())))?;
        if let Some(decl) = line.strip_prefix(':') {
            let (name, policy) = chain_line(decl)
                .ok_or_else(|| fail(ParseErrorKind::BadChainLine(line.to_string())))?;
            t.table.declare(source.text(name), policy);
            continue;
        }
        tokenize_into(line, &mut words).map_err(|e| fail(e.into()))?;
        let line = LineRef {
            source: &source,
            text: line,
            number: line_no,
        };
        command(t, &line, &words).map_err(fail)?;
    }
    match open {
        Some(t) => Err(ParseError {
            line: last_line,
            kind: ParseErrorKind::MissingCommit(t.kind.to_string()),
        }),
        None => Ok(ruleset),
    }
}

/// Drops the `[packets:bytes]` prefix `iptables-save -c` puts before rules.
fn strip_counters(line: &str) -> &str {
    if line.starts_with('[') {
        if let Some(end) = line.find(']') {
            return line[end + 1..].trim_start();
        }
    }
    line
}

/// Reads `NAME POLICY [p:b]` (the text after `:`).
fn chain_line(decl: &str) -> Option<(&str, Option<Policy>)> {
    let mut parts = decl.split_ascii_whitespace();
    let name = parts.next()?;
    let policy = match parts.next() {
        None | Some("-") => None,
        Some("ACCEPT") => Some(Policy::Accept),
        Some("DROP") => Some(Policy::Drop),
        Some(_) => return None,
    };
    Some((name, policy))
}

fn builtin_chains(kind: TableKind) -> &'static [&'static str] {
    match kind {
        TableKind::Raw => &["PREROUTING", "OUTPUT"],
        TableKind::Mangle => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        TableKind::Nat => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        TableKind::Filter | TableKind::Security => &["INPUT", "FORWARD", "OUTPUT"],
    }
}

/// Applies one `-A`/`-N`/`-X`/`-F` line to the open table.
fn command(
    t: &mut OpenTable,
    line: &LineRef<'_>,
    words: &[Cow<'_, str>],
) -> Result<(), ParseErrorKind> {
    let verb = &*words[0];
    let chain = words.get(1).map(|w| &**w);
    match (verb, chain) {
        ("-A" | "--append", Some(chain)) => return append(t, line, chain, &words[2..]),
        ("-N" | "--new-chain", Some(chain)) if t.table.chain(chain).is_none() => {
            t.table.declare(line.source.text(chain), None);
        }
        ("-X" | "--delete-chain", Some(chain)) => {
            if t.table.chain(chain).is_some_and(|c| !c.rules.is_empty()) {
                return Err(ParseErrorKind::DeleteNonEmpty(chain.to_string()));
            }
            t.table.delete(chain);
        }
        ("-F" | "--flush", Some(chain)) => {
            t.table
                .chain_mut(chain)
                .ok_or_else(|| ParseErrorKind::UndeclaredChain(chain.to_string()))?
                .rules
                .clear();
        }
        _ => return Err(ParseErrorKind::UnsupportedCommand(line.text.to_string())),
    }
    t.recent_chains = [None; 4];
    Ok(())
}

/// Adds the rule of an `-A CHAIN ...` line.
fn append(
    t: &mut OpenTable,
    line: &LineRef<'_>,
    chain: &str,
    words: &[Cow<'_, str>],
) -> Result<(), ParseErrorKind> {
    let chains = t.table.chains();
    let cached = t
        .recent_chains
        .iter()
        .flatten()
        .copied()
        .find(|&i| &*chains[i].name == chain);
    let index = match cached.or_else(|| t.table.position(chain)) {
        Some(i) => i,
        None if builtin_chains(t.kind).contains(&chain) => t
            .table
            .declare(line.source.text(chain), Some(Policy::Accept)),
        None => return Err(ParseErrorKind::UndeclaredChain(chain.to_string())),
    };
    let (matches, target) =
        parse_rule(words, line.source).map_err(|reason| ParseErrorKind::BadRule {
            chain: chain.to_string(),
            reason,
        })?;
    let rule = Rule::new(line.number, line.source.text(line.text), matches, target);
    t.table.chains_mut()[index].rules.push(rule);
    if t.recent_chains[0] != Some(index) {
        t.recent_chains.copy_within(0..3, 1);
        t.recent_chains[0] = Some(index);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::Target;

    #[test]
    fn restore_text_with_declarations_and_deletes() {
        let text = "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-A - [0:0]\n:KUBE-OLD - [0:0]\n\
                    -A KUBE-SERVICES -d 10.0.0.1 -j KUBE-SVC-A\n-X KUBE-OLD\nCOMMIT\n";
        let rs = Ruleset::parse(text).unwrap();
        let nat = rs.table(TableKind::Nat).unwrap();
        assert!(nat.chain("KUBE-OLD").is_none());
        let rule = &nat.chain("KUBE-SERVICES").unwrap().rules[0];
        assert_eq!(rule.line, 5);
        assert_eq!(rule.target, Target::Jump("KUBE-SVC-A".into()));
        assert_eq!(nat.chain("KUBE-SVC-A").unwrap().policy, None);
    }

    #[test]
    fn errors_carry_line_numbers() {
        let err = Ruleset::parse("*nat\n-A NOPE -j ACCEPT\nCOMMIT\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(err.kind, ParseErrorKind::UndeclaredChain("NOPE".into()));
        let err = Ruleset::parse("-A INPUT -j ACCEPT\n").unwrap_err();
        assert_eq!(err.line, 1);
        let err = Ruleset::parse("*nat\n:X - [0:0]\n-A X -j ACCEPT\n-X X\nCOMMIT\n").unwrap_err();
        assert_eq!(
            (err.line, err.kind),
            (4, ParseErrorKind::DeleteNonEmpty("X".into()))
        );
        let err =
            Ruleset::parse("*filter\n-A INPUT -m comment --comment \"x -j DROP\n").unwrap_err();
        assert_eq!(err.line, 2);
        let err = Ruleset::parse("*filter\n-A INPUT -j ACCEPT\n").unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::MissingCommit("filter".into()));
    }

    #[test]
    fn jump_to_missing_chain_is_reported_as_unknown() {
        let rs =
            Ruleset::parse("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j NOWHERE\nCOMMIT\n").unwrap();
        let unknown = rs.unknown_rules();
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].line, 3);
    }

    #[test]
    fn dual_stack_dump_splits_and_keeps_line_numbers() {
        let text = "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n# ---- ip6tables\n*filter\n:INPUT DROP [0:0]\n-A INPUT -s ::1 -j ACCEPT\nCOMMIT\n";
        let dual = DualStackRuleset::parse(text).unwrap();
        let v6 = dual.ipv6.chain(TableKind::Filter, "INPUT").unwrap();
        assert_eq!(v6.policy, Some(Policy::Drop));
        assert_eq!(v6.rules[0].line, 7);
        assert_eq!(
            dual.ipv4.chain(TableKind::Filter, "INPUT").unwrap().policy,
            Some(Policy::Accept)
        );
    }
}
