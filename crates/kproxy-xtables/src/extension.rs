//! The matches and targets kube-proxy's rules use, each built from its options into the
//! structure the kernel module reads, at the revision `iptables` 1.8 picks on current
//! kernels. Any other extension, option or value form is [`XtError::Unsupported`].

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
        let name = self.name.as_bytes();
        out[start + 2..start + 2 + name.len().min(EXTENSION_NAME_LEN - 1)]
            .copy_from_slice(&name[..name.len().min(EXTENSION_NAME_LEN - 1)]);
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
        invert: bool,
    },
    /// `-m recent --name N --mask M --set | --rcheck --seconds S --reap ...`.
    Recent(Recent),
    /// `-m nfacct --nfacct-name NAME`.
    Nfacct(Vec<u8>),
    /// `-m conntrack [!] --ctstate STATES`.
    Conntrack { states: u16, invert: bool },
    /// `-m addrtype [!] --src-type T [!] --dst-type T`.
    Addrtype { source: u16, dest: u16, flags: u32 },
    /// `-m tcp|udp|sctp [!] --sport P[:P] [!] --dport P[:P]`.
    Ports(Ports),
    /// `-j DNAT --to-destination ADDR[:PORT]`.
    Dnat {
        to: Option<(IpAddr, Option<u16>)>,
        flags: u32,
    },
    /// `-j MARK --or-mark | --xor-mark | --set-xmark`.
    MarkTarget { mark: u32, mask: u32, set: bool },
    /// `-j MASQUERADE [--random | --random-fully]`.
    Masquerade { flags: u32 },
    /// `-j REJECT`.
    Reject,
}

/// `xt_recent_mtinfo_v1` being built.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recent {
    seconds: u32,
    hit_count: u32,
    check_set: u8,
    invert: bool,
    name: Option<Vec<u8>>,
    dest: bool,
    mask: Option<IpAddr>,
}

/// Port ranges of a tcp, udp or sctp match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    protocol: PortProtocol,
    source: Option<(u16, u16)>,
    dest: Option<(u16, u16)>,
    invert_source: bool,
    invert_dest: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortProtocol {
    Tcp,
    Udp,
    Sctp,
}

/// `XT_RECENT_*` flags of `check_set`.
const RECENT_CHECK: u8 = 1;
const RECENT_SET: u8 = 2;
const RECENT_UPDATE: u8 = 4;
const RECENT_REMOVE: u8 = 8;
const RECENT_TTL: u8 = 16;
const RECENT_REAP: u8 = 32;
/// `NF_NAT_RANGE_*` flags.
const NAT_MAP_IPS: u32 = 1;
const NAT_PROTO_SPECIFIED: u32 = 2;
const NAT_PROTO_RANDOM: u32 = 4;
const NAT_PERSISTENT: u32 = 8;
const NAT_PROTO_RANDOM_FULLY: u32 = 16;

impl Extension {
    /// The match `-m name` starts.
    pub fn new_match(name: &str) -> Result<Extension> {
        let ports = |protocol| {
            Extension::Ports(Ports {
                protocol,
                source: None,
                dest: None,
                invert_source: false,
                invert_dest: false,
            })
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
                invert: false,
            },
            "recent" => Extension::Recent(Recent::default()),
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
            "DNAT" => Extension::Dnat { to: None, flags: 0 },
            "MARK" => Extension::MarkTarget {
                mark: 0,
                mask: 0,
                set: false,
            },
            "MASQUERADE" => Extension::Masquerade { flags: 0 },
            "REJECT" => Extension::Reject,
            _ => return None,
        })
    }

    /// Whether `option` is one of this extension's, and whether it takes a value.
    pub fn arity(&self, option: &str) -> Option<Arity> {
        let value = Some(Arity::Value);
        let flag = Some(Arity::Flag);
        match (self, option) {
            (Extension::Comment(_), "--comment") => value,
            (Extension::Mark { .. }, "--mark") => value,
            (Extension::Statistic { .. }, "--mode" | "--probability") => value,
            (Extension::Recent(_), "--name" | "--seconds" | "--hitcount" | "--mask") => value,
            (
                Extension::Recent(_),
                "--set" | "--rcheck" | "--update" | "--remove" | "--rttl" | "--reap" | "--rsource"
                | "--rdest",
            ) => flag,
            (Extension::Nfacct(_), "--nfacct-name") => value,
            (Extension::Conntrack { .. }, "--ctstate") => value,
            (Extension::Addrtype { .. }, "--src-type" | "--dst-type") => value,
            (Extension::Addrtype { .. }, "--limit-iface-in" | "--limit-iface-out") => flag,
            (
                Extension::Ports(_),
                "--dport" | "--destination-port" | "--sport" | "--source-port",
            ) => value,
            (Extension::Dnat { .. }, "--to-destination") => value,
            (Extension::Dnat { .. } | Extension::Masquerade { .. }, "--random") => flag,
            (Extension::Dnat { .. } | Extension::Masquerade { .. }, "--random-fully") => flag,
            (Extension::Dnat { .. }, "--persistent") => flag,
            (Extension::MarkTarget { .. }, "--or-mark" | "--xor-mark" | "--set-xmark") => value,
            _ => None,
        }
    }

    /// Takes one option (already known to be this extension's, see [`Extension::arity`]).
    pub fn option(&mut self, option: &str, invert: bool, value: &str) -> Result<()> {
        let no_invert = |what: &str| {
            if invert {
                Err(unsupported(format!("! {what}")))
            } else {
                Ok(())
            }
        };
        match self {
            Extension::Comment(text) => {
                no_invert(option)?;
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
                invert: inv,
            } => {
                let (value, value_mask) = parse_mark(value)?;
                *mark = value;
                *mask = value_mask.unwrap_or(u32::MAX);
                *inv = invert;
            }
            Extension::Statistic {
                random,
                probability,
                invert: inv,
            } => match option {
                "--mode" if value == "random" && !invert => *random = true,
                "--probability" => {
                    let p: f64 = value
                        .parse()
                        .map_err(|_| XtError::Invalid(format!("bad probability {value:?}")))?;
                    if !(0.0..=1.0).contains(&p) {
                        return Err(XtError::Invalid(format!("bad probability {value:?}")));
                    }
                    *probability = Some((f64::from(0x8000_0000u32) * p).round() as u32);
                    *inv = invert;
                }
                _ => return Err(unsupported(format!("statistic {option} {value}"))),
            },
            Extension::Recent(recent) => recent.option(option, invert, value)?,
            Extension::Nfacct(name) => {
                no_invert(option)?;
                if value.is_empty() || value.len() >= 32 {
                    return Err(XtError::Invalid(format!("bad nfacct name {value:?}")));
                }
                *name = value.as_bytes().to_vec();
            }
            Extension::Conntrack {
                states,
                invert: inv,
            } => {
                *states = parse_ctstates(value)?;
                *inv = invert;
            }
            Extension::Addrtype {
                source,
                dest,
                flags,
            } => match option {
                "--src-type" => {
                    *source = parse_addrtypes(value)?;
                    *flags |= if invert { 1 } else { 0 };
                }
                "--dst-type" => {
                    *dest = parse_addrtypes(value)?;
                    *flags |= if invert { 2 } else { 0 };
                }
                "--limit-iface-in" => *flags |= 4,
                _ => *flags |= 8,
            },
            Extension::Ports(ports) => {
                let range = parse_port_range(value)?;
                if option.starts_with("--d") {
                    ports.dest = Some(range);
                    ports.invert_dest = invert;
                } else {
                    ports.source = Some(range);
                    ports.invert_source = invert;
                }
            }
            Extension::Dnat { to, flags } => {
                no_invert(option)?;
                match option {
                    "--to-destination" => *to = Some(parse_nat_destination(value)?),
                    "--random" => *flags |= NAT_PROTO_RANDOM,
                    "--random-fully" => *flags |= NAT_PROTO_RANDOM_FULLY,
                    _ => *flags |= NAT_PERSISTENT,
                }
            }
            Extension::MarkTarget { mark, mask, set } => {
                no_invert(option)?;
                let (bits, given_mask) = parse_mark(value)?;
                match option {
                    "--or-mark" if given_mask.is_none() => (*mark, *mask) = (bits, bits),
                    "--xor-mark" if given_mask.is_none() => (*mark, *mask) = (bits, 0),
                    "--set-xmark" => (*mark, *mask) = (bits, given_mask.unwrap_or(u32::MAX)),
                    _ => return Err(XtError::Invalid(format!("bad MARK value {value:?}"))),
                }
                *set = true;
            }
            Extension::Masquerade { flags } => {
                no_invert(option)?;
                *flags |= if option == "--random" {
                    NAT_PROTO_RANDOM
                } else {
                    NAT_PROTO_RANDOM_FULLY
                };
            }
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
                invert,
            } => {
                let Some(probability) = probability.filter(|_| random) else {
                    return Err(XtError::Invalid(
                        "statistic needs --mode random --probability".into(),
                    ));
                };
                let mut data = vec![0u8; 24];
                data[2..4].copy_from_slice(&u16::from(invert).to_ne_bytes());
                data[4..8].copy_from_slice(&probability.to_ne_bytes());
                // iptables also leaves the probability in the (unused) nth counter.
                data[12..16].copy_from_slice(&probability.to_ne_bytes());
                ("statistic", 0, data)
            }
            Extension::Recent(recent) => ("recent", 1, recent.finish(family)?),
            Extension::Nfacct(text) => {
                if text.is_empty() {
                    return Err(XtError::Invalid("nfacct needs --nfacct-name".into()));
                }
                let mut data = vec![0u8; 40];
                data[..text.len()].copy_from_slice(&text);
                ("nfacct", 1, data)
            }
            Extension::Conntrack { states, invert } => {
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
            Extension::Ports(ports) => ports.finish(),
            Extension::Dnat { to, flags } => {
                let Some((addr, port)) = to else {
                    return Err(XtError::Invalid("DNAT needs --to-destination".into()));
                };
                if addr.is_ipv4() != (family == Family::V4) {
                    return Err(XtError::Invalid(format!(
                        "DNAT to {addr} in the wrong family"
                    )));
                }
                let mut data = vec![0u8; 44];
                let mut flags = flags | NAT_MAP_IPS;
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
            Extension::MarkTarget { mark, mask, set } => {
                if !set {
                    return Err(XtError::Invalid("MARK needs an action".into()));
                }
                let mut data = Vec::with_capacity(8);
                data.extend_from_slice(&mark.to_ne_bytes());
                data.extend_from_slice(&mask.to_ne_bytes());
                ("MARK", 2, data)
            }
            Extension::Masquerade { flags } => match family {
                Family::V4 => {
                    let mut data = vec![0u8; 20];
                    data[0..4].copy_from_slice(&1u32.to_ne_bytes());
                    data[4..8].copy_from_slice(&flags.to_ne_bytes());
                    ("MASQUERADE", 0, data)
                }
                Family::V6 => {
                    let mut data = vec![0u8; 40];
                    data[0..4].copy_from_slice(&flags.to_ne_bytes());
                    ("MASQUERADE", 0, data)
                }
            },
            Extension::Reject => {
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

impl Recent {
    fn option(&mut self, option: &str, invert: bool, value: &str) -> Result<()> {
        let action = |recent: &mut Recent, bit: u8| {
            recent.check_set |= bit;
            recent.invert = invert;
        };
        match option {
            "--name" => {
                if value.is_empty() || value.len() >= 200 {
                    return Err(XtError::Invalid(format!("bad recent name {value:?}")));
                }
                self.name = Some(value.as_bytes().to_vec());
            }
            "--seconds" => self.seconds = parse_u32(value)?,
            "--hitcount" => self.hit_count = parse_u32(value)?,
            "--mask" => {
                self.mask = Some(
                    value
                        .parse()
                        .map_err(|_| XtError::Invalid(format!("bad recent mask {value:?}")))?,
                )
            }
            "--set" => action(self, RECENT_SET),
            "--rcheck" => action(self, RECENT_CHECK),
            "--update" => action(self, RECENT_UPDATE),
            "--remove" => action(self, RECENT_REMOVE),
            "--rttl" => self.check_set |= RECENT_TTL,
            "--reap" => self.check_set |= RECENT_REAP,
            "--rsource" => self.dest = false,
            _ => self.dest = true,
        }
        Ok(())
    }

    fn finish(self, family: Family) -> Result<Vec<u8>> {
        let mut data = vec![0u8; 228];
        data[0..4].copy_from_slice(&self.seconds.to_ne_bytes());
        data[4..8].copy_from_slice(&self.hit_count.to_ne_bytes());
        data[8] = self.check_set;
        data[9] = u8::from(self.invert);
        let name = self.name.unwrap_or_else(|| b"DEFAULT".to_vec());
        data[10..10 + name.len()].copy_from_slice(&name);
        data[210] = u8::from(self.dest);
        match (self.mask, family) {
            // libxt_recent sets the whole 16-byte mask, whatever the family.
            (None, _) => data[212..228].fill(0xff),
            (Some(mask), _) if mask.is_ipv4() == (family == Family::V4) => {
                put_addr(&mut data[212..228], mask)
            }
            (Some(mask), _) => {
                return Err(XtError::Invalid(format!(
                    "recent mask {mask} in the wrong family"
                )))
            }
        }
        Ok(data)
    }
}

impl Ports {
    fn finish(self) -> (&'static str, u8, Vec<u8>) {
        let full = (0, u16::MAX);
        let source = self.source.unwrap_or(full);
        let dest = self.dest.unwrap_or(full);
        let mut data = Vec::new();
        let push_range = |data: &mut Vec<u8>, (low, high): (u16, u16)| {
            data.extend_from_slice(&low.to_ne_bytes());
            data.extend_from_slice(&high.to_ne_bytes());
        };
        let inverted = u8::from(self.invert_source) | (u8::from(self.invert_dest) << 1);
        match self.protocol {
            PortProtocol::Tcp => {
                push_range(&mut data, source);
                push_range(&mut data, dest);
                data.extend_from_slice(&[0, 0, 0, inverted]);
                ("tcp", 0, data)
            }
            PortProtocol::Udp => {
                push_range(&mut data, source);
                push_range(&mut data, dest);
                data.extend_from_slice(&[inverted, 0]);
                ("udp", 0, data)
            }
            PortProtocol::Sctp => {
                // `xt_sctp_info`: ports, a chunk map (a bit for each of 256 types), the match type, four
                // flag infos and their count, then the flags.
                // Unlike tcp and udp, libxt_sctp leaves ports it was not given at 0-0 (the
                // flags say which apply) and marks each flag info's chunk type unused (-1).
                push_range(&mut data, self.dest.unwrap_or((0, 0)));
                push_range(&mut data, self.source.unwrap_or((0, 0)));
                data.resize(284, 0);
                for info in 0..4 {
                    data[268 + 3 * info] = 0xff;
                }
                let given =
                    u32::from(self.source.is_some()) | (u32::from(self.dest.is_some()) << 1);
                data.extend_from_slice(&given.to_ne_bytes());
                data.extend_from_slice(&u32::from(inverted).to_ne_bytes());
                ("sctp", 0, data)
            }
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

fn parse_port_range(value: &str) -> Result<(u16, u16)> {
    match value.split_once(':') {
        Some((low, high)) => {
            let low = if low.is_empty() { 0 } else { parse_port(low)? };
            let high = if high.is_empty() {
                u16::MAX
            } else {
                parse_port(high)?
            };
            if low > high {
                return Err(XtError::Invalid(format!("bad port range {value:?}")));
            }
            Ok((low, high))
        }
        None => {
            let port = parse_port(value)?;
            Ok((port, port))
        }
    }
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
