//! Parsing `iptables-save` output and `iptables-restore` input into a [`Ruleset`].

use crate::file::{parse_file, ReadError};
use crate::rule::parse_rule;
use crate::ruleset::{DualStackRuleset, Matches, Policy, Rule, Ruleset, Table, TableKind};
use crate::runs::{Group, RunBuilder};
use crate::text::TextSource;
use crate::tokenizer::{tokenize_into, TokenizeError};
use std::borrow::Cow;

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
    /// The line is not UTF-8 text.
    #[error("not UTF-8 text")]
    NotUtf8,
}

impl Ruleset {
    /// Parses the text of one IP family: `iptables-save` output or `iptables-restore`
    /// input. Line numbers in errors and rules count from 1.
    pub fn parse(text: &str) -> Result<Ruleset, ParseError> {
        parse_lines(text, Family::One).map(|(ruleset, _)| ruleset)
    }
}

impl DualStackRuleset {
    /// Parses a combined dump: `iptables-save` output, then a line
    /// `# ---- ip6tables`, then `ip6tables-save` output. Without the separator line the
    /// whole text is IPv4. Line numbers refer to the whole text.
    pub fn parse(text: &str) -> Result<DualStackRuleset, ParseError> {
        let (ipv4, ipv6) = parse_lines(text, Family::Two)?;
        Ok(DualStackRuleset { ipv4, ipv6 })
    }

    /// Reads and parses a combined dump (see [`DualStackRuleset::parse`]) from a file; a
    /// large file is read and parsed in pieces on every core.
    pub fn read_file(path: &std::path::Path) -> Result<DualStackRuleset, ReadError> {
        let (ipv4, ipv6) = parse_file(path, Family::Two)?;
        Ok(DualStackRuleset { ipv4, ipv6 })
    }
}

/// Whether the text holds one family, or two split by [`IP6TABLES_SEPARATOR`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// One family: the separator is a comment like any other.
    One,
    /// The lines before the first separator are IPv4, the lines after it IPv6.
    Two,
}

/// Texts smaller than this are parsed on the calling thread alone.
const PARALLEL_MIN_BYTES: usize = 1 << 20;
/// At most this many threads parse one text.
const MAX_THREADS: usize = 8;

/// The table being read between `*name` and `COMMIT`.
struct OpenTable {
    kind: TableKind,
    table: Table,
    /// The chains of the latest `-A` lines, most recent first: kube-proxy writes a
    /// service's chains together, so most lookups hit here instead of the index.
    recent_chains: [Option<usize>; 4],
}

/// A line of the shared text, so that rules can refer to it.
struct LineRef<'s, 'a> {
    source: &'s TextSource,
    text: &'a str,
    number: usize,
}

/// One line that is not blank or a comment, read as far as it can be without knowing
/// the lines before it.
struct Item<'a> {
    /// The line's number in the whole text, from 1.
    number: usize,
    /// The line without surrounding whitespace and without counters.
    text: &'a str,
    kind: ItemKind<'a>,
}

enum ItemKind<'a> {
    /// `*name`
    Table(&'a str),
    /// `COMMIT`
    Commit,
    /// [`IP6TABLES_SEPARATOR`]
    Separator,
    /// `:NAME POLICY [p:b]` (the text after `:`).
    Chain(&'a str),
    /// Consecutive `-A` lines with readable rules (the item's line is the first).
    Run(Vec<Group<'a>>),
    /// `-A CHAIN ...` with its rule already parsed (or why it cannot be).
    Append {
        chain: &'a str,
        rule: Result<Rule, String>,
    },
    /// Any other line (other commands, broken quoting): read again in order.
    Other,
}

/// One piece of the text (whole lines), prepared independently of the others.
pub(crate) struct Chunk<'a> {
    /// A copy of the piece that the prepared rules share.
    source: TextSource,
    /// How many lines the piece has.
    lines: usize,
    items: Vec<Item<'a>>,
}

/// Parses `text`: one family, or with [`Family::Two`] the IPv4 and IPv6 rulesets around
/// the first separator line (the second is empty without one).
///
/// Large texts are cut at line boundaries into one chunk per core. Each chunk's lines are
/// tokenized and their rules parsed on a thread of their own; then the chunks' lines are
/// applied in order on this thread (tables, chain declarations, deletes, appends), so
/// the result and the first error (with its exact line number) are what reading the
/// text line by line gives.
pub(crate) fn parse_lines(text: &str, family: Family) -> Result<(Ruleset, Ruleset), ParseError> {
    let mut pieces: Vec<(&str, usize)> = Vec::new();
    let mut first_line = 0;
    for piece in split_into_chunks(text) {
        if let Some(&(previous, _)) = pieces.last() {
            // Every piece but the last ends with a newline.
            first_line += count_newlines(previous.as_bytes());
        }
        pieces.push((piece, first_line));
    }
    let mut applier = Applier::new(family);
    match pieces.as_slice() {
        [first, rest @ ..] if !rest.is_empty() => std::thread::scope(|scope| {
            let spawned: Vec<_> = rest
                .iter()
                .map(|&(piece, first_line)| {
                    let thread = std::thread::Builder::new()
                        .spawn_scoped(scope, move || prepare_copy(piece, first_line))
                        .ok();
                    (piece, first_line, thread)
                })
                .collect();
            // Applying the first chunk overlaps with the other threads' work.
            applier.chunk(prepare_copy(first.0, first.1))?;
            for (piece, first_line, thread) in spawned {
                applier.chunk(match thread {
                    Some(thread) => thread
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                    None => prepare_copy(piece, first_line),
                })?;
            }
            Ok(())
        })?,
        _ => applier.chunk(prepare_copy(text, 0))?,
    }
    applier.finish()
}

/// [`prepare`] on a copy of `text` made by the calling thread, so that no reference count
/// is shared between threads while parsing.
fn prepare_copy(text: &str, first_line: usize) -> Chunk<'_> {
    prepare(text, TextSource::copy_of(text), first_line)
}

/// The number of `\n` in `text`, eight bytes at a time.
pub(crate) fn count_newlines(text: &[u8]) -> usize {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const NEWLINES: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    let words = text.chunks_exact(8);
    let tail = words.remainder().iter().filter(|&&b| b == b'\n').count();
    words.fold(tail, |count, word| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let x = u64::from_le_bytes(bytes) ^ NEWLINES;
        // The top bit of each byte of `zero` is set exactly where `x` has a zero byte.
        let zero = !(((x & LOW7) + LOW7) | x | LOW7);
        count + zero.count_ones() as usize
    })
}

/// How many threads parse a text of `len` bytes: one per core for large texts.
pub(crate) fn thread_count(len: usize) -> usize {
    if len < PARALLEL_MIN_BYTES {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
    }
}

/// Where, in the `rest` bytes still to be shared out with `left` pieces of `threads`, the
/// next piece should end (before moving on to the end of its line). The calling thread
/// also applies every chunk in order, so it prepares a smaller first piece.
pub(crate) fn piece_target(rest: usize, left: usize, threads: usize) -> usize {
    let share = if left == threads { 9 } else { 10 };
    rest * share / (10 * left)
}

/// Cuts `text` after newlines into about equal pieces, one per available core.
fn split_into_chunks(text: &str) -> Vec<&str> {
    let threads = thread_count(text.len());
    let mut pieces = Vec::with_capacity(threads);
    let mut rest = text;
    for left in (2..=threads).rev() {
        let target = piece_target(rest.len(), left, threads);
        let cut = rest.as_bytes()[target..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |at| target + at + 1);
        let (piece, tail) = rest.split_at(cut);
        pieces.push(piece);
        rest = tail;
    }
    pieces.push(rest);
    pieces
}

/// Reads the lines of one chunk, whose first line follows line `first_line`: classifies
/// them, tokenizes and parses `-A` rules and groups runs of them by chain. The rules'
/// texts are shared with `source`, which holds `text` or a copy of it.
pub(crate) fn prepare(text: &str, source: TextSource, first_line: usize) -> Chunk<'_> {
    // A run of `-A` lines is one item, so items are mostly chain declarations: about
    // one in four of a real ruleset's lines, which are about 100 bytes long.
    let mut items = Vec::with_capacity(text.len() / 256);
    let mut words: Vec<Cow<'_, str>> = Vec::with_capacity(32);
    let mut scratch = Matches::with_capacity(16);
    let mut run = RunBuilder::default();
    let mut run_start: Option<(usize, &str)> = None;
    let mut lines = 0;
    for raw in text.lines() {
        lines += 1;
        let number = first_line + lines;
        let line = strip_counters(raw.trim());
        if line.is_empty() {
            continue;
        }
        let kind = if line.starts_with('#') {
            if line != IP6TABLES_SEPARATOR {
                continue;
            }
            ItemKind::Separator
        } else if let Some(name) = line.strip_prefix('*') {
            ItemKind::Table(name)
        } else if line == "COMMIT" {
            ItemKind::Commit
        } else if let Some(decl) = line.strip_prefix(':') {
            ItemKind::Chain(decl)
        } else {
            prepare_command(line, number, &source, &mut words, &mut scratch)
        };
        if let ItemKind::Append {
            chain,
            rule: Ok(rule),
        } = kind
        {
            run_start.get_or_insert((number, line));
            run.push(chain, number, rule);
            continue;
        }
        end_run(&mut items, &mut run, &mut run_start);
        items.push(Item {
            number,
            text: line,
            kind,
        });
    }
    end_run(&mut items, &mut run, &mut run_start);
    Chunk {
        source,
        lines,
        items,
    }
}

/// Adds the run being collected (if any) to `items`.
fn end_run<'a>(
    items: &mut Vec<Item<'a>>,
    run: &mut RunBuilder<'a>,
    start: &mut Option<(usize, &'a str)>,
) {
    if let Some((number, text)) = start.take() {
        items.push(Item {
            number,
            text,
            kind: ItemKind::Run(run.take()),
        });
    }
}

/// Parses the rule of an `-A CHAIN ...` line ahead of time; anything else is left for
/// [`command`].
fn prepare_command<'a>(
    line: &'a str,
    number: usize,
    source: &TextSource,
    words: &mut Vec<Cow<'a, str>>,
    scratch: &mut Matches,
) -> ItemKind<'a> {
    if tokenize_into(line, words).is_err() {
        return ItemKind::Other;
    }
    match words.as_slice() {
        [verb, Cow::Borrowed(chain), rest @ ..] if verb == "-A" || verb == "--append" => {
            let rule = parse_rule(rest, source, scratch)
                .map(|(matches, target)| Rule::new(number, source.text(line), matches, target));
            ItemKind::Append { chain, rule }
        }
        _ => ItemKind::Other,
    }
}

/// Applies prepared chunks, in order, to the rulesets being built.
pub(crate) struct Applier<'a> {
    family: Family,
    ruleset: Ruleset,
    /// The IPv4 ruleset, once the separator line of a two-family text was seen.
    ipv4: Option<Ruleset>,
    open: Option<OpenTable>,
    words: Vec<Cow<'a, str>>,
    /// The number of lines before the next chunk.
    base: usize,
}

impl<'a> Applier<'a> {
    pub(crate) fn new(family: Family) -> Applier<'a> {
        Applier {
            family,
            ruleset: Ruleset::default(),
            ipv4: None,
            open: None,
            words: Vec::with_capacity(32),
            base: 0,
        }
    }

    /// Applies the lines of the next chunk.
    pub(crate) fn chunk(&mut self, chunk: Chunk<'a>) -> Result<(), ParseError> {
        let Chunk {
            source,
            lines,
            items,
        } = chunk;
        for item in items {
            let line_no = item.number;
            let fail = |kind| ParseError {
                line: line_no,
                kind,
            };
            match item.kind {
                ItemKind::Separator => {
                    if self.family == Family::Two && self.ipv4.is_none() {
                        commit_check(self.open.as_ref(), line_no - 1)?;
                        self.ipv4 = Some(std::mem::take(&mut self.ruleset));
                    }
                }
                ItemKind::Table(name) => {
                    if let Some(t) = &self.open {
                        return Err(fail(ParseErrorKind::NestedTable(t.kind.to_string())));
                    }
                    let kind = TableKind::from_name(name)
                        .ok_or_else(|| fail(ParseErrorKind::UnknownTable(name.to_string())))?;
                    let table = self.ruleset.table(kind).cloned().unwrap_or_default();
                    self.open = Some(OpenTable {
                        kind,
                        table,
                        recent_chains: [None; 4],
                    });
                }
                ItemKind::Commit => {
                    let t = self
                        .open
                        .take()
                        .ok_or_else(|| fail(ParseErrorKind::CommitOutsideTable))?;
                    *self.ruleset.table_mut(t.kind) = t.table;
                }
                kind => {
                    let t = self
                        .open
                        .as_mut()
                        .ok_or_else(|| fail(ParseErrorKind::OutsideTable(item.text.to_string())))?;
                    if let ItemKind::Run(groups) = kind {
                        for group in groups {
                            append_group(t, &source, group)?;
                        }
                        continue;
                    }
                    let line = LineRef {
                        source: &source,
                        text: item.text,
                        number: line_no,
                    };
                    in_table(t, &line, kind, &mut self.words).map_err(fail)?;
                }
            }
        }
        self.base += lines;
        Ok(())
    }

    /// The IPv4 (or only) ruleset and the IPv6 one (empty without a separator line).
    pub(crate) fn finish(self) -> Result<(Ruleset, Ruleset), ParseError> {
        commit_check(self.open.as_ref(), self.base)?;
        Ok(match self.ipv4 {
            Some(ipv4) => (ipv4, self.ruleset),
            None => (self.ruleset, Ruleset::default()),
        })
    }
}

/// The error for a text (or family) ending at `last_line` with a table still open.
fn commit_check(open: Option<&OpenTable>, last_line: usize) -> Result<(), ParseError> {
    match open {
        Some(t) => Err(ParseError {
            line: last_line,
            kind: ParseErrorKind::MissingCommit(t.kind.to_string()),
        }),
        None => Ok(()),
    }
}

/// Applies a chain declaration or a command to the open table.
fn in_table<'a>(
    t: &mut OpenTable,
    line: &LineRef<'_, 'a>,
    kind: ItemKind<'a>,
    words: &mut Vec<Cow<'a, str>>,
) -> Result<(), ParseErrorKind> {
    match kind {
        ItemKind::Chain(decl) => {
            let (name, policy) = chain_line(decl)
                .ok_or_else(|| ParseErrorKind::BadChainLine(line.text.to_string()))?;
            t.table.declare(line.source.text(name), policy);
            Ok(())
        }
        ItemKind::Append { chain, rule } => append(t, line, chain, rule),
        _ => {
            tokenize_into(line.text, words)?;
            command(t, line, words)
        }
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
    line: &LineRef<'_, '_>,
    words: &[Cow<'_, str>],
) -> Result<(), ParseErrorKind> {
    let verb = &*words[0];
    let chain = words.get(1).map(|w| &**w);
    match (verb, chain) {
        ("-A" | "--append", Some(chain)) => {
            let rule =
                parse_rule(&words[2..], line.source, &mut Vec::new()).map(|(matches, target)| {
                    Rule::new(line.number, line.source.text(line.text), matches, target)
                });
            return append(t, line, chain, rule);
        }
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

/// Adds the rule of an `-A CHAIN ...` line (parsed, or why it could not be).
fn append(
    t: &mut OpenTable,
    line: &LineRef<'_, '_>,
    chain: &str,
    rule: Result<Rule, String>,
) -> Result<(), ParseErrorKind> {
    let index = chain_index(t, line.source, chain)?;
    let rule = rule.map_err(|reason| ParseErrorKind::BadRule {
        chain: chain.to_string(),
        reason,
    })?;
    t.table.chains_mut()[index].rules.push(rule);
    Ok(())
}

/// Adds the rules a run of `-A` lines gave one chain.
fn append_group(
    t: &mut OpenTable,
    source: &TextSource,
    group: Group<'_>,
) -> Result<(), ParseError> {
    let index = chain_index(t, source, group.chain).map_err(|kind| ParseError {
        line: group.first_line,
        kind,
    })?;
    let rules = &mut t.table.chains_mut()[index].rules;
    if rules.is_empty() {
        *rules = group.rules;
    } else {
        rules.extend(group.rules);
    }
    Ok(())
}

/// The position of the chain an `-A` line appends to; a built-in chain is declared on
/// first use.
fn chain_index(
    t: &mut OpenTable,
    source: &TextSource,
    chain: &str,
) -> Result<usize, ParseErrorKind> {
    let chains = t.table.chains();
    let cached = t
        .recent_chains
        .iter()
        .flatten()
        .copied()
        .find(|&i| &*chains[i].name == chain);
    let index = match cached.or_else(|| t.table.position(chain)) {
        Some(i) => i,
        None if builtin_chains(t.kind).contains(&chain) => {
            t.table.declare(source.text(chain), Some(Policy::Accept))
        }
        None => return Err(ParseErrorKind::UndeclaredChain(chain.to_string())),
    };
    if t.recent_chains[0] != Some(index) {
        t.recent_chains.copy_within(0..3, 1);
        t.recent_chains[0] = Some(index);
    }
    Ok(index)
}

#[cfg(test)]
pub(crate) mod tests {
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

    #[test]
    fn newlines_are_counted_in_every_position() {
        for text in [
            "",
            "\n",
            "a\nb\n\n\u{e9}\n",
            "0123456\n89\n\n\n\n\n\n\n\x0b\u{10a}\n",
        ] {
            let expected = text.bytes().filter(|&b| b == b'\n').count();
            assert_eq!(count_newlines(text.as_bytes()), expected, "{text:?}");
        }
    }

    #[test]
    fn runs_of_appends_keep_order_across_declarations() {
        let text = "*filter\n:X - [0:0]\n:Y - [0:0]\n-A X -j ACCEPT\n-A INPUT -j X\n\
                    -A X -j DROP\n:X - [0:0]\n-A X -j RETURN\n-A Y -j X\n-A X -j DROP\nCOMMIT\n";
        let rs = Ruleset::parse(text).unwrap();
        let lines = |c| {
            let chain = rs.chain(TableKind::Filter, c).unwrap();
            chain.rules.iter().map(|r| r.line).collect::<Vec<_>>()
        };
        assert_eq!(lines("X"), [8, 10]);
        assert_eq!(lines("INPUT"), [5]);
        assert_eq!(lines("Y"), [9]);
        let table = rs.table(TableKind::Filter).unwrap();
        let names: Vec<_> = table.chains().iter().map(|c| c.name.to_string()).collect();
        assert_eq!(names, ["X", "Y", "INPUT"]);
        let err = Ruleset::parse(
            "*filter\n:X - [0:0]\n-A X -j ACCEPT\n-A NOPE -j DROP\n-A X -j DROP\nCOMMIT\n",
        )
        .unwrap_err();
        assert_eq!(
            (err.line, err.kind),
            (4, ParseErrorKind::UndeclaredChain("NOPE".into()))
        );
    }

    /// A text big enough to be parsed in chunks: `rules` rules in one nat chain.
    /// A nat table with `rules` service rules, about 150 bytes each.
    pub(crate) fn big_nat(rules: usize) -> String {
        let mut text = String::from("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-A - [0:0]\n");
        for i in 0..rules {
            text.push_str(&format!(
                "-A KUBE-SERVICES -m comment --comment \"ns/svc{i}:p80 cluster IP\" -m tcp -p tcp -d 10.96.{}.{} --dport 80 -j KUBE-SVC-A\n",
                i / 250,
                i % 250
            ));
        }
        text.push_str("COMMIT\n");
        text
    }

    #[test]
    fn large_texts_keep_rule_order_and_line_numbers() {
        let text = big_nat(20_000);
        assert!(text.len() > 2 * PARALLEL_MIN_BYTES);
        let rs = Ruleset::parse(&text).unwrap();
        let rules = &rs.chain(TableKind::Nat, "KUBE-SERVICES").unwrap().rules;
        assert_eq!(rules.len(), 20_000);
        for (i, rule) in rules.iter().enumerate() {
            assert_eq!(rule.line, i + 4);
            assert_eq!(
                rule.comment(),
                Some(format!("ns/svc{i}:p80 cluster IP").as_str())
            );
        }
    }

    #[test]
    fn large_texts_report_the_first_bad_line() {
        let text = big_nat(20_000);
        let mut lines: Vec<&str> = text.lines().collect();
        lines[15_000] = "-A KUBE-SERVICES -s not-an-address -j KUBE-SVC-A";
        lines[18_000] = "-A NOPE -j ACCEPT";
        let err = Ruleset::parse(&lines.join("\n")).unwrap_err();
        assert_eq!(err.line, 15_001);
        lines[15_000] = "-A KUBE-SERVICES -m comment --comment \"open";
        let err = Ruleset::parse(&lines.join("\n")).unwrap_err();
        assert_eq!(err.line, 15_001);
        assert!(matches!(err.kind, ParseErrorKind::Tokenize(_)));
        lines[15_000] = "-A KUBE-SERVICES -j ACCEPT";
        let err = Ruleset::parse(&lines.join("\n")).unwrap_err();
        assert_eq!(
            (err.line, err.kind),
            (18_001, ParseErrorKind::UndeclaredChain("NOPE".into()))
        );
        let unfinished = text.trim_end().strip_suffix("COMMIT").unwrap();
        let err = Ruleset::parse(unfinished).unwrap_err();
        assert_eq!(
            (err.line, err.kind),
            (20_003, ParseErrorKind::MissingCommit("nat".into()))
        );
    }

    #[test]
    fn large_dual_stack_dump_splits_at_the_separator() {
        let v4 = big_nat(10_000);
        let text = format!("{v4}{IP6TABLES_SEPARATOR}\n{}", big_nat(10_000));
        let dual = DualStackRuleset::parse(&text).unwrap();
        assert_eq!(dual.ipv4.rule_count(), 10_000);
        let v6 = &dual
            .ipv6
            .chain(TableKind::Nat, "KUBE-SERVICES")
            .unwrap()
            .rules;
        assert_eq!(v6.len(), 10_000);
        assert_eq!(v6[0].line, 10_009);
        let unfinished = format!(
            "{}\n{IP6TABLES_SEPARATOR}\n{}",
            v4.trim_end().strip_suffix("COMMIT").unwrap().trim_end(),
            big_nat(10_000)
        );
        let err = DualStackRuleset::parse(&unfinished).unwrap_err();
        assert_eq!(
            (err.line, err.kind),
            (10_003, ParseErrorKind::MissingCommit("nat".into()))
        );
        assert_eq!(Ruleset::parse(&text).unwrap().rule_count(), 10_000);
    }
}
