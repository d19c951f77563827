//! Evaluates rule bodies against a packet, in either spelling nft accepts (what kproxy
//! writes, or what `nft list` prints back).

use super::values::{lookup_anonymous, lookup_named, parse_number, Value};
use crate::nft::TableState;
use std::net::IpAddr;

/// The packet being traced and what the walk has done to it.
#[derive(Debug, Clone)]
pub struct PacketState {
    /// Source address.
    pub src: IpAddr,
    /// Destination address (rewritten after the prerouting DNAT).
    pub dst: IpAddr,
    /// Protocol (`tcp`, `udp`, `sctp`).
    pub protocol: String,
    /// Destination port.
    pub dport: u16,
    /// Addresses `fib ... type local` treats as local.
    pub local_ips: Vec<IpAddr>,
    /// The packet mark.
    pub mark: u64,
}

/// What evaluating one rule asks the walker to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The rule did not match, or matched without a verdict.
    Next,
    /// `jump` to a chain.
    Jump(String),
    /// `goto` a chain.
    Goto(String),
    /// Every branch of a `numgen` map, each a verdict.
    Branches(Vec<String>),
    /// `return`.
    Return,
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
    /// `reject`.
    Reject,
    /// `dnat to` this `ip:port`.
    Dnat(String),
}

/// Splits a rule body into tokens; a trailing comma becomes its own token.
pub fn tokenize(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in body.split_whitespace() {
        match word.strip_suffix(',') {
            Some(w) if !w.is_empty() => {
                out.push(w.to_string());
                out.push(",".to_string());
            }
            _ => out.push(word.to_string()),
        }
    }
    out
}

/// Turns a verdict string (`goto x`, `drop`) into an action.
pub fn verdict_action(verdict: &str) -> Result<Action, String> {
    let words: Vec<&str> = verdict.split_whitespace().collect();
    Ok(match words.as_slice() {
        ["goto", chain] => Action::Goto(chain.to_string()),
        ["jump", chain] => Action::Jump(chain.to_string()),
        ["drop"] => Action::Drop,
        ["accept"] => Action::Accept,
        ["return"] => Action::Return,
        ["reject", ..] => Action::Reject,
        _ => return Err(format!("unsupported verdict {verdict:?}")),
    })
}

struct Cursor<'a> {
    tokens: &'a [String],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.tokens.get(self.pos).map(String::as_str)
    }

    fn next(&mut self) -> Result<&'a str, String> {
        let t = self.peek().ok_or("unexpected end of rule")?;
        self.pos += 1;
        Ok(t)
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.peek() == Some(word) {
            self.pos += 1;
            return true;
        }
        false
    }

    /// A `{ ... }` group as its comma-separated items, or one token.
    fn group(&mut self) -> Result<Vec<String>, String> {
        if !self.eat("{") {
            return Ok(vec![self.next()?.to_string()]);
        }
        let mut items = Vec::new();
        let mut current: Vec<&str> = Vec::new();
        loop {
            match self.next()? {
                "}" => break,
                "," => items.push(std::mem::take(&mut current).join(" ")),
                t => current.push(t),
            }
        }
        if !current.is_empty() {
            items.push(current.join(" "));
        }
        Ok(items)
    }
}

/// Evaluates one rule body.
pub fn eval_rule(
    body: &str,
    table: &TableState,
    packet: &mut PacketState,
) -> Result<Action, String> {
    let tokens = tokenize(body);
    let mut c = Cursor {
        tokens: &tokens,
        pos: 0,
    };
    while let Some(token) = c.peek() {
        match token {
            "jump" | "goto" | "return" | "drop" | "accept" | "reject" => {
                let rest: Vec<&str> = tokens[c.pos..].iter().map(String::as_str).collect();
                return verdict_action(&rest.join(" "));
            }
            "masquerade" | "snat" | "log" => return Ok(Action::Next),
            "dnat" => return dnat(&mut c),
            "update" | "add" => skip_braced(&mut c)?,
            "counter" => skip_counter(&mut c),
            _ => {
                if let Some(action) = match_or_map(&mut c, table, packet)? {
                    return Ok(action);
                }
            }
        }
    }
    Ok(Action::Next)
}

fn dnat(c: &mut Cursor<'_>) -> Result<Action, String> {
    c.next()?;
    if matches!(c.peek(), Some("ip" | "ip6")) {
        c.next()?;
    }
    if !c.eat("to") {
        return Err("dnat without 'to'".into());
    }
    Ok(Action::Dnat(c.next()?.to_string()))
}

fn skip_braced(c: &mut Cursor<'_>) -> Result<(), String> {
    while c.next()? != "}" {}
    Ok(())
}

fn skip_counter(c: &mut Cursor<'_>) {
    c.pos += 1;
    while matches!(c.peek(), Some("packets" | "bytes")) {
        c.pos += 2;
    }
}

/// A packet field, or the random number generator.
enum Selector {
    Field(Value),
    Numgen(u64),
    Mark,
}

fn selector(
    c: &mut Cursor<'_>,
    packet: &PacketState,
    guard: &mut bool,
) -> Result<Selector, String> {
    let first = c.next()?;
    let field = |v| Ok(Selector::Field(v));
    match first {
        "ip" | "ip6" => match c.next()? {
            "saddr" => field(Value::Addr(packet.src)),
            "daddr" => field(Value::Addr(packet.dst)),
            other => Err(format!("unsupported selector {first} {other}")),
        },
        "meta" => match c.next()? {
            "l4proto" => field(Value::Word(packet.protocol.clone())),
            "mark" => Ok(Selector::Mark),
            "iifname" | "oifname" => field(Value::Word(String::new())),
            other => Err(format!("unsupported selector meta {other}")),
        },
        "mark" => Ok(Selector::Mark),
        "iifname" | "oifname" => field(Value::Word(String::new())),
        "th" | "tcp" | "udp" | "sctp" => {
            if first != "th" && first != packet.protocol {
                *guard = false;
            }
            match c.next()? {
                "dport" => field(Value::Num(u64::from(packet.dport))),
                other => Err(format!("unsupported selector {first} {other}")),
            }
        }
        "fib" => {
            let which = c.next()?;
            if !c.eat("type") {
                return Err("fib without 'type'".into());
            }
            let addr = if which == "saddr" {
                packet.src
            } else {
                packet.dst
            };
            let kind = if packet.local_ips.contains(&addr) {
                "local"
            } else {
                "unicast"
            };
            field(Value::Word(kind.to_string()))
        }
        "numgen" => {
            c.eat("random");
            c.eat("mod");
            let n = parse_number(c.next()?).ok_or("numgen without modulus")?;
            Ok(Selector::Numgen(n))
        }
        "ct" => {
            c.eat("state");
            field(Value::Word("new".to_string()))
        }
        other => Err(format!("unsupported expression {other:?}")),
    }
}

/// Evaluates one match (possibly a concatenation compared or looked up) or a mark
/// statement. `Some(action)` ends the rule.
fn match_or_map(
    c: &mut Cursor<'_>,
    table: &TableState,
    packet: &mut PacketState,
) -> Result<Option<Action>, String> {
    let mut guard = true;
    let mut values = Vec::new();
    let mut numgen = None;
    loop {
        match selector(c, packet, &mut guard)? {
            Selector::Field(v) => values.push(v),
            Selector::Mark => {
                if c.peek() == Some("set") {
                    c.next()?;
                    set_mark(c, packet)?;
                    return Ok(None);
                }
                values.push(Value::Num(packet.mark));
            }
            Selector::Numgen(n) => numgen = Some(n),
        }
        if !c.eat(".") {
            break;
        }
    }
    if matches!(c.peek(), Some("and" | "&")) {
        c.next()?;
        let mask = parse_number(c.next()?).ok_or("bad mask")?;
        if let Some(Value::Num(n)) = values.last_mut() {
            *n &= mask;
        }
    }
    if c.eat("vmap") {
        let items = c.group()?;
        return vmap(&items, numgen, table, &values, guard).map(Some);
    }
    let negate = c.eat("!=");
    c.eat("==");
    let items = c.group()?;
    let found = lookup(&items, table, &values)?.is_some();
    if !guard || found == negate {
        return Ok(Some(Action::Next));
    }
    Ok(None)
}

fn lookup(
    items: &[String],
    table: &TableState,
    values: &[Value],
) -> Result<Option<Option<String>>, String> {
    match items {
        [one] if one.starts_with('@') => {
            let name = &one[1..];
            if !table.elements.contains_key(name) {
                return Err(format!("unknown set @{name}"));
            }
            Ok(lookup_named(table, name, values))
        }
        _ => Ok(lookup_anonymous(items, values)),
    }
}

fn vmap(
    items: &[String],
    numgen: Option<u64>,
    table: &TableState,
    values: &[Value],
    guard: bool,
) -> Result<Action, String> {
    if numgen.is_some() {
        let verdicts = items
            .iter()
            .filter_map(|i| i.split_once(" : ").map(|(_, v)| v.trim().to_string()))
            .collect();
        return Ok(Action::Branches(verdicts));
    }
    if !guard {
        return Ok(Action::Next);
    }
    match lookup(items, table, values)? {
        Some(Some(verdict)) => verdict_action(&verdict),
        _ => Ok(Action::Next),
    }
}

fn set_mark(c: &mut Cursor<'_>, packet: &mut PacketState) -> Result<(), String> {
    c.eat("meta");
    if !c.eat("mark") {
        let value = parse_number(c.next()?).ok_or("bad mark value")?;
        packet.mark = value;
        return Ok(());
    }
    let op = c.next()?;
    let value = parse_number(c.next()?).ok_or("bad mark value")?;
    packet.mark = match op {
        "or" | "|" => packet.mark | value,
        "xor" | "^" => packet.mark ^ value,
        "and" | "&" => packet.mark & value,
        other => return Err(format!("unsupported mark operation {other:?}")),
    };
    Ok(())
}
