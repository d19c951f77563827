//! Parses the command text a [`Transaction`](super::Transaction) renders (`add chain ...`,
//! `delete element ...`) back into typed operations. The fake runner, the tracer and the
//! conformance harness all read rulesets through this one parser.

use super::objects::{
    BaseChain, Chain, ChainType, Element, Family, Hook, Map, Object, Rule, Set, Table,
};
use super::transaction::{Named, Operation};

/// A parse error with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// The line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// One parsed command: which table it addresses, and the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The family.
    pub family: Family,
    /// The table name.
    pub table: String,
    /// The operation.
    pub op: Operation,
}

/// Parses command text; blank lines and `#` comments are skipped.
pub fn parse_commands(text: &str) -> Result<Vec<Command>, ParseError> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut commands = parse_line(line).map_err(|message| ParseError {
            line: index + 1,
            message,
        })?;
        out.append(&mut commands);
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<Vec<Command>, String> {
    let (verb, rest) = split_word(line);
    let (kind, rest) = split_word(rest);
    let (family_word, rest) = split_word(rest);
    let (table, rest) = split_word(rest);
    let family = Family::from_keyword(family_word)
        .ok_or_else(|| format!("unknown family {family_word:?}"))?;
    if table.is_empty() {
        return Err("missing table name".into());
    }
    let ops = match verb {
        "add" | "create" => parse_object(kind, rest)?
            .into_iter()
            .map(|o| {
                if verb == "add" {
                    Operation::Add(Box::new(o))
                } else {
                    Operation::Create(Box::new(o))
                }
            })
            .collect(),
        "flush" => vec![Operation::Flush(named(kind, rest)?)],
        "delete" if kind == "element" => parse_elements(rest)?
            .into_iter()
            .map(|e| Operation::DeleteElement(Box::new(e)))
            .collect(),
        "delete" => vec![Operation::Delete(named(kind, rest)?)],
        _ => return Err(format!("unsupported command {verb:?} {kind:?}")),
    };
    Ok(ops
        .into_iter()
        .map(|op| Command {
            family,
            table: table.to_string(),
            op,
        })
        .collect())
}

fn named(kind: &str, rest: &str) -> Result<Named, String> {
    let name = rest.trim().to_string();
    match kind {
        "table" => Ok(Named::Table),
        "chain" | "set" | "map" if name.is_empty() || name.contains(' ') => {
            Err(format!("bad {kind} name {name:?}"))
        }
        "chain" => Ok(Named::Chain(name)),
        "set" => Ok(Named::Set(name)),
        "map" => Ok(Named::Map(name)),
        _ => Err(format!("cannot flush or delete a {kind:?}")),
    }
}

fn parse_object(kind: &str, rest: &str) -> Result<Vec<Object>, String> {
    Ok(match kind {
        "table" => vec![Object::Table(Table {
            comment: properties(rest)?.comment,
        })],
        "chain" => vec![Object::Chain(parse_chain(rest)?)],
        "rule" => vec![Object::Rule(parse_rule(rest)?)],
        "set" => vec![Object::Set(parse_set(rest)?)],
        "map" => vec![Object::Map(parse_map(rest)?)],
        "element" => parse_elements(rest)?
            .into_iter()
            .map(Object::Element)
            .collect(),
        _ => return Err(format!("unknown object type {kind:?}")),
    })
}

/// The `{ key value ; ... }` properties of a table, chain, set or map.
#[derive(Default)]
struct Properties {
    type_: Option<String>,
    hook: Option<String>,
    priority: Option<String>,
    flags: Vec<String>,
    timeout: Option<u32>,
    comment: Option<String>,
}

fn properties(text: &str) -> Result<Properties, String> {
    let text = text.trim();
    let mut props = Properties::default();
    if text.is_empty() {
        return Ok(props);
    }
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| format!("expected {{ ... }}, found {text:?}"))?;
    for part in split_outside_quotes(inner, ';') {
        let part = part.trim();
        let (key, value) = split_word(part);
        match key {
            "" => {}
            "type" => parse_type_property(value, &mut props),
            "flags" => props.flags = value.split(',').map(|f| f.trim().to_string()).collect(),
            "timeout" => props.timeout = Some(parse_seconds(value)?),
            "comment" => props.comment = Some(unquote(value)?),
            "policy" | "size" => {}
            _ => return Err(format!("unknown property {key:?}")),
        }
    }
    Ok(props)
}

fn parse_type_property(value: &str, props: &mut Properties) {
    match value.split_once(" hook ") {
        Some((kind, hook_prio)) => {
            props.type_ = Some(kind.trim().to_string());
            let (hook, prio) = split_word(hook_prio);
            props.hook = Some(hook.to_string());
            props.priority = prio.strip_prefix("priority").map(|p| p.trim().to_string());
        }
        None => props.type_ = Some(value.trim().to_string()),
    }
}

fn parse_chain(rest: &str) -> Result<Chain, String> {
    let (name, body) = split_word(rest);
    let props = properties(body)?;
    let base = match (&props.type_, &props.hook) {
        (Some(kind), Some(hook)) => Some(BaseChain {
            kind: match kind.as_str() {
                "filter" => ChainType::Filter,
                "nat" => ChainType::Nat,
                other => return Err(format!("unsupported chain type {other:?}")),
            },
            hook: Hook::from_keyword(hook).ok_or_else(|| format!("unknown hook {hook:?}"))?,
            priority: parse_priority(props.priority.as_deref().unwrap_or("0"))?,
        }),
        _ => None,
    };
    Ok(Chain {
        name: name.to_string(),
        base,
        comment: props.comment,
    })
}

/// Parses a chain priority: a number, a standard name, or `name +/- number`.
pub fn parse_priority(text: &str) -> Result<i32, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let named = |w: &str| -> Result<i32, String> {
        Ok(match w {
            "raw" => -300,
            "mangle" => -150,
            "dstnat" => -100,
            "filter" => 0,
            "security" => 50,
            "srcnat" => 100,
            _ => w.parse().map_err(|_| format!("bad priority {text:?}"))?,
        })
    };
    match words.as_slice() {
        [one] => named(one),
        [base, sign, n] => {
            let n: i32 = n.parse().map_err(|_| format!("bad priority {text:?}"))?;
            match *sign {
                "+" => Ok(named(base)? + n),
                "-" => Ok(named(base)? - n),
                _ => Err(format!("bad priority {text:?}")),
            }
        }
        _ => Err(format!("bad priority {text:?}")),
    }
}

fn parse_rule(rest: &str) -> Result<Rule, String> {
    let (chain, body) = split_word(rest);
    if body.is_empty() {
        return Err("rule without body".into());
    }
    let (body, comment) = split_trailing_comment(body)?;
    Ok(Rule {
        chain: chain.to_string(),
        body,
        comment,
    })
}

/// Splits `body comment "text"` into the body and the comment.
pub fn split_trailing_comment(text: &str) -> Result<(String, Option<String>), String> {
    let text = text.trim();
    if text.ends_with('"') {
        if let Some(at) = text.rfind(" comment \"") {
            let comment = unquote(&text[at + " comment ".len()..])?;
            return Ok((text[..at].trim_end().to_string(), Some(comment)));
        }
    }
    Ok((text.to_string(), None))
}

fn parse_set(rest: &str) -> Result<Set, String> {
    let (name, body) = split_word(rest);
    let props = properties(body)?;
    Ok(Set {
        name: name.to_string(),
        key_type: props.type_.ok_or("set without type")?,
        flags: props.flags,
        timeout: props.timeout,
        comment: props.comment,
    })
}

fn parse_map(rest: &str) -> Result<Map, String> {
    let (name, body) = split_word(rest);
    let props = properties(body)?;
    let type_ = props.type_.ok_or("map without type")?;
    let (key_type, value_type) = type_
        .split_once(" : ")
        .ok_or_else(|| format!("map type without ':' {type_:?}"))?;
    Ok(Map {
        name: name.to_string(),
        key_type: key_type.trim().to_string(),
        value_type: value_type.trim().to_string(),
        flags: props.flags,
        comment: props.comment,
    })
}

fn parse_elements(rest: &str) -> Result<Vec<Element>, String> {
    let (container, body) = split_word(rest);
    let inner = body
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| format!("expected {{ elements }}, found {body:?}"))?;
    split_outside_quotes(inner, ',')
        .into_iter()
        .filter(|e| !e.trim().is_empty())
        .map(|e| parse_element(container, e))
        .collect()
}

/// Parses one element: `key [comment "text"] [: value]`.
pub fn parse_element(container: &str, text: &str) -> Result<Element, String> {
    let text = text.trim();
    let (before_value, value) = match find_outside_quotes(text, " : ") {
        Some(at) => (&text[..at], Some(text[at + 3..].trim().to_string())),
        None => (text, None),
    };
    let (key, comment) = split_trailing_comment(before_value)?;
    if key.is_empty() {
        return Err(format!("empty element key in {text:?}"));
    }
    Ok(Element {
        container: container.to_string(),
        key,
        comment,
        value,
    })
}

/// Parses a timeout (`10800s`, `3h`, `1h30m`, `90`).
pub fn parse_seconds(text: &str) -> Result<u32, String> {
    let text = text.trim();
    if let Ok(n) = text.parse() {
        return Ok(n);
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number
            .parse()
            .map_err(|_| format!("bad duration {text:?}"))?;
        number.clear();
        total += n * match c {
            'd' => 86400,
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("bad duration {text:?}")),
        };
    }
    if !number.is_empty() {
        return Err(format!("bad duration {text:?}"));
    }
    u32::try_from(total).map_err(|_| format!("duration too long {text:?}"))
}

/// Removes the quotes around a string literal.
pub fn unquote(text: &str) -> Result<String, String> {
    text.trim()
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|t| !t.contains('"'))
        .map(str::to_string)
        .ok_or_else(|| format!("expected a quoted string, found {text:?}"))
}

/// Splits off the first space-separated word.
pub fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(at) => (&text[..at], text[at..].trim_start()),
        None => (text, ""),
    }
}

/// Splits at `sep` where it is outside double quotes and braces.
pub fn split_outside_quotes(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut depth, mut start) = (false, 0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth -= 1,
            c if c == sep && !quoted && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn find_outside_quotes(text: &str, needle: &str) -> Option<usize> {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if !quoted && text[i..].starts_with(needle) {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::Transaction;

    #[test]
    fn round_trips_what_transactions_render() {
        let text = "add table ip kube-proxy { comment \"rules for kube-proxy\" ; }\n\
add chain ip kube-proxy filter-input { type filter hook input priority 0 ; }\n\
add chain ip kube-proxy reject-chain { comment \"helper\" ; }\n\
add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment \"x\" ; }\n\
add set ip kube-proxy affinity-a { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }\n\
add rule ip kube-proxy external-x ip saddr 10.0.0.0/8 goto service-x comment \"short-circuit pod traffic\"\n\
add element ip kube-proxy no-endpoint-services { 1.2.3.4 . tcp . 80 comment \"ns2/svc2:p80\" : drop }\n\
delete element ip kube-proxy service-ips { 1.2.3.4 . tcp . 80 }\n\
flush chain ip kube-proxy services\n\
delete chain ip kube-proxy services\n";
        let commands = parse_commands(text).expect("parses");
        let mut tx = Transaction::new(Family::Ip, "kube-proxy");
        for c in commands {
            tx.push(c.op);
        }
        assert_eq!(tx.render(), text);
    }

    #[test]
    fn priorities_and_durations() {
        assert_eq!(parse_priority("dstnat - 10"), Ok(-110));
        assert_eq!(parse_priority("srcnat"), Ok(100));
        assert_eq!(parse_priority("-110"), Ok(-110));
        assert_eq!(parse_seconds("3h"), Ok(10800));
        assert_eq!(parse_seconds("1h30m5s"), Ok(5405));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_commands("add rule ipx t c drop").is_err());
        assert!(parse_commands("frobnicate chain ip t c").is_err());
        assert!(parse_commands("add element ip t s 1.2.3.4").is_err());
    }
}
