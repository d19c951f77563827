//! `iptables-restore --noflush` input read into one [`Section`] per `*table … COMMIT`,
//! each rule already encoded, so that nothing reaches the kernel unless all of it can.

use crate::args::split_rule_args;
use crate::layout::{Family, CHAIN_NAME_MAX};
use crate::rule::{encode_rule, EncodedRule};
use crate::{Result, XtError};
use std::ops::Range;

/// One command of a section, in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `:CHAIN POLICY [p:b]`: create the chain, or flush it if it exists (`--noflush`).
    Declare {
        /// The chain.
        chain: String,
        /// `-` for user chains, `ACCEPT`/`DROP` for built-in ones.
        policy: String,
    },
    /// `-N CHAIN`.
    Create(String),
    /// `-F CHAIN`.
    Flush(String),
    /// `-X CHAIN`.
    DeleteChain(String),
    /// `-A CHAIN rule`.
    Append(String, EncodedRule),
    /// `-I CHAIN [N] rule` (positions from 1).
    Insert(String, usize, EncodedRule),
    /// `-D CHAIN rule`.
    Delete(String, EncodedRule),
}

/// The commands between `*table` and `COMMIT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The table (`nat`, `filter`, ...).
    pub table: String,
    /// Where the section's lines are in the input, `*table` to `COMMIT`.
    pub span: Range<usize>,
    /// Its commands.
    pub commands: Vec<Command>,
}

/// Restore input read a line at a time, as it arrives.
#[derive(Debug)]
pub struct Parser {
    family: Family,
    sections: Vec<Section>,
    open: Option<Section>,
    /// Bytes and lines read so far.
    at: usize,
    lines: usize,
}

impl Parser {
    /// A parser for restore input of `family`.
    pub fn new(family: Family) -> Parser {
        Parser {
            family,
            sections: Vec::new(),
            open: None,
            at: 0,
            lines: 0,
        }
    }

    /// Takes the next line, with its newline if it has one.
    pub fn line(&mut self, raw: &str) -> Result<()> {
        let start = self.at;
        self.at += raw.len();
        self.lines += 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return Ok(());
        }
        let number = self.lines;
        let at_line = |e: XtError| match e {
            XtError::Invalid(m) => XtError::Invalid(format!("line {number}: {m}")),
            other => other,
        };
        if let Some(table) = trimmed.strip_prefix('*') {
            if self.open.is_some() {
                return Err(at_line(XtError::Invalid("table without COMMIT".into())));
            }
            self.open = Some(Section {
                table: table.to_string(),
                span: start..start,
                commands: Vec::new(),
            });
            return Ok(());
        }
        let Some(section) = self.open.as_mut() else {
            return Err(at_line(XtError::Invalid(format!(
                "{trimmed:?} outside a table"
            ))));
        };
        if trimmed == "COMMIT" {
            section.span.end = self.at;
            self.sections.extend(self.open.take());
            return Ok(());
        }
        let command = parse_command(self.family, trimmed).map_err(at_line)?;
        section.commands.push(command);
        Ok(())
    }

    /// The sections, once the input has ended.
    pub fn finish(self) -> Result<Vec<Section>> {
        if self.open.is_some() {
            return Err(XtError::Invalid("input ends without COMMIT".into()));
        }
        Ok(self.sections)
    }
}

/// Reads the whole of `text`, restore input for `family`.
pub fn parse(family: Family, text: &str) -> Result<Vec<Section>> {
    let mut parser = Parser::new(family);
    for raw in text.split_inclusive('\n') {
        parser.line(raw)?;
    }
    parser.finish()
}

fn parse_command(family: Family, line: &str) -> Result<Command> {
    if let Some(declaration) = line.strip_prefix(':') {
        let mut words = declaration.split_whitespace();
        let chain = checked_chain(words.next().unwrap_or_default())?;
        let policy = words
            .next()
            .ok_or_else(|| XtError::Invalid(format!("no policy for {chain}")))?;
        return Ok(Command::Declare {
            chain,
            policy: policy.to_string(),
        });
    }
    if line.starts_with('[') {
        return Err(XtError::Unsupported("rule counters".into()));
    }
    let args = split_rule_args(line);
    let (op, chain, rest) = match args.as_slice() {
        [op, chain, rest @ ..] => (op.as_str(), checked_chain(chain)?, rest),
        _ => return Err(XtError::Unsupported(format!("line {line:?}"))),
    };
    let no_more = |command: Command| {
        if rest.is_empty() {
            Ok(command)
        } else {
            Err(XtError::Unsupported(format!("line {line:?}")))
        }
    };
    match op {
        "-A" | "--append" => Ok(Command::Append(chain, encode_rule(family, rest)?)),
        "-D" | "--delete" => match rest {
            [number] if number.bytes().all(|b| b.is_ascii_digit()) => {
                Err(XtError::Unsupported("delete by number".into()))
            }
            _ => Ok(Command::Delete(chain, encode_rule(family, rest)?)),
        },
        "-I" | "--insert" => match rest.split_first() {
            Some((number, rule)) if number.bytes().all(|b| b.is_ascii_digit()) => {
                let position = number
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| XtError::Invalid(format!("bad rule number {number}")))?;
                Ok(Command::Insert(chain, position, encode_rule(family, rule)?))
            }
            _ => Ok(Command::Insert(chain, 1, encode_rule(family, rest)?)),
        },
        "-N" | "--new-chain" => no_more(Command::Create(chain)),
        "-F" | "--flush" => no_more(Command::Flush(chain)),
        "-X" | "--delete-chain" => no_more(Command::DeleteChain(chain)),
        _ => Err(XtError::Unsupported(format!("command {op}"))),
    }
}

fn checked_chain(name: &str) -> Result<String> {
    if name.is_empty()
        || name.len() > CHAIN_NAME_MAX
        || name.starts_with(['-', '!'])
        || name
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(XtError::Invalid(format!("bad chain name {name:?}")));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INPUT: &str = "*filter\n:KUBE-SERVICES - [0:0]\nCOMMIT\n*nat\n:KUBE-SVC-A - [0:0]\n-A KUBE-SVC-A -j KUBE-SEP-B\n-I KUBE-SERVICES 1 -j KUBE-SVC-A\n-D KUBE-SERVICES -j KUBE-SVC-C\n-X KUBE-SEP-OLD\nCOMMIT\n";

    #[test]
    fn sections_hold_their_commands_and_spans() {
        let sections = parse(Family::V4, INPUT).expect("parse");
        assert_eq!(sections.len(), 2);
        assert_eq!(sections[0].table, "filter");
        assert_eq!(
            &INPUT[sections[0].span.clone()],
            "*filter\n:KUBE-SERVICES - [0:0]\nCOMMIT\n"
        );
        assert_eq!(sections[1].commands.len(), 5);
        assert!(matches!(sections[1].commands[2], Command::Insert(_, 1, _)));
        assert_eq!(
            sections[1].commands[4],
            Command::DeleteChain("KUBE-SEP-OLD".into())
        );
    }

    #[test]
    fn broken_input_is_refused_with_its_line() {
        assert_eq!(
            parse(
                Family::V4,
                "*nat\n-A KUBE-X -d 300.0.0.1 -j ACCEPT\nCOMMIT\n"
            ),
            Err(XtError::Invalid("line 2: bad address \"300.0.0.1\"".into()))
        );
        assert!(parse(Family::V4, "*nat\n:KUBE-X - [0:0]\n").is_err());
        assert!(matches!(
            parse(Family::V4, "*nat\n-R KUBE-X 1 -j ACCEPT\nCOMMIT\n"),
            Err(XtError::Unsupported(_))
        ));
    }
}
