//! Rule bodies in the forms kproxy's service and endpoint chains use, read from their
//! nft text into expressions. Anything else (another match, a comment, a quoted name)
//! is not read, and the batch goes to `nft` instead.

use super::expr::{Base, Expr, Verdict, REG_1, REG_2, RTN_LOCAL};
use crate::nft::netlink::nfproto;
use crate::nft::Family;
use ipnet::IpNet;
use kproxy_model::Protocol;
use std::net::{IpAddr, SocketAddr};

/// What a rule ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A verdict (`jump`, `goto`, `drop`).
    Verdict(Verdict),
    /// `dnat to address:port` (after a `meta l4proto` match).
    Dnat(SocketAddr),
    /// `numgen random mod N vmap { 0 : v0 , ... }`: the values in key order.
    NumgenMap(Vec<Verdict>),
}

/// A rule body: matches, then its action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleBody {
    /// The match expressions.
    pub matches: Vec<Expr>,
    /// The statement.
    pub action: Action,
}

/// Where the source and destination addresses sit in the family's header, and their size.
fn address_layout(family: Family) -> (u32, u32, u32) {
    match family {
        Family::Ip => (12, 16, 4),
        Family::Ip6 => (8, 24, 16),
    }
}

/// The IP protocol number of `tcp`, `udp` or `sctp`.
pub(super) fn protocol_number(word: &str) -> Option<u8> {
    Protocol::from_lower(word).map(Protocol::number)
}

/// The address in network byte order, as headers and keys hold it.
pub(super) fn address_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// The table family an address belongs in.
pub(super) fn family_of(ip: IpAddr) -> Family {
    if ip.is_ipv4() {
        Family::Ip
    } else {
        Family::Ip6
    }
}

/// A chain name as a bare word: what `nft` would read as one name.
fn chain_name(word: &str) -> Option<String> {
    let plain = !word.is_empty()
        && word.len() < 256
        && !word.starts_with(['"', '@', '$', '{', '}'])
        && word.bytes().all(|b| b.is_ascii_graphic());
    plain.then(|| word.to_string())
}

/// `address` or `network`, matched against the source (or destination) address, as
/// `nft` encodes it: a whole address compared; a byte-aligned prefix loaded and compared
/// on its bytes only; any other prefix masked first.
fn address_match(family: Family, source: bool, negate: bool, word: &str) -> Option<Vec<Expr>> {
    let (saddr, daddr, size) = address_layout(family);
    let offset = if source { saddr } else { daddr };
    let net: IpNet = match word.parse::<IpAddr>() {
        Ok(ip) => IpNet::new(ip, if ip.is_ipv4() { 32 } else { 128 }).ok()?,
        Err(_) => word.parse().ok()?,
    };
    if family_of(net.addr()) != family || net.addr() != net.network() {
        return None;
    }
    let bytes = address_bytes(net.addr());
    let prefix = u32::from(net.prefix_len());
    let load = |len: u32| Expr::Payload {
        base: Base::Network,
        offset,
        len,
    };
    let exprs = if prefix == size * 8 {
        vec![
            load(size),
            Expr::Cmp {
                negate,
                data: bytes,
            },
        ]
    } else if prefix % 8 == 0 && prefix > 0 {
        let len = prefix / 8;
        vec![
            load(len),
            Expr::Cmp {
                negate,
                data: bytes[..len as usize].to_vec(),
            },
        ]
    } else {
        vec![
            load(size),
            Expr::Mask(address_bytes(net.netmask())),
            Expr::Cmp {
                negate,
                data: bytes,
            },
        ]
    };
    Some(exprs)
}

/// Reads the values of `{ 0 : goto a , 1 : goto b }` (the braces' contents).
fn numgen_values(words: &[&str], modulus: usize) -> Option<Vec<Verdict>> {
    let mut values = Vec::with_capacity(modulus);
    for (index, entry) in words.split(|w| *w == ",").enumerate() {
        match entry {
            [key, ":", kind, chain] if key.parse::<usize>().ok()? == index => {
                values.push(verdict(kind, chain)?);
            }
            _ => return None,
        }
    }
    (values.len() == modulus).then_some(values)
}

/// `jump chain` / `goto chain`.
fn verdict(kind: &str, chain: &str) -> Option<Verdict> {
    let chain = chain_name(chain)?;
    match kind {
        "jump" => Some(Verdict::Jump(chain)),
        "goto" => Some(Verdict::Goto(chain)),
        _ => None,
    }
}

/// Reads a rule body of `family`, or `None` when it is not one of the known forms.
pub fn parse_rule(family: Family, body: &str) -> Option<RuleBody> {
    let words: Vec<&str> = body.split_whitespace().collect();
    let mut matches = Vec::new();
    let mut protocol = None;
    let mut at = 0;
    loop {
        match words.get(at..)? {
            [fam, field @ ("saddr" | "daddr"), "!=", "{", value, "}", ..]
                if *fam == family.keyword() =>
            {
                // A one-element set: `nft` compares with the element itself.
                matches.extend(address_match(family, *field == "saddr", true, value)?);
                at += 6;
            }
            [fam, field @ ("saddr" | "daddr"), "!=", value, ..] if *fam == family.keyword() => {
                matches.extend(address_match(family, *field == "saddr", true, value)?);
                at += 4;
            }
            [fam, field @ ("saddr" | "daddr"), value, ..] if *fam == family.keyword() => {
                matches.extend(address_match(family, *field == "saddr", false, value)?);
                at += 3;
            }
            ["meta", "l4proto", word, ..] if protocol.is_none() => {
                let number = protocol_number(word)?;
                matches.push(Expr::MetaL4proto);
                matches.push(Expr::Cmp {
                    negate: false,
                    data: vec![number],
                });
                protocol = Some(number);
                at += 3;
            }
            ["fib", "saddr", "type", "local", ..] => {
                matches.push(Expr::FibSaddrType);
                matches.push(Expr::Cmp {
                    negate: false,
                    data: RTN_LOCAL.to_vec(),
                });
                at += 4;
            }
            ["drop"] => {
                let action = Action::Verdict(Verdict::Drop);
                return Some(RuleBody { matches, action });
            }
            [kind @ ("jump" | "goto"), chain] => {
                let action = Action::Verdict(verdict(kind, chain)?);
                return Some(RuleBody { matches, action });
            }
            ["dnat", "to", target] if protocol.is_some() => {
                let target: SocketAddr = target.parse().ok()?;
                if family_of(target.ip()) != family {
                    return None;
                }
                let action = Action::Dnat(target);
                return Some(RuleBody { matches, action });
            }
            ["numgen", "random", "mod", modulus, "vmap", "{", rest @ .., "}"] => {
                let modulus: usize = modulus.parse().ok()?;
                let values = numgen_values(rest, modulus)?;
                return Some(RuleBody {
                    matches,
                    action: Action::NumgenMap(values),
                });
            }
            _ => return None,
        }
    }
}

/// The expressions that carry out a DNAT to `target` in a `family` table.
pub fn dnat_exprs(family: Family, target: SocketAddr) -> Vec<Expr> {
    vec![
        Expr::Value {
            reg: REG_1,
            data: address_bytes(target.ip()),
        },
        Expr::Value {
            reg: REG_2,
            data: target.port().to_be_bytes().to_vec(),
        },
        Expr::Dnat {
            family: nfproto(family),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(offset: u32, len: u32) -> Expr {
        Expr::Payload {
            base: Base::Network,
            offset,
            len,
        }
    }

    #[test]
    fn the_cluster_ip_masquerade_rule_loads_one_byte_of_a_slash_eight() {
        let body = parse_rule(
            Family::Ip,
            "ip daddr 172.30.0.43 ip saddr != 10.0.0.0/8 jump mark-for-masquerade",
        )
        .expect("known form");
        assert_eq!(
            body.matches,
            vec![
                payload(16, 4),
                Expr::Cmp {
                    negate: false,
                    data: vec![172, 30, 0, 43]
                },
                payload(12, 1),
                Expr::Cmp {
                    negate: true,
                    data: vec![10]
                },
            ]
        );
        assert_eq!(
            body.action,
            Action::Verdict(Verdict::Jump("mark-for-masquerade".into()))
        );
    }

    #[test]
    fn unaligned_prefixes_are_masked_and_ipv6_uses_its_offsets() {
        let body = parse_rule(Family::Ip6, "ip6 saddr != fd00:10::/61 jump m").expect("form");
        assert_eq!(body.matches[0], payload(8, 16));
        let mut mask = vec![0xff; 7];
        mask.push(0xf8);
        mask.extend([0; 8]);
        assert_eq!(body.matches[1], Expr::Mask(mask));
        let slash64 = parse_rule(Family::Ip6, "ip6 saddr fd00:10::/64 goto m").expect("form");
        assert_eq!(slash64.matches[0], payload(8, 8));
    }

    #[test]
    fn endpoint_rules_and_the_numgen_map_are_read() {
        let dnat = parse_rule(Family::Ip6, "meta l4proto tcp dnat to [fd00::9]:80").expect("dnat");
        assert_eq!(dnat.matches.len(), 2);
        assert_eq!(
            dnat.action,
            Action::Dnat("[fd00::9]:80".parse().expect("address"))
        );
        let map = parse_rule(
            Family::Ip,
            "numgen random mod 2 vmap { 0 : goto endpoint-a , 1 : goto endpoint-b }",
        )
        .expect("numgen");
        assert_eq!(
            map.action,
            Action::NumgenMap(vec![
                Verdict::Goto("endpoint-a".into()),
                Verdict::Goto("endpoint-b".into())
            ])
        );
    }

    #[test]
    fn external_and_firewall_chain_rules_are_read() {
        let local = parse_rule(Family::Ip, "fib saddr type local goto service-x").expect("fib");
        assert_eq!(
            local.matches,
            vec![
                Expr::FibSaddrType,
                Expr::Cmp {
                    negate: false,
                    data: vec![2, 0, 0, 0]
                }
            ]
        );
        let firewall =
            parse_rule(Family::Ip, "ip saddr != { 203.0.113.0/25 } drop").expect("firewall");
        assert_eq!(firewall.matches.len(), 3, "load, mask, compare");
        assert_eq!(firewall.action, Action::Verdict(Verdict::Drop));
        let bare = parse_rule(Family::Ip, "jump mark-for-masquerade").expect("bare jump");
        assert!(bare.matches.is_empty());
    }

    #[test]
    fn other_forms_are_left_to_nft() {
        for body in [
            "ip daddr 172.30.0.43 tcp dport 80 jump x",
            "fib daddr type local jump mark-for-masquerade",
            "ip saddr != { 10.0.0.0/8, 10.1.0.0/16 } drop",
            "ip saddr 10.0.0.1 jump x comment \"c\"",
            "ip6 saddr 10.0.0.1 jump x",
            "ip saddr 10.1.2.3/8 jump x",
            "dnat to 10.0.0.1:80",
            "meta l4proto tcp dnat to [fd00::1]:80",
            "numgen random mod 2 vmap { 0 : goto a }",
            "numgen random mod 2 vmap { 1 : goto a , 0 : goto b }",
            "jump \"quoted\"",
            "ip saddr 10.0.0.1",
            "",
        ] {
            assert_eq!(parse_rule(Family::Ip, body), None, "{body}");
        }
    }
}
