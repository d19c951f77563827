//! One rule's arguments (`-s 10.0.0.0/8 -m tcp -p tcp --dport 80 -j KUBE-SVC-X`) encoded
//! into an x_tables entry: the entry header with its addresses, interfaces and protocol,
//! the matches in the order given, then the target.

use crate::extension::{Arity, Encoded, Extension};
use crate::layout::{
    self, EntryLayout, Family, EXTENSION_HEADER, INV_DSTIP, INV_PROTO, INV_SRCIP, INV_VIA_IN,
    INV_VIA_OUT, STANDARD_TARGET_SIZE, VERDICT_ACCEPT, VERDICT_DROP, VERDICT_RETURN,
};
use crate::{Result, XtError};
use std::net::IpAddr;

/// Where a rule's standard target goes, when the table decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Jump {
    /// The target is fixed in the rule's bytes (a verdict or a target extension).
    Fixed,
    /// `-j CHAIN` (or `-g CHAIN`, flagged in the entry): the verdict is the chain's offset.
    Chain(Box<str>),
    /// No target: the verdict is the next entry's offset.
    Fallthrough,
}

/// An encoded rule: the entry's bytes (verdict of a chain jump left 0) and its jump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedRule {
    /// The whole entry, `target_offset` and `next_offset` set.
    pub bytes: Vec<u8>,
    /// What the table fills in as the verdict.
    pub jump: Jump,
}

enum Target {
    Verdict(i32),
    Chain(Box<str>, bool),
    Extension(Extension),
}

/// Encodes one rule of `family` from its arguments (everything after `-A CHAIN`).
pub fn encode_rule(family: Family, args: &[String]) -> Result<EncodedRule> {
    let layout = family.layout();
    let mut entry = vec![0u8; layout.size];
    let mut matches: Vec<u8> = Vec::new();
    let mut current: Option<Extension> = None;
    let mut target: Option<Target> = None;
    let mut invert = false;
    let mut words = args.iter().map(String::as_str);
    while let Some(word) = words.next() {
        if word == "!" {
            if invert {
                return Err(XtError::Invalid("two ! in a row".into()));
            }
            invert = true;
            continue;
        }
        let mut value = |what: &str| {
            words
                .next()
                .ok_or_else(|| XtError::Invalid(format!("{what} needs a value")))
        };
        match word {
            "-p" | "--protocol" => {
                let number = protocol_number(value(word)?)?;
                layout::put_u16(&mut entry, layout.proto, number);
                entry[layout.flags] |= layout.proto_flag;
                set_inverted(&mut entry, &layout, invert, INV_PROTO);
            }
            "-s" | "--source" | "-d" | "--destination" => {
                let source = word.starts_with("-s") || word == "--source";
                put_address(&mut entry, &layout, family, value(word)?, source)?;
                set_inverted(
                    &mut entry,
                    &layout,
                    invert,
                    if source { INV_SRCIP } else { INV_DSTIP },
                );
            }
            "-i" | "--in-interface" | "-o" | "--out-interface" => {
                let input = word == "-i" || word == "--in-interface";
                put_interface(&mut entry, &layout, value(word)?, input)?;
                set_inverted(
                    &mut entry,
                    &layout,
                    invert,
                    if input { INV_VIA_IN } else { INV_VIA_OUT },
                );
            }
            "-m" | "--match" => {
                let name = value(word)?;
                no_invert(invert, word)?;
                if target.is_some() {
                    return Err(XtError::Unsupported("a match after the target".into()));
                }
                finish_match(&mut matches, current.take(), family)?;
                current = Some(Extension::new_match(name)?);
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                let name = value(word)?;
                no_invert(invert, word)?;
                if target.is_some() {
                    return Err(XtError::Invalid("two targets".into()));
                }
                finish_match(&mut matches, current.take(), family)?;
                let goto = word.starts_with("-g") || word == "--goto";
                target = Some(target_named(name, goto)?);
            }
            option if option.starts_with("--") => {
                let extension = match (&mut target, &mut current) {
                    (Some(Target::Extension(e)), _) => e,
                    (Some(_), _) => {
                        return Err(XtError::Invalid(format!("{option} after a jump")));
                    }
                    (None, Some(e)) => e,
                    (None, None) => return Err(XtError::Unsupported(format!("option {option}"))),
                };
                let arity = extension
                    .arity(option)
                    .ok_or_else(|| XtError::Unsupported(format!("option {option}")))?;
                let given = match arity {
                    Arity::Value => value(option)?,
                    Arity::Flag => "",
                };
                extension.option(option, invert, given)?;
            }
            other => return Err(XtError::Unsupported(format!("argument {other:?}"))),
        }
        invert = false;
    }
    if invert {
        return Err(XtError::Invalid("! at the end of a rule".into()));
    }
    finish_match(&mut matches, current, family)?;
    entry.extend_from_slice(&matches);
    let target_offset = entry.len();
    let jump = match target {
        None => {
            append_standard(&mut entry, 0);
            Jump::Fallthrough
        }
        Some(Target::Verdict(verdict)) => {
            append_standard(&mut entry, verdict);
            Jump::Fixed
        }
        Some(Target::Chain(chain, goto)) => {
            if goto {
                entry[layout.flags] |= layout.goto_flag;
            }
            append_standard(&mut entry, 0);
            Jump::Chain(chain)
        }
        Some(Target::Extension(extension)) => {
            extension.finish(family)?.append_to(&mut entry);
            Jump::Fixed
        }
    };
    if entry.len() > usize::from(u16::MAX) {
        return Err(XtError::Invalid("rule too large".into()));
    }
    layout::put_u16(&mut entry, layout.target_offset, target_offset as u16);
    let next_offset = entry.len() as u16;
    layout::put_u16(&mut entry, layout.target_offset + 2, next_offset);
    // A first sync holds every rule until the table is written: no spare capacity.
    entry.shrink_to_fit();
    Ok(EncodedRule { bytes: entry, jump })
}

/// Appends a standard target with `verdict`.
pub fn append_standard(out: &mut Vec<u8>, verdict: i32) {
    let start = out.len();
    out.resize(start + STANDARD_TARGET_SIZE, 0);
    layout::put_u16(out, start, STANDARD_TARGET_SIZE as u16);
    out[start + EXTENSION_HEADER..start + EXTENSION_HEADER + 4]
        .copy_from_slice(&verdict.to_ne_bytes());
}

fn finish_match(out: &mut Vec<u8>, current: Option<Extension>, family: Family) -> Result<()> {
    if let Some(extension) = current {
        let encoded: Encoded = extension.finish(family)?;
        encoded.append_to(out);
    }
    Ok(())
}

fn no_invert(invert: bool, word: &str) -> Result<()> {
    if invert {
        Err(XtError::Invalid(format!("! before {word}")))
    } else {
        Ok(())
    }
}

fn set_inverted(entry: &mut [u8], layout: &EntryLayout, invert: bool, flag: u8) {
    if invert {
        entry[layout.invflags] |= flag;
    }
}

fn target_named(name: &str, goto: bool) -> Result<Target> {
    if goto {
        return chain_target(name, true);
    }
    Ok(match name {
        "ACCEPT" => Target::Verdict(VERDICT_ACCEPT),
        "DROP" => Target::Verdict(VERDICT_DROP),
        "RETURN" => Target::Verdict(VERDICT_RETURN),
        _ => match Extension::new_target(name) {
            Some(extension) => Target::Extension(extension),
            None => chain_target(name, false)?,
        },
    })
}

fn chain_target(name: &str, goto: bool) -> Result<Target> {
    if name.is_empty() || name.len() > layout::CHAIN_NAME_MAX {
        return Err(XtError::Invalid(format!("bad chain name {name:?}")));
    }
    Ok(Target::Chain(name.into(), goto))
}

fn protocol_number(name: &str) -> Result<u16> {
    Ok(match name {
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        "icmp" => 1,
        "ipv6-icmp" | "icmpv6" => 58,
        "all" => 0,
        number => number
            .parse::<u8>()
            .map(u16::from)
            .map_err(|_| XtError::Unsupported(format!("protocol {number:?}")))?,
    })
}

fn put_address(
    entry: &mut [u8],
    layout: &EntryLayout,
    family: Family,
    text: &str,
    source: bool,
) -> Result<()> {
    let bad = || XtError::Invalid(format!("bad address {text:?}"));
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let octets: Vec<u8> = match (addr, family) {
        (IpAddr::V4(v4), Family::V4) => v4.octets().to_vec(),
        (IpAddr::V6(v6), Family::V6) => v6.octets().to_vec(),
        _ => return Err(bad()),
    };
    let bits = octets.len() * 8;
    let prefix = match prefix {
        None => bits,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() => {
            p.parse::<usize>().map_err(|_| bad())?
        }
        Some(_) => return Err(XtError::Unsupported(format!("address mask {text:?}"))),
    };
    if prefix > bits {
        return Err(bad());
    }
    let len = layout.addr_len;
    let (addr_at, mask_at) = if source {
        (layout.src, layout.src + 2 * len)
    } else {
        (layout.src + len, layout.src + 3 * len)
    };
    for (i, octet) in octets.iter().enumerate() {
        let ones = prefix.saturating_sub(i * 8).min(8);
        let mask = if ones == 0 { 0 } else { 0xffu8 << (8 - ones) };
        entry[addr_at + i] = octet & mask;
        entry[mask_at + i] = mask;
    }
    Ok(())
}

fn put_interface(entry: &mut [u8], layout: &EntryLayout, name: &str, input: bool) -> Result<()> {
    const IFNAMSIZ: usize = 16;
    let bytes = name.as_bytes();
    if bytes.is_empty()
        || bytes.len() >= IFNAMSIZ
        || bytes
            .iter()
            .any(|&b| b == b'/' || b.is_ascii_whitespace() || b == 0)
    {
        return Err(XtError::Invalid(format!("bad interface name {name:?}")));
    }
    let at = layout.iniface + if input { 0 } else { IFNAMSIZ };
    let mask_at = at + 2 * IFNAMSIZ;
    entry[at..at + bytes.len()].copy_from_slice(bytes);
    let masked = match bytes.strip_suffix(b"+") {
        Some(prefix) => prefix.len(),
        None => bytes.len() + 1,
    };
    entry[mask_at..mask_at + masked].fill(0xff);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::split_rule_args;

    fn encode(family: Family, text: &str) -> Result<EncodedRule> {
        encode_rule(family, &split_rule_args(text))
    }

    #[test]
    fn a_service_rule_has_its_matches_and_a_chain_jump() {
        let rule = encode(
            Family::V4,
            "-m comment --comment \"ns/svc:p80 cluster IP\" -m tcp -p tcp -d 10.0.0.10/32 --dport 80 -j KUBE-SVC-ABC",
        )
        .expect("rule");
        assert_eq!(rule.jump, Jump::Chain("KUBE-SVC-ABC".into()));
        assert_eq!(rule.bytes.len(), 112 + 288 + 48 + 40);
        assert_eq!(&rule.bytes[4..8], &[10, 0, 0, 10]);
        assert_eq!(&rule.bytes[12..16], &[255; 4]);
        assert_eq!(layout::read_u16(&rule.bytes, 80), Some(6));
        assert_eq!(layout::read_u16(&rule.bytes, 88), Some(112 + 288 + 48));
    }

    #[test]
    fn prefixes_mask_the_address_and_inversions_are_flagged() {
        let rule = encode(Family::V6, "! -s fd00::1:2/112 -j KUBE-MARK-MASQ").expect("rule");
        let layout = Family::V6.layout();
        assert_eq!(rule.bytes[14], 0);
        assert_eq!(rule.bytes[15], 0);
        assert_eq!(rule.bytes[13], 1);
        assert_eq!(&rule.bytes[32..46], &[0xff; 14]);
        assert_eq!(rule.bytes[46], 0);
        assert_eq!(rule.bytes[layout.invflags], INV_SRCIP);
    }

    #[test]
    fn unknown_forms_are_left_to_the_tool() {
        for text in [
            "-m physdev --physdev-is-in -j ACCEPT",
            "-m tcp -p tcp --tcp-flags SYN SYN -j ACCEPT",
            "-j DNAT --to-destination 10.0.0.1:80-90",
            "-s 10.0.0.0/255.0.0.0 -j ACCEPT",
            "-m tcp -p tcp --sport 80 -j ACCEPT",
            "-m tcp -p tcp --dport 80:90 -j ACCEPT",
            "-m recent --name X --mask 255.255.255.255 --set -j ACCEPT",
            "-j MARK --set-xmark 0x4000/0x4000",
            "-j MASQUERADE --random",
            "-m statistic ! --probability 0.5 -j ACCEPT",
        ] {
            assert!(
                matches!(encode(Family::V4, text), Err(XtError::Unsupported(_))),
                "{text}"
            );
        }
        assert!(matches!(
            encode(Family::V4, "-d fd00::1 -j ACCEPT"),
            Err(XtError::Invalid(_))
        ));
    }

    #[test]
    fn wildcard_interfaces_mask_only_their_prefix() {
        let rule = encode(Family::V4, "-i cali+ -j ACCEPT").expect("rule");
        let layout = Family::V4.layout();
        assert_eq!(&rule.bytes[layout.iniface..layout.iniface + 5], b"cali+");
        let mask = layout.iniface + 32;
        assert_eq!(&rule.bytes[mask..mask + 5], &[0xff, 0xff, 0xff, 0xff, 0]);
    }
}
