//! The matches and targets kube-proxy's rules use, each built from the options kproxy
//! writes into the structure the kernel module reads, at the revision `iptables` 1.8 picks
//! on current kernels, byte for byte as `iptables-legacy-restore` builds it (the kernel
//! tests compare the tables). Any other extension, option or value form is
//! [`XtError::Unsupported`], so that it goes to the real tool rather than being encoded
//! untested.

use crate::layout::{align, Family, EXTENSION_HEADER, EXTENSION_NAME_LEN, REVISION_OFFSET};
use crate::{Result, XtError};
use std::net::IpAddr;

/// One match or target: its name, revision and data (without the header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The kernel module's name (`tcp`, `DNAT`, ...).
    pub name: &'static str,
    /// The structure's revision.
    pub revision: u8,
    /// The structure itself.
    pub data: Vec<u8>,
}

impl Encoded {
    /// Appends the extension, header first, padded to the x_tables alignment.
    pub fn append_to(&self, out: &mut Vec<u8>) {
        let size = align(EXTENSION_HEADER + self.data.len());
        let start = out.len();
        out.resize(start + size, 0);
        out[start..start + 2].copy_from_slice(&(size as u16).to_ne_bytes());
        let name = &self.name.as_bytes()[..self.name.len().min(EXTENSION_NAME_LEN - 1)];
        out[start + 2..start + 2 + name.len()].copy_from_slice(name);
        out[start + REVISION_OFFSET] = self.revision;
        out[start + EXTENSION_HEADER..start + EXTENSION_HEADER + self.data.len()]
            .copy_from_slice(&self.data);
    }
}

/// Whether an option takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// `--set`, `--random-fully`, ...
    Flag,
    /// `--dport 80`, ...
    Value,
}

/// A match or target being built from its options.
#[derive(Debug, Clone, PartialEq)]
pub enum Extension {
    /// `-m comment --comment TEXT`.
    Comment(Vec<u8>),
    /// `-m mark [!] --mark VALUE[/MASK]`.
    Mark { mark: u32, mask: u32, invert: bool },
    /// `-m statistic --mode random --probability P`.
    Statistic {
        random: bool,
        probability: Option<u32>,
    },
    /// `-m recent --name N --set`, or `--name N --rcheck --seconds S --reap`.
    Recent {
        name: Option<Vec<u8>>,
        seconds: u32,
        flags: u8,
    },
    /// `-m nfacct --nfacct-name NAME`.
    Nfacct(Vec<u8>),
    /// `-m conntrack [!] --ctstate STATES`.
    Conntrack { states: u16, invert: bool },
    /// `-m addrtype [!] --src-type T [!] --dst-type T`.
    Addrtype { source: u16, dest: u16, flags: u32 },
    /// `-m tcp|udp|sctp [--dport P]`.
    Ports {
        protocol: PortProtocol,
        dest: Option<u16>,
    },
    /// `-j DNAT --to-destination ADDR[:PORT]`.
    Dnat(Option<(IpAddr, Option<u16>)>),
    /// `-j MARK --or-mark BITS` or `--xor-mark BITS`: the mark and mask of `xt_mark_tginfo2`.
    MarkTarget(Option<(u32, u32)>),
    /// `-j MASQUERADE [--random-fully]`.
    Masquerade { random_fully: bool },
    /// `-j REJECT`.
    Reject,
}

/// The protocol of a port match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortProtocol {
    /// `-m tcp`.
    Tcp,
    /// `-m udp`.
    Udp,
    /// `-m sctp`.
    Sctp,
}

/// `XT_RECENT_*` flags of `check_set`.
const RECENT_CHECK: u8 = 1;
const RECENT_SET: u8 = 2;
const RECENT_REAP: u8 = 32;
/// `NF_NAT_RANGE_*` flags.
const NAT_MAP_IPS: u32 = 1;
const NAT_PROTO_SPECIFIED: u32 = 2;
const NAT_PROTO_RANDOM_FULLY: u32 = 16;

impl Extension {
    /// The match `-m name` starts.
    pub fn new_match(name: &str) -> Result<Extension> {
        let ports = |protocol| Extension::Ports {
            protocol,
            dest: None,
        };
        Ok(match name {
            "comment" => Extension::Comment(Vec::new()),
            "mark" => Extension::Mark {
                mark: 0,
                mask: u32::MAX,
                invert: false,
            },
            "statistic" => Extension::Statistic {
                random: false,
                probability: None,
            },
            "recent" => Extension::Recent {
                name: None,
                seconds: 0,
                flags: 0,
            },
            "nfacct" => Extension::Nfacct(Vec::new()),
            "conntrack" => Extension::Conntrack {
                states: 0,
                invert: false,
            },
            "addrtype" => Extension::Addrtype {
                source: 0,
                dest: 0,
                flags: 0,
            },
            "tcp" => ports(PortProtocol::Tcp),
            "udp" => ports(PortProtocol::Udp),
            "sctp" => ports(PortProtocol::Sctp),
            other => return Err(unsupported(format!("match {other:?}"))),
        })
    }

    /// The target `-j name` starts, or `None` when `name` is not a target extension (a
    /// chain or a standard verdict).
    pub fn new_target(name: &str) -> Option<Extension> {
        Some(match name {
            "DNAT" => Extension::Dnat(None),
            "MARK" => Extension::MarkTarget(None),
            "MASQUERADE" => Extension::Masquerade {
                random_fully: false,
            },
            "REJECT" => Extension::Reject,
            _ => return None,
        })
    }

    /// Whether `option` is one of this extension's, and whether it takes a value.
    pub fn arity(&self, option: &str) -> Option<Arity> {
        let value = Some(Arity::Value);
        match (self, option) {
            (Extension::Comment(_), "--comment") => value,
            (Extension::Mark { .. }, "--mark") => value,
            (Extension::Statistic { .. }, "--mode" | "--probability") => value,
            (Extension::Recent { .. }, "--name" | "--seconds") => value,
            (Extension::Recent { .. }, "--set" | "--rcheck" | "--reap") => Some(Arity::Flag),
            (Extension::Nfacct(_), "--nfacct-name") => value,
            (Extension::Conntrack { .. }, "--ctstate") => value,
            (Extension::Addrtype { .. }, "--src-type" | "--dst-type") => value,
            (Extension::Ports { .. }, "--dport") => value,
            (Extension::Dnat(_), "--to-destination") => value,
            (Extension::MarkTarget(_), "--or-mark" | "--xor-mark") => value,
            (Extension::Masquerade { .. }, "--random-fully") => Some(Arity::Flag),
            _ => None,
        }
    }

    /// Takes one option (already known to be this extension's, see [`Extension::arity`]).
    pub fn option(&mut self, option: &str, invert: bool, value: &str) -> Result<()> {
        let invertible = matches!(
            self,
            Extension::Mark { .. } | Extension::Conntrack { .. } | Extension::Addrtype { .. }
        );
        if invert && !invertible {
            return Err(unsupported(format!("! {option}")));
        }
        match self {
            Extension::Comment(text) => {
                if value.len() > 255 {
                    return Err(XtError::Invalid(
                        "comment may not be longer than 255 bytes".into(),
                    ));
                }
                *text = value.as_bytes().to_vec();
            }
            Extension::Mark {
                mark,
                mask,
                invert: inverted,
            } => {
                let (value, value_mask) = parse_mark(value)?;
                *mark = value;
                *mask = value_mask.unwrap_or(u32::MAX);
                *inverted = invert;
            }
            Extension::Statistic {
                random,
                probability,
            } => match option {
                "--mode" if value == "random" => *random = true,
                "--probability" => {
                    let p: f64 = value
                        .parse()
                        .map_err(|_| XtError::Invalid(format!("bad probability {value:?}")))?;
                    if !(0.0..=1.0).contains(&p) {
                        return Err(XtError::Invalid(format!("bad probability {value:?}")));
                    }
                    *probability = Some((f64::from(0x8000_0000u32) * p).round() as u32);
                }
                _ => return Err(unsupported(format!("statistic {option} {value}"))),
            },
            Extension::Recent {
                name,
                seconds,
                flags,
            } => match option {
                "--name" => {
                    if value.is_empty() || value.len() >= 200 {
                        return Err(XtError::Invalid(format!("bad recent name {value:?}")));
                    }
                    *name = Some(value.as_bytes().to_vec());
                }
                "--seconds" => *seconds = parse_u32(value)?,
                "--set" => *flags |= RECENT_SET,
                "--rcheck" => *flags |= RECENT_CHECK,
                _ => *flags |= RECENT_REAP,
            },
            Extension::Nfacct(name) => {
                if value.is_empty() || value.len() >= 32 {
                    return Err(XtError::Invalid(format!("bad nfacct name {value:?}")));
                }
                *name = value.as_bytes().to_vec();
            }
            Extension::Conntrack {
                states,
                invert: inverted,
            } => {
                *states = parse_ctstates(value)?;
                *inverted = invert;
            }
            Extension::Addrtype {
                source,
                dest,
                flags,
            } => {
                let types = parse_addrtypes(value)?;
                if option == "--src-type" {
                    *source = types;
                    *flags |= u32::from(invert);
                } else {
                    *dest = types;
                    *flags |= u32::from(invert) << 1;
                }
            }
            Extension::Ports { dest, .. } => *dest = Some(parse_port(value)?),
            Extension::Dnat(to) => *to = Some(parse_nat_destination(value)?),
            Extension::MarkTarget(mark) => {
                let (bits, mask) = parse_mark(value)?;
                if mask.is_some() {
                    return Err(XtError::Invalid(format!("bad MARK value {value:?}")));
                }
                *mark = Some(if option == "--or-mark" {
                    (bits, bits)
                } else {
                    (bits, 0)
                });
            }
            Extension::Masquerade { random_fully } => *random_fully = true,
            Extension::Reject => return Err(unsupported(format!("REJECT {option}"))),
        }
        Ok(())
    }

    /// The finished structure for a rule of `family`.
    pub fn finish(self, family: Family) -> Result<Encoded> {
        let (name, revision, data) = match self {
            Extension::Comment(text) => {
                let mut data = vec![0u8; 256];
                data[..text.len()].copy_from_slice(&text);
                ("comment", 0, data)
            }
            Extension::Mark { mark, mask, invert } => {
                let mut data = Vec::with_capacity(12);
                data.extend_from_slice(&mark.to_ne_bytes());
                data.extend_from_slice(&mask.to_ne_bytes());
                data.extend_from_slice(&[u8::from(invert), 0, 0, 0]);
                ("mark", 1, data)
            }
            Extension::Statistic {
                random,
                probability,
            } => {
                let Some(probability) = probability.filter(|_| random) else {
                    return Err(XtError::Invalid(
                        "statistic needs --mode random --probability".into(),
                    ));
                };
                // Mode and flags 0, the probability, and (as iptables leaves it) the
                // probability again in the unused nth counter; the kernel's pointer last.
                let mut data = vec![0u8; 24];
                data[4..8].copy_from_slice(&probability.to_ne_bytes());
                data[12..16].copy_from_slice(&probability.to_ne_bytes());
                ("statistic", 0, data)
            }
            Extension::Recent {
                name,
                seconds,
                flags,
            } => {
                // `xt_recent_mtinfo_v1`: seconds, hit count, flags, inversion, the list's
                // name, the side (source), then a 16-byte mask, all ones by default.
                let mut data = vec![0u8; 228];
                data[0..4].copy_from_slice(&seconds.to_ne_bytes());
                data[8] = flags;
                let name = name.unwrap_or_else(|| b"DEFAULT".to_vec());
                data[10..10 + name.len()].copy_from_slice(&name);
                data[212..228].fill(0xff);
                ("recent", 1, data)
            }
            Extension::Nfacct(text) => {
                if text.is_empty() {
                    return Err(XtError::Invalid("nfacct needs --nfacct-name".into()));
                }
                let mut data = vec![0u8; 40];
                data[..text.len()].copy_from_slice(&text);
                ("nfacct", 1, data)
            }
            Extension::Conntrack { states, invert } => {
                // `xt_conntrack_mtinfo3`: eight addresses, expiry, ports, then the match
                // flags (state only), inversions and the state mask.
                let mut data = vec![0u8; 164];
                data[146..148].copy_from_slice(&1u16.to_ne_bytes());
                data[148..150].copy_from_slice(&u16::from(invert).to_ne_bytes());
                data[150..152].copy_from_slice(&states.to_ne_bytes());
                ("conntrack", 3, data)
            }
            Extension::Addrtype {
                source,
                dest,
                flags,
            } => {
                let mut data = Vec::with_capacity(8);
                data.extend_from_slice(&source.to_ne_bytes());
                data.extend_from_slice(&dest.to_ne_bytes());
                data.extend_from_slice(&flags.to_ne_bytes());
                ("addrtype", 1, data)
            }
            Extension::Ports { protocol, dest } => ports(protocol, dest),
            Extension::Dnat(to) => {
                let Some((addr, port)) = to else {
                    return Err(XtError::Invalid("DNAT needs --to-destination".into()));
                };
                if addr.is_ipv4() != (family == Family::V4) {
                    return Err(XtError::Invalid(format!(
                        "DNAT to {addr} in the wrong family"
                    )));
                }
                // `nf_nat_range2`: flags, lowest and highest address, lowest and highest
                // port (network order), base port.
                let mut data = vec![0u8; 44];
                let mut flags = NAT_MAP_IPS;
                put_addr(&mut data[4..20], addr);
                put_addr(&mut data[20..36], addr);
                if let Some(port) = port {
                    flags |= NAT_PROTO_SPECIFIED;
                    data[36..38].copy_from_slice(&port.to_be_bytes());
                    data[38..40].copy_from_slice(&port.to_be_bytes());
                }
                data[0..4].copy_from_slice(&flags.to_ne_bytes());
                ("DNAT", 2, data)
            }
            Extension::MarkTarget(mark) => {
                let Some((mark, mask)) = mark else {
                    return Err(XtError::Invalid("MARK needs an action".into()));
                };
                let mut data = Vec::with_capacity(8);
                data.extend_from_slice(&mark.to_ne_bytes());
                data.extend_from_slice(&mask.to_ne_bytes());
                ("MARK", 2, data)
            }
            Extension::Masquerade { random_fully } => {
                let flags = if random_fully {
                    NAT_PROTO_RANDOM_FULLY
                } else {
                    0
                };
                // IPv4: `nf_nat_ipv4_multi_range_compat` with one range (count, then the
                // range's flags); IPv6: `nf_nat_range`, flags first.
                let (mut data, flags_at) = match family {
                    Family::V4 => {
                        let mut data = vec![0u8; 20];
                        data[0..4].copy_from_slice(&1u32.to_ne_bytes());
                        (data, 4)
                    }
                    Family::V6 => (vec![0u8; 40], 0),
                };
                data[flags_at..flags_at + 4].copy_from_slice(&flags.to_ne_bytes());
                ("MASQUERADE", 0, data)
            }
            Extension::Reject => {
                // ICMP port unreachable: `IPT_ICMP_PORT_UNREACHABLE`, `IP6T_ICMP6_PORT_UNREACH`.
                let with: u32 = match family {
                    Family::V4 => 3,
                    Family::V6 => 4,
                };
                ("REJECT", 0, with.to_ne_bytes().to_vec())
            }
        };
        Ok(Encoded {
            name,
            revision,
            data,
        })
    }
}

/// `xt_tcp`, `xt_udp` or `xt_sctp_info` for a match on the destination port, if any.
fn ports(protocol: PortProtocol, dest: Option<u16>) -> (&'static str, u8, Vec<u8>) {
    let mut data = Vec::new();
    let push_range = |data: &mut Vec<u8>, (low, high): (u16, u16)| {
        data.extend_from_slice(&low.to_ne_bytes());
        data.extend_from_slice(&high.to_ne_bytes());
    };
    let dest = dest.map(|port| (port, port));
    let any = (0, u16::MAX);
    match protocol {
        PortProtocol::Tcp => {
            push_range(&mut data, any);
            push_range(&mut data, dest.unwrap_or(any));
            data.extend_from_slice(&[0; 4]);
            ("tcp", 0, data)
        }
        PortProtocol::Udp => {
            push_range(&mut data, any);
            push_range(&mut data, dest.unwrap_or(any));
            data.extend_from_slice(&[0; 2]);
            ("udp", 0, data)
        }
        PortProtocol::Sctp => {
            // Destination and source ports, a chunk map (a bit for each of 256 types), the
            // match type, four flag infos and their count, the flags and inversions. Unlike
            // tcp and udp, libxt_sctp leaves ports it was not given at 0-0 (the flags say
            // which apply) and marks each flag info unused (-1).
            push_range(&mut data, dest.unwrap_or((0, 0)));
            push_range(&mut data, (0, 0));
            data.resize(284, 0);
            for info in 0..4 {
                data[268 + 3 * info] = 0xff;
            }
            let flags = u32::from(dest.is_some()) << 1;
            data.extend_from_slice(&flags.to_ne_bytes());
            data.extend_from_slice(&0u32.to_ne_bytes());
            ("sctp", 0, data)
        }
    }
}

fn unsupported(what: String) -> XtError {
    XtError::Unsupported(what)
}

fn put_addr(out: &mut [u8], addr: IpAddr) {
    match addr {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out[..16].copy_from_slice(&v6.octets()),
    }
}

/// A number as `strtoul(value, NULL, 0)` reads it: hexadecimal after `0x`, octal after a
/// leading `0`, decimal otherwise.
pub fn parse_u32(value: &str) -> Result<u32> {
    let bad = || XtError::Invalid(format!("bad number {value:?}"));
    let (digits, radix) = if let Some(hex) = value
        .strip_prefix("0x")
        .or_else(|| value.strip_prefix("0X"))
    {
        (hex, 16)
    } else if value.len() > 1 && value.starts_with('0') {
        (&value[1..], 8)
    } else {
        (value, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(bad());
    }
    u32::from_str_radix(digits, radix).map_err(|_| bad())
}

fn parse_mark(value: &str) -> Result<(u32, Option<u32>)> {
    match value.split_once('/') {
        Some((mark, mask)) => Ok((parse_u32(mark)?, Some(parse_u32(mask)?))),
        None => Ok((parse_u32(value)?, None)),
    }
}

fn parse_port(value: &str) -> Result<u16> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unsupported(format!("port {value:?}")));
    }
    value
        .parse()
        .map_err(|_| XtError::Invalid(format!("bad port {value:?}")))
}

fn parse_nat_destination(value: &str) -> Result<(IpAddr, Option<u16>)> {
    let bad = || XtError::Invalid(format!("bad --to-destination {value:?}"));
    if let Some(rest) = value.strip_prefix('[') {
        let (addr, port) = rest.split_once(']').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        return match port {
            "" => Ok((addr, None)),
            port => {
                let port = port.strip_prefix(':').ok_or_else(bad)?;
                Ok((addr, Some(parse_port(port)?)))
            }
        };
    }
    if let Ok(addr) = value.parse::<IpAddr>() {
        return Ok((addr, None));
    }
    let (addr, port) = value.rsplit_once(':').ok_or_else(bad)?;
    if addr.contains('-') || port.contains('-') {
        return Err(unsupported(format!("NAT range {value:?}")));
    }
    let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| bad())?;
    Ok((IpAddr::V4(addr), Some(parse_port(port)?)))
}

fn parse_ctstates(value: &str) -> Result<u16> {
    let mut states = 0;
    for state in value.split(',') {
        states |= match state {
            "INVALID" => 1,
            "ESTABLISHED" => 2,
            "RELATED" => 4,
            "NEW" => 8,
            "SNAT" => 64,
            "DNAT" => 128,
            "UNTRACKED" => 256,
            other => return Err(XtError::Invalid(format!("bad ctstate {other:?}"))),
        };
    }
    Ok(states)
}

fn parse_addrtypes(value: &str) -> Result<u16> {
    const TYPES: [&str; 12] = [
        "UNSPEC",
        "UNICAST",
        "LOCAL",
        "BROADCAST",
        "ANYCAST",
        "MULTICAST",
        "BLACKHOLE",
        "UNREACHABLE",
        "PROHIBIT",
        "THROW",
        "NAT",
        "XRESOLVE",
    ];
    let mut types = 0;
    for name in value.split(',') {
        let bit = TYPES
            .iter()
            .position(|t| t.eq_ignore_ascii_case(name))
            .ok_or_else(|| XtError::Invalid(format!("bad address type {name:?}")))?;
        types |= 1 << bit;
    }
    Ok(types)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(ext: &str, target: bool, options: &[(&str, &str)]) -> Encoded {
        let mut e = if target {
            Extension::new_target(ext).expect("target")
        } else {
            Extension::new_match(ext).expect("match")
        };
        for (option, value) in options {
            e.option(option, false, value).expect("option");
        }
        e.finish(Family::V4).expect("finish")
    }

    #[test]
    fn structures_have_the_kernels_sizes() {
        let sizes = [
            (encode("comment", false, &[("--comment", "x")]), 288),
            (encode("tcp", false, &[("--dport", "80")]), 48),
            (encode("udp", false, &[("--dport", "53")]), 48),
            (encode("sctp", false, &[("--dport", "9")]), 328),
            (
                encode("DNAT", true, &[("--to-destination", "10.0.0.1:80")]),
                80,
            ),
            (encode("MARK", true, &[("--or-mark", "0x4000")]), 40),
            (encode("REJECT", true, &[]), 40),
        ];
        for (encoded, size) in sizes {
            let mut out = Vec::new();
            encoded.append_to(&mut out);
            assert_eq!(out.len(), size, "{}", encoded.name);
        }
    }

    #[test]
    fn numbers_read_as_strtoul_reads_them() {
        assert_eq!(parse_u32("0x4000"), Ok(0x4000));
        assert_eq!(parse_u32("16384"), Ok(16384));
        assert_eq!(parse_u32("010"), Ok(8));
        assert!(parse_u32("0x").is_err());
        assert!(parse_u32("12a").is_err());
    }

    #[test]
    fn probabilities_round_as_libxt_statistic() {
        let e = encode(
            "statistic",
            false,
            &[("--mode", "random"), ("--probability", "0.33333333349")],
        );
        assert_eq!(
            u32::from_ne_bytes(e.data[4..8].try_into().expect("4")),
            715827883
        );
    }

    #[test]
    fn nat_destinations_of_both_families() {
        assert_eq!(
            parse_nat_destination("[fd00::1]:80"),
            Ok(("fd00::1".parse().expect("addr"), Some(80)))
        );
        assert_eq!(
            parse_nat_destination("10.0.0.1"),
            Ok(("10.0.0.1".parse().expect("addr"), None))
        );
        assert!(matches!(
            parse_nat_destination("10.0.0.1:80-90"),
            Err(XtError::Unsupported(_))
        ));
    }
}
