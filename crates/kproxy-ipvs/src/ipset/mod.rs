//! ipsets for IPVS mode: typed sets and entries, the `ipset restore` text that
//! (re)fills them, kube-proxy's catalogue of sets, and the runner that feeds
//! `ipset restore`.

mod kube;
mod render;
mod runner;

pub use kube::KubeSet;
pub use render::{render_destroy, render_sync, RestoreText, SWAP_SET};
pub use runner::{IpsetCommand, IpsetRunner};

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::types::Protocol;

/// An ipset type kube-proxy's sets use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetType {
    /// `hash:ip`: addresses.
    HashIp,
    /// `hash:ip,port`: address, protocol and port.
    HashIpPort,
    /// `hash:ip,port,ip`: address, protocol, port and a second address.
    HashIpPortIp,
    /// `hash:ip,port,net`: address, protocol, port and a network.
    HashIpPortNet,
    /// `hash:net`: networks.
    HashNet,
    /// `bitmap:port`: ports 0-65535.
    BitmapPort,
}

impl SetType {
    /// The type's name as `ipset create` takes it.
    pub fn name(self) -> &'static str {
        match self {
            SetType::HashIp => "hash:ip",
            SetType::HashIpPort => "hash:ip,port",
            SetType::HashIpPortIp => "hash:ip,port,ip",
            SetType::HashIpPortNet => "hash:ip,port,net",
            SetType::HashNet => "hash:net",
            SetType::BitmapPort => "bitmap:port",
        }
    }
}

/// The address family of a hash set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4 (`family inet`).
    Inet,
    /// IPv6 (`family inet6`).
    Inet6,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Inet,
            IpAddr::V6(_) => Family::Inet6,
        }
    }

    /// The name `ipset create` takes.
    pub fn name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Inet6 => "inet6",
        }
    }
}

/// A network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    /// Network address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// One ipset entry; the variant decides which set types accept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Entry {
    /// For `hash:ip`.
    Ip(IpAddr),
    /// For `hash:ip,port`: `1.2.3.4,tcp:80`.
    IpPort(IpAddr, Protocol, u16),
    /// For `hash:ip,port,ip`: `1.2.3.4,tcp:80,1.2.3.4`.
    IpPortIp(IpAddr, Protocol, u16, IpAddr),
    /// For `hash:ip,port,net`: `1.2.3.4,tcp:80,10.0.0.0/8`.
    IpPortNet(IpAddr, Protocol, u16, Cidr),
    /// For `hash:net`.
    Net(Cidr),
    /// For `bitmap:port`.
    Port(u16),
}

impl Entry {
    fn set_type(&self) -> SetType {
        match self {
            Entry::Ip(_) => SetType::HashIp,
            Entry::IpPort(..) => SetType::HashIpPort,
            Entry::IpPortIp(..) => SetType::HashIpPortIp,
            Entry::IpPortNet(..) => SetType::HashIpPortNet,
            Entry::Net(_) => SetType::HashNet,
            Entry::Port(_) => SetType::BitmapPort,
        }
    }

    fn addresses(&self) -> Vec<IpAddr> {
        match self {
            Entry::Ip(a) | Entry::IpPort(a, ..) => vec![*a],
            Entry::IpPortIp(a, _, _, b) => vec![*a, *b],
            Entry::IpPortNet(a, _, _, n) => vec![*a, n.addr],
            Entry::Net(n) => vec![n.addr],
            Entry::Port(_) => Vec::new(),
        }
    }

    fn valid_prefix(&self) -> bool {
        let net = match self {
            Entry::IpPortNet(_, _, _, n) | Entry::Net(n) => n,
            _ => return true,
        };
        let max = match net.addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        (1..=max).contains(&net.prefix_len)
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Ip(a) => write!(f, "{a}"),
            Entry::IpPort(a, p, port) => write!(f, "{a},{}:{port}", p.as_str()),
            Entry::IpPortIp(a, p, port, b) => write!(f, "{a},{}:{port},{b}", p.as_str()),
            Entry::IpPortNet(a, p, port, n) => write!(f, "{a},{}:{port},{n}", p.as_str()),
            Entry::Net(n) => write!(f, "{n}"),
            Entry::Port(port) => write!(f, "{port}"),
        }
    }
}

/// Why a set refused an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{set} ({kind}) cannot hold {entry}: {reason}")]
pub struct InvalidEntry {
    /// The set's name.
    pub set: String,
    /// The set's type.
    pub kind: &'static str,
    /// The refused entry.
    pub entry: String,
    /// Why.
    pub reason: &'static str,
}

/// A named set with its wanted entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpSet {
    /// Set name (at most 31 characters).
    pub name: String,
    /// Set type.
    pub set_type: SetType,
    /// Address family (ignored by `bitmap:port`).
    pub family: Family,
    members: BTreeMap<Entry, Option<String>>,
}

impl IpSet {
    /// An empty set.
    pub fn new(name: impl Into<String>, set_type: SetType, family: Family) -> IpSet {
        IpSet {
            name: name.into(),
            set_type,
            family,
            members: BTreeMap::new(),
        }
    }

    /// Adds an entry, with an optional comment for `ipset list`, if the set
    /// can hold it (type, family, prefix length). Adding it again replaces the comment.
    pub fn add(&mut self, entry: Entry, comment: Option<&str>) -> Result<(), InvalidEntry> {
        let refuse = |reason| InvalidEntry {
            set: self.name.clone(),
            kind: self.set_type.name(),
            entry: entry.to_string(),
            reason,
        };
        if entry.set_type() != self.set_type {
            return Err(refuse("wrong entry type"));
        }
        if entry
            .addresses()
            .iter()
            .any(|a| Family::of(a) != self.family)
        {
            return Err(refuse("wrong address family"));
        }
        if !entry.valid_prefix() {
            return Err(refuse("bad prefix length"));
        }
        self.members.insert(entry, comment.map(str::to_string));
        Ok(())
    }

    /// The entries, sorted, with their comments.
    pub fn members(&self) -> impl Iterator<Item = (&Entry, Option<&str>)> {
        self.members.iter().map(|(e, c)| (e, c.as_deref()))
    }
}
