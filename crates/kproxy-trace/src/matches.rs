//! Match conditions of a rule and how one packet is judged against them.

use crate::addr::{is_broadcast, IpNet};
use crate::ipset::IpSets;
use crate::packet::Protocol;
use crate::text::Text;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Which side of the packet a condition looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The source address or port.
    Source,
    /// The destination address or port.
    Destination,
}

/// Which ports a `multiport` condition looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultiportSide {
    /// `--sports`
    Source,
    /// `--dports`
    Destination,
    /// `--ports`: either port.
    Either,
}

/// An inclusive port range (`80` is `80:80`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub from: u16,
    /// Last port.
    pub to: u16,
}

impl PortRange {
    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.from <= port && port <= self.to
    }
}

/// The protocol named by `-p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolSpec {
    /// `all` or `0`.
    All,
    /// A protocol number (names are converted).
    Number(u8),
}

/// An address type of the `addrtype` match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrType {
    /// An address of this node.
    Local,
    /// An ordinary remote address.
    Unicast,
    /// A broadcast address.
    Broadcast,
    /// A multicast address.
    Multicast,
    /// Any other type kproxy cannot decide (`ANYCAST`, `BLACKHOLE`, ...).
    Other,
}

/// Connection-tracking states, as bits (`--ctstate` / `--state`).
pub mod ct_state {
    /// The first packet of a connection.
    pub const NEW: u8 = 1;
    /// A packet of a connection that has seen replies.
    pub const ESTABLISHED: u8 = 2;
    /// A packet related to another connection.
    pub const RELATED: u8 = 4;
    /// A packet conntrack could not classify.
    pub const INVALID: u8 = 8;
    /// A packet exempted by `NOTRACK`/`CT --notrack`.
    pub const UNTRACKED: u8 = 16;
    /// The connection's source was rewritten.
    pub const SNAT: u8 = 32;
    /// The connection's destination was rewritten.
    pub const DNAT: u8 = 64;
}

/// What a `recent` condition does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecentAction {
    /// `--set`: add the client to the list; always matches.
    Set,
    /// `--rcheck` / `--update`: matches if the client is in the list.
    Check,
    /// `--remove`: matches if the client is in the list, and removes it.
    Remove,
}

/// The link-layer packet type of the `pkttype` match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// `unicast`
    Unicast,
    /// `broadcast`
    Broadcast,
    /// `multicast`
    Multicast,
}

/// One condition of a rule. `negated` is the `!` in front of it.
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    /// `-s NET`
    Source { negated: bool, net: IpNet },
    /// `-d NET`
    Destination { negated: bool, net: IpNet },
    /// `-p PROTO`
    Protocol {
        negated: bool,
        protocol: ProtocolSpec,
    },
    /// `-i IFACE` (a trailing `+` is a prefix wildcard)
    InInterface { negated: bool, name: Box<str> },
    /// `-o IFACE`
    OutInterface { negated: bool, name: Box<str> },
    /// `-f`: a non-first fragment (never true for the traced packet).
    Fragment { negated: bool },
    /// `-m comment --comment TEXT`: always matches.
    Comment(Text),
    /// `--sport`/`--dport` of the tcp, udp and sctp modules.
    Port {
        negated: bool,
        direction: Direction,
        range: PortRange,
    },
    /// `-m multiport`
    Multiport {
        negated: bool,
        side: MultiportSide,
        ranges: Vec<PortRange>,
    },
    /// `--syn` / `--tcp-flags MASK SET` (the traced packet is a SYN).
    TcpFlags { negated: bool, mask: u8, set: u8 },
    /// `-m addrtype --src-type/--dst-type`
    AddrType {
        negated: bool,
        direction: Direction,
        types: Vec<AddrType>,
    },
    /// `-m conntrack --ctstate` / `-m state --state` (bits of [`ct_state`]).
    CtState { negated: bool, states: u8 },
    /// `-m conntrack --ctstatus`: the traced first packet has no status bits.
    CtStatus { negated: bool, none_listed: bool },
    /// `-m mark --mark VALUE[/MASK]`
    Mark {
        negated: bool,
        value: u32,
        mask: u32,
    },
    /// `-m connmark --mark VALUE[/MASK]`
    ConnMark {
        negated: bool,
        value: u32,
        mask: u32,
    },
    /// `-m statistic`: matches with this probability.
    Statistic { negated: bool, probability: f64 },
    /// `-m recent`
    Recent {
        negated: bool,
        name: Text,
        action: RecentAction,
    },
    /// `-m set --match-set NAME FLAGS`
    Set {
        negated: bool,
        name: Box<str>,
        directions: Box<[Direction]>,
    },
    /// `-m iprange --src-range/--dst-range FROM-TO`
    IpRange {
        negated: bool,
        direction: Direction,
        from: IpAddr,
        to: IpAddr,
    },
    /// `-m pkttype --pkt-type TYPE`
    PktType { negated: bool, kind: PacketType },
    /// A module that always matches for one packet (`nfacct`, `limit`, `hashlimit`).
    Always { module: Box<str> },
    /// A known module whose outcome depends on facts the tracer does not have
    /// (`physdev`, `socket`, `mac`, `owner`, ...).
    Undecidable { module: Box<str>, detail: Box<str> },
    /// A module or option kproxy does not know; kept and reported.
    Unknown { module: Box<str>, reason: Box<str> },
}

/// How a condition judges the traced packet.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// It holds.
    Yes,
    /// It does not hold.
    No,
    /// It holds with this probability (`statistic`).
    Probability(f64),
    /// The tracer cannot tell; the text says why.
    Unknown(String),
}

impl Decision {
    fn from_bool(holds: bool, negated: bool) -> Decision {
        if holds != negated {
            Decision::Yes
        } else {
            Decision::No
        }
    }

    fn negate_if(self, negated: bool) -> Decision {
        match (self, negated) {
            (d, false) => d,
            (Decision::Yes, true) => Decision::No,
            (Decision::No, true) => Decision::Yes,
            (Decision::Probability(p), true) => Decision::Probability(1.0 - p),
            (unknown, true) => unknown,
        }
    }
}

/// What a condition may look at: the packet as it is at this point of its path.
pub(crate) struct PacketView<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: Protocol,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub in_iface: Option<&'a str>,
    pub out_iface: Option<&'a str>,
    pub mark: u32,
    pub ctmark: u32,
    pub ct_states: u8,
    pub local: &'a dyn Fn(IpAddr) -> bool,
    pub recent: &'a BTreeSet<String>,
    pub ipsets: &'a IpSets,
}

impl Match {
    /// Judges the packet against this condition.
    pub(crate) fn decide(&self, p: &PacketView<'_>) -> Decision {
        match self {
            Match::Source { negated, net } => Decision::from_bool(net.contains(p.src), *negated),
            Match::Destination { negated, net } => {
                Decision::from_bool(net.contains(p.dst), *negated)
            }
            Match::Protocol { negated, protocol } => {
                let holds = match protocol {
                    ProtocolSpec::All => true,
                    ProtocolSpec::Number(n) => *n == p.protocol.number(),
                };
                Decision::from_bool(holds, *negated)
            }
            Match::InInterface { negated, name } => iface(p.in_iface, name, "-i", *negated),
            Match::OutInterface { negated, name } => iface(p.out_iface, name, "-o", *negated),
            Match::Fragment { negated } => Decision::from_bool(false, *negated),
            Match::Comment(_) | Match::Always { .. } => Decision::Yes,
            Match::Port {
                negated,
                direction,
                range,
            } => port(p, *direction, *negated, |port| range.contains(port)),
            Match::Multiport {
                negated,
                side,
                ranges,
            } => multiport(p, *side, ranges, *negated),
            Match::TcpFlags { negated, mask, set } => {
                const SYN: u8 = 0x02;
                Decision::from_bool(SYN & mask == *set, *negated)
            }
            Match::AddrType {
                negated,
                direction,
                types,
            } => addr_type(p, *direction, types, *negated),
            Match::CtState { negated, states } => {
                Decision::from_bool(p.ct_states & states != 0, *negated)
            }
            Match::CtStatus {
                negated,
                none_listed,
            } => Decision::from_bool(*none_listed, *negated),
            Match::Mark {
                negated,
                value,
                mask,
            } => Decision::from_bool(p.mark & mask == *value, *negated),
            Match::ConnMark {
                negated,
                value,
                mask,
            } => Decision::from_bool(p.ctmark & mask == *value, *negated),
            Match::Statistic {
                negated,
                probability,
            } => Decision::Probability(*probability).negate_if(*negated),
            Match::Recent {
                negated,
                name,
                action,
            } => {
                let holds = match action {
                    RecentAction::Set => true,
                    RecentAction::Check | RecentAction::Remove => p.recent.contains(&**name),
                };
                Decision::from_bool(holds, *negated)
            }
            Match::Set {
                negated,
                name,
                directions,
            } => match p.ipsets.contains(name, directions, p) {
                Some(holds) => Decision::from_bool(holds, *negated),
                None => Decision::Unknown(format!("ipset {name} is not known")),
            },
            Match::IpRange {
                negated,
                direction,
                from,
                to,
            } => {
                let ip = match direction {
                    Direction::Source => p.src,
                    Direction::Destination => p.dst,
                };
                let holds = ip.is_ipv4() == from.is_ipv4() && *from <= ip && ip <= *to;
                Decision::from_bool(holds, *negated)
            }
            Match::PktType { negated, kind } => {
                let actual = if is_broadcast(p.dst) {
                    PacketType::Broadcast
                } else if p.dst.is_multicast() {
                    PacketType::Multicast
                } else {
                    PacketType::Unicast
                };
                Decision::from_bool(actual == *kind, *negated)
            }
            Match::Undecidable { module, detail } => {
                Decision::Unknown(format!("-m {module} {detail} depends on facts not traced"))
            }
            Match::Unknown { module, reason } => {
                Decision::Unknown(format!("-m {module} is not understood ({reason})"))
            }
        }
    }
}

fn iface(actual: Option<&str>, pattern: &str, flag: &str, negated: bool) -> Decision {
    match actual {
        Some(actual) => {
            let holds = match pattern.strip_suffix('+') {
                Some(prefix) => actual.starts_with(prefix),
                None => actual == pattern,
            };
            Decision::from_bool(holds, negated)
        }
        None => Decision::Unknown(format!("{flag} {pattern}: interface not given")),
    }
}

fn port(
    p: &PacketView<'_>,
    direction: Direction,
    negated: bool,
    test: impl Fn(u16) -> bool,
) -> Decision {
    let (value, name) = match direction {
        Direction::Source => (p.sport, "source"),
        Direction::Destination => (p.dport, "destination"),
    };
    if !p.protocol.has_ports() {
        return Decision::No;
    }
    match value {
        Some(port) => Decision::from_bool(test(port), negated),
        None => Decision::Unknown(format!("{name} port not given")),
    }
}

fn multiport(
    p: &PacketView<'_>,
    side: MultiportSide,
    ranges: &[PortRange],
    negated: bool,
) -> Decision {
    let any = |port: u16| ranges.iter().any(|r| r.contains(port));
    match side {
        MultiportSide::Source => port(p, Direction::Source, negated, any),
        MultiportSide::Destination => port(p, Direction::Destination, negated, any),
        MultiportSide::Either => {
            let dst = port(p, Direction::Destination, false, any);
            match (dst, port(p, Direction::Source, false, any)) {
                (Decision::Yes, _) | (_, Decision::Yes) => Decision::from_bool(true, negated),
                (Decision::No, Decision::No) => Decision::from_bool(false, negated),
                (_, unknown) => unknown,
            }
        }
    }
}

fn addr_type(
    p: &PacketView<'_>,
    direction: Direction,
    types: &[AddrType],
    negated: bool,
) -> Decision {
    let ip = match direction {
        Direction::Source => p.src,
        Direction::Destination => p.dst,
    };
    let actual = if (p.local)(ip) {
        AddrType::Local
    } else if is_broadcast(ip) {
        AddrType::Broadcast
    } else if ip.is_multicast() {
        AddrType::Multicast
    } else {
        AddrType::Unicast
    };
    if types.contains(&actual) {
        return Decision::from_bool(true, negated);
    }
    if types.contains(&AddrType::Other) {
        return Decision::Unknown("addrtype other than LOCAL/UNICAST/BROADCAST/MULTICAST".into());
    }
    Decision::from_bool(false, negated)
}
