//! Packet field values and how set elements, anonymous sets and literals match them.

use crate::nft::TableState;
use ipnet::IpNet;
use std::net::IpAddr;

/// A value a selector reads from the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An address.
    Addr(IpAddr),
    /// A number (ports, marks, numgen results).
    Num(u64),
    /// A word (`tcp`, `local`, `new`, an interface name).
    Word(String),
}

fn proto_number(name: &str) -> Option<u64> {
    match name {
        "tcp" => Some(6),
        "udp" => Some(17),
        "sctp" => Some(132),
        "icmp" => Some(1),
        "icmpv6" => Some(58),
        _ => None,
    }
}

/// Parses a number in decimal or `0x` hex.
pub fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Whether one element component (`10.0.0.0/8`, `1.2.3.4-1.2.3.9`, `tcp`, `80-90`)
/// matches a value.
pub fn component_matches(component: &str, value: &Value) -> bool {
    let component = component.trim();
    match value {
        Value::Addr(ip) => {
            if let Ok(net) = component.parse::<IpNet>() {
                return net.contains(ip);
            }
            if let Some((lo, hi)) = component.split_once('-') {
                return matches!((parse_ip(lo), parse_ip(hi)), (Some(lo), Some(hi)) if lo <= *ip && *ip <= hi);
            }
            parse_ip(component) == Some(*ip)
        }
        Value::Num(n) => {
            if let Some((lo, hi)) = component.split_once('-') {
                return matches!((parse_number(lo), parse_number(hi)), (Some(lo), Some(hi)) if lo <= *n && *n <= hi);
            }
            parse_number(component).or_else(|| proto_number(component)) == Some(*n)
        }
        Value::Word(w) => {
            if let (Some(a), Some(b)) = (proto_number(w), parse_number(component)) {
                return a == b;
            }
            component.split(',').any(|c| c.trim() == w)
        }
    }
}

/// Whether a concatenated key (`a . b . c`) matches the values.
pub fn key_matches(key: &str, values: &[Value]) -> bool {
    let parts: Vec<&str> = key.split(" . ").collect();
    parts.len() == values.len()
        && parts
            .iter()
            .zip(values)
            .all(|(p, v)| component_matches(p, v))
}

/// Looks up a named set or map: the matching element's value (`Some(None)` for a set
/// member), or `None` when nothing matches.
pub fn lookup_named(table: &TableState, name: &str, values: &[Value]) -> Option<Option<String>> {
    table
        .elements
        .get(name)?
        .values()
        .find(|e| key_matches(&e.key, values))
        .map(|e| e.value.clone())
}

/// Looks up an anonymous set or map written as `a, b` or `k : v, k2 : v2`.
pub fn lookup_anonymous(items: &[String], values: &[Value]) -> Option<Option<String>> {
    for item in items {
        match item.split_once(" : ") {
            Some((key, value)) if key_matches(key, values) => {
                return Some(Some(value.trim().to_string()))
            }
            None if key_matches(item, values) => return Some(None),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components() {
        let ip = Value::Addr("10.1.2.3".parse().expect("ip"));
        assert!(component_matches("10.0.0.0/8", &ip));
        assert!(component_matches("10.1.2.0-10.1.2.9", &ip));
        assert!(!component_matches("10.1.2.4", &ip));
        assert!(component_matches("tcp", &Value::Word("tcp".into())));
        assert!(component_matches("6", &Value::Word("tcp".into())));
        assert!(component_matches("3000-3005", &Value::Num(3001)));
        let values = [ip, Value::Word("tcp".into()), Value::Num(80)];
        assert!(key_matches("10.1.2.3 . tcp . 80", &values));
        assert!(!key_matches("10.1.2.3 . udp . 80", &values));
    }
}
