//! The packet to trace.

use serde::Serialize;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Transport protocol of the traced packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (protocol 6).
    Tcp,
    /// UDP (protocol 17).
    Udp,
    /// SCTP (protocol 132).
    Sctp,
    /// ICMP for IPv4 (protocol 1).
    Icmp,
    /// ICMP for IPv6 (protocol 58).
    Icmpv6,
}

impl Protocol {
    /// The lowercase name iptables uses.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
            Protocol::Icmp => "icmp",
            Protocol::Icmpv6 => "ipv6-icmp",
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
            Protocol::Icmp => 1,
            Protocol::Icmpv6 => 58,
        }
    }

    /// Whether packets of this protocol carry ports.
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp | Protocol::Sctp)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The text did not name a protocol kproxy can trace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported protocol {0:?} (expected tcp, udp, sctp, icmp or icmpv6)")]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    /// Parses a protocol name case-insensitively; an empty string means TCP, as in
    /// upstream's packet-flow tests.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "" | "tcp" | "6" => Ok(Protocol::Tcp),
            "udp" | "17" => Ok(Protocol::Udp),
            "sctp" | "132" => Ok(Protocol::Sctp),
            "icmp" | "1" => Ok(Protocol::Icmp),
            "icmpv6" | "ipv6-icmp" | "icmp6" | "58" => Ok(Protocol::Icmpv6),
            _ => Err(UnknownProtocol(s.to_string())),
        }
    }
}

/// One packet: the first packet of a new connection, as the tracer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Packet {
    /// Source address. A local address of the node means the node sent it (OUTPUT path).
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Transport protocol.
    pub protocol: Protocol,
    /// Source port, if known; rules on the source port are undecidable without it.
    pub sport: Option<u16>,
    /// Destination port (ignored for ICMP).
    pub dport: Option<u16>,
    /// Interface the packet arrives on, if known (`-i` matches are undecidable otherwise).
    pub in_iface: Option<String>,
    /// Interface the packet leaves by, if known (`-o` matches are undecidable otherwise).
    pub out_iface: Option<String>,
    /// The packet mark (`skb->mark`) on arrival.
    pub mark: u32,
}

impl Packet {
    /// A packet from `src` to `dst:dport` with no mark and unknown interfaces.
    pub fn new(src: IpAddr, dst: IpAddr, protocol: Protocol, dport: u16) -> Self {
        Packet {
            src,
            dst,
            protocol,
            sport: None,
            dport: Some(dport),
            in_iface: None,
            out_iface: None,
            mark: 0,
        }
    }
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> ", self.protocol, self.src)?;
        match (self.dst, self.dport) {
            (IpAddr::V6(v6), Some(port)) => write!(f, "[{v6}]:{port}"),
            (dst, Some(port)) => write!(f, "{dst}:{port}"),
            (dst, None) => write!(f, "{dst}"),
        }
    }
}
