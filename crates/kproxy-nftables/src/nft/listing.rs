//! Parses `nft list ruleset` / `nft list table` output (the nested, human-readable form
//! the kernel hands back) into a [`RulesetState`]. Tables of families kproxy does not use
//! (`inet`, `arp`, `bridge`, `netdev`) are skipped.

use super::objects::{BaseChain, Chain, ChainType, Family, Hook, Map, Rule, Set};
use super::parse::{
    parse_element, parse_priority, parse_seconds, split_outside_quotes, split_trailing_comment,
    split_word, unquote,
};
use super::state::{ChainState, RulesetState, TableState};

/// Parses listing text.
pub fn parse_listing(text: &str) -> Result<RulesetState, String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut state = RulesetState::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["table", family, name, "{"] => {
                let end = block_end(&lines, i).ok_or("unterminated table")?;
                if let Some(family) = Family::from_keyword(family) {
                    let table =
                        parse_table(&lines[i..end]).map_err(|e| format!("table {name}: {e}"))?;
                    state.set_table(family, name, Some(table));
                }
                i = end + 1;
            }
            _ => return Err(format!("unexpected line {line:?}")),
        }
    }
    Ok(state)
}

/// Index of the line closing the block opened just before `start`.
fn block_end(lines: &[&str], start: usize) -> Option<usize> {
    let mut depth = 1i32;
    for (offset, line) in lines[start..].iter().enumerate() {
        depth += brace_delta(line);
        if depth == 0 {
            return Some(start + offset);
        }
    }
    None
}

fn brace_delta(line: &str) -> i32 {
    let (mut quoted, mut delta) = (false, 0);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => delta += 1,
            '}' if !quoted => delta -= 1,
            _ => {}
        }
    }
    delta
}

fn parse_table(lines: &[&str]) -> Result<TableState, String> {
    let mut table = TableState::default();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let (word, rest) = split_word(line);
        match word {
            "" => {}
            "comment" => table.comment = Some(unquote(rest)?),
            "set" | "map" | "chain" => {
                let name = rest.trim_end_matches('{').trim().to_string();
                let end =
                    block_end(lines, i).ok_or_else(|| format!("unterminated {word} {name}"))?;
                let body = &lines[i..end];
                match word {
                    "chain" => {
                        let chain = parse_chain(&name, body)?;
                        table.chains.insert(name, chain);
                    }
                    _ => parse_container(word, &name, body, &mut table)?,
                }
                i = end + 1;
            }
            "flowtable" | "counter" | "quota" | "ct" | "limit" | "secmark" | "synproxy" => {
                i = block_end(lines, i).map_or(lines.len(), |e| e + 1);
            }
            _ => return Err(format!("unexpected line {line:?}")),
        }
    }
    Ok(table)
}

fn parse_chain(name: &str, body: &[&str]) -> Result<ChainState, String> {
    let mut chain = Chain::regular(name);
    let mut rules = Vec::new();
    for line in body {
        let (word, rest) = split_word(line);
        if word.is_empty() {
            continue;
        }
        if word == "type" && line.contains(" hook ") {
            chain.base = Some(parse_base(line)?);
        } else if word == "comment" {
            chain.comment = Some(unquote(rest)?);
        } else {
            let text = line.split(" # handle ").next().unwrap_or(line);
            let (body, comment) = split_trailing_comment(text)?;
            rules.push(Rule {
                chain: name.to_string(),
                body,
                comment,
            });
        }
    }
    Ok(ChainState { chain, rules })
}

fn parse_base(line: &str) -> Result<BaseChain, String> {
    let decl = line.split(';').next().unwrap_or(line);
    let words: Vec<&str> = decl.split_whitespace().collect();
    let [_, kind, "hook", hook, "priority", priority @ ..] = words.as_slice() else {
        return Err(format!("bad base chain declaration {line:?}"));
    };
    Ok(BaseChain {
        kind: match *kind {
            "filter" => ChainType::Filter,
            "nat" => ChainType::Nat,
            other => return Err(format!("unsupported chain type {other:?}")),
        },
        hook: Hook::from_keyword(hook).ok_or_else(|| format!("unknown hook {hook:?}"))?,
        priority: parse_priority(&priority.join(" "))?,
    })
}

fn parse_container(
    kind: &str,
    name: &str,
    body: &[&str],
    table: &mut TableState,
) -> Result<(), String> {
    let mut key_type = String::new();
    let mut flags = Vec::new();
    let mut timeout = None;
    let mut comment = None;
    let mut elements_text = String::new();
    let mut in_elements = false;
    for line in body {
        if in_elements {
            elements_text.push(' ');
            elements_text.push_str(line);
            continue;
        }
        let (word, rest) = split_word(line);
        match word {
            "type" | "typeof" => key_type = rest.to_string(),
            "flags" => flags = rest.split(',').map(|f| f.trim().to_string()).collect(),
            "timeout" => timeout = Some(parse_seconds(rest)?),
            "comment" => comment = Some(unquote(rest)?),
            "elements" => {
                in_elements = true;
                elements_text.push_str(rest.trim_start_matches('=').trim());
            }
            _ => {}
        }
    }
    let entries = table.elements.entry(name.to_string()).or_default();
    let inner = elements_text
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}');
    for text in split_outside_quotes(inner, ',') {
        if !text.trim().is_empty() {
            let e = parse_element(name, text)?;
            entries.insert(e.key.clone(), e);
        }
    }
    if kind == "map" {
        let (k, v) = key_type
            .split_once(" : ")
            .ok_or_else(|| format!("map {name} without value type"))?;
        table.maps.insert(
            name.to_string(),
            Map {
                name: name.to_string(),
                key_type: k.trim().to_string(),
                value_type: v.trim().to_string(),
                flags,
                comment,
            },
        );
    } else {
        table.sets.insert(
            name.to_string(),
            Set {
                name: name.to_string(),
                key_type,
                flags,
                timeout,
                comment,
            },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = r#"table ip kube-proxy {
	comment "rules for kube-proxy"
	set cluster-ips {
		type ipv4_addr
		comment "Active ClusterIPs"
		elements = { 172.30.0.41, 172.30.0.42 }
	}

	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"
		elements = { 172.30.0.41 . tcp . 80 : goto service-A,
			     172.30.0.42 . tcp . 8080 comment "ns/x:p" : drop }
	}

	set affinity-X {
		type ipv4_addr
		size 65535
		flags dynamic,timeout
		timeout 3h
	}

	chain filter-prerouting-pre-dnat {
		type filter hook prerouting priority dstnat - 10; policy accept;
		ct state new jump firewall-check
	}

	chain reject-chain {
		comment "helper for @no-endpoint-services / @no-endpoint-nodeports"
		reject
	}

	chain service-A {
		ip saddr 10.0.0.0/8 goto service-A comment "short-circuit pod traffic"
	}
}
table inet other {
	chain x {
		type filter hook input priority filter; policy accept;
	}
}
"#;

    #[test]
    fn parses_kernel_listing() {
        let state = parse_listing(LISTING).expect("parses");
        let table = state.table(Family::Ip, "kube-proxy").expect("table");
        assert_eq!(table.comment.as_deref(), Some("rules for kube-proxy"));
        assert_eq!(table.elements["cluster-ips"].len(), 2);
        let dropped = &table.elements["service-ips"]["172.30.0.42 . tcp . 8080"];
        assert_eq!(dropped.value.as_deref(), Some("drop"));
        assert_eq!(dropped.comment.as_deref(), Some("ns/x:p"));
        assert_eq!(table.sets["affinity-X"].timeout, Some(10800));
        let base = table.chains["filter-prerouting-pre-dnat"]
            .chain
            .base
            .expect("base");
        assert_eq!(base.priority, -110);
        assert_eq!(table.chains["reject-chain"].rules[0].body, "reject");
        let rule = &table.chains["service-A"].rules[0];
        assert_eq!(rule.comment.as_deref(), Some("short-circuit pod traffic"));
        assert_eq!(state.tables().count(), 1);
    }
}
