//! Conntrack entries as ctnetlink carries them: decoding a dumped entry's tuples,
//! encoding the dump and delete requests, and the filters choosing UDP entries. Pure.

use crate::error::{Error, Result};
use kproxy_netlink::{attrs, Message, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `NFNL_SUBSYS_CTNETLINK`.
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
/// `IPCTNL_MSG_CT_NEW`: the type of each dumped entry.
pub(crate) const IPCTNL_MSG_CT_NEW: u16 = 0;
/// `IPCTNL_MSG_CT_GET`.
const IPCTNL_MSG_CT_GET: u16 = 1;
/// `IPCTNL_MSG_CT_DELETE`.
const IPCTNL_MSG_CT_DELETE: u16 = 2;

/// `CTA_TUPLE_ORIG`.
const CTA_TUPLE_ORIG: u16 = 1;
/// `CTA_TUPLE_REPLY`.
const CTA_TUPLE_REPLY: u16 = 2;
/// `CTA_ID` (big endian u32).
const CTA_ID: u16 = 12;
/// `CTA_ZONE` (big endian u16).
const CTA_ZONE: u16 = 18;
/// `CTA_TUPLE_IP`.
const CTA_TUPLE_IP: u16 = 1;
/// `CTA_TUPLE_PROTO`.
const CTA_TUPLE_PROTO: u16 = 2;
/// `CTA_IP_V4_SRC`; `_DST` is one more, the IPv6 pair two more.
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
/// `CTA_PROTO_NUM` (u8).
const CTA_PROTO_NUM: u16 = 1;
/// `CTA_PROTO_SRC_PORT` (big endian u16).
const CTA_PROTO_SRC_PORT: u16 = 2;
/// `CTA_PROTO_DST_PORT` (big endian u16).
const CTA_PROTO_DST_PORT: u16 = 3;

/// IANA protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// The message type of a ctnetlink command.
pub(crate) fn ct_type(cmd: u16) -> u16 {
    NFNL_SUBSYS_CTNETLINK << 8 | cmd
}

/// An address family of the conntrack table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// IPv4 (`AF_INET`).
    V4,
    /// IPv6 (`AF_INET6`).
    V6,
}

impl Family {
    /// The `AF_*` number.
    pub(crate) fn af(self) -> u8 {
        match self {
            Family::V4 => libc::AF_INET as u8,
            Family::V6 => libc::AF_INET6 as u8,
        }
    }
}

/// One direction of a connection: addresses, protocol and (for UDP/TCP) ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IANA protocol number.
    pub proto: u8,
    /// Source port; 0 for protocols without ports.
    pub src_port: u16,
    /// Destination port; 0 for protocols without ports.
    pub dst_port: u16,
}

/// A conntrack entry: its two tuples, and what identifies it for deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The original direction (as the first packet was seen).
    pub orig: Tuple,
    /// The reply direction (after NAT: its source is the DNAT destination).
    pub reply: Tuple,
    /// The kernel's id of the entry, so a delete cannot hit a newer entry.
    pub id: Option<u32>,
    /// The conntrack zone, when not the default one.
    pub zone: Option<u16>,
}

/// Which UDP entries to delete; every field set must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Filter {
    /// The original destination address (a service IP).
    pub orig_dst: Option<IpAddr>,
    /// The original destination port (a node port).
    pub orig_dst_port: Option<u16>,
    /// The reply source address, i.e. where the flow was DNATed to (an endpoint).
    pub reply_src: Option<IpAddr>,
}

impl Filter {
    /// Whether `entry` is a UDP entry this filter selects.
    pub fn matches(&self, entry: &Entry) -> bool {
        entry.orig.proto == IPPROTO_UDP
            && self.orig_dst.is_none_or(|ip| entry.orig.dst == ip)
            && self.orig_dst_port.is_none_or(|p| entry.orig.dst_port == p)
            && self.reply_src.is_none_or(|ip| entry.reply.src == ip)
    }
}

/// The request dumping one family's conntrack table.
pub(crate) fn dump_request(family: Family, seq: u32) -> Vec<u8> {
    Message::nfnetlink(
        ct_type(IPCTNL_MSG_CT_GET),
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        family.af(),
    )
    .finish()
}

fn put_tuple(m: &mut Message, ty: u16, t: &Tuple) {
    m.begin_nest(ty).begin_nest(CTA_TUPLE_IP);
    match (t.src, t.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => m
            .put(CTA_IP_V4_SRC, &s.octets())
            .put(CTA_IP_V4_DST, &d.octets()),
        (s, d) => m
            .put(CTA_IP_V6_SRC, &v6(s).octets())
            .put(CTA_IP_V6_DST, &v6(d).octets()),
    };
    m.end_nest()
        .begin_nest(CTA_TUPLE_PROTO)
        .put(CTA_PROTO_NUM, &[t.proto])
        .put(CTA_PROTO_SRC_PORT, &t.src_port.to_be_bytes())
        .put(CTA_PROTO_DST_PORT, &t.dst_port.to_be_bytes())
        .end_nest()
        .end_nest();
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The request deleting `entry` by its original tuple (and id and zone, when known).
/// `ack` asks for an acknowledgement; failures are answered either way.
pub(crate) fn delete_request(family: Family, entry: &Entry, seq: u32, ack: bool) -> Vec<u8> {
    let flags = if ack {
        NLM_F_REQUEST | NLM_F_ACK
    } else {
        NLM_F_REQUEST
    };
    let mut m = Message::nfnetlink(ct_type(IPCTNL_MSG_CT_DELETE), flags, seq, family.af());
    put_tuple(&mut m, CTA_TUPLE_ORIG, &entry.orig);
    if let Some(id) = entry.id {
        m.put(CTA_ID, &id.to_be_bytes());
    }
    if let Some(zone) = entry.zone {
        m.put(CTA_ZONE, &zone.to_be_bytes());
    }
    m.finish()
}

fn malformed(what: &str) -> Error {
    Error::Netlink(kproxy_netlink::Error::Malformed(format!(
        "conntrack entry: {what}"
    )))
}

fn ip_of(payload: &[u8]) -> Result<IpAddr> {
    if let Ok(b) = <[u8; 4]>::try_from(payload) {
        Ok(IpAddr::V4(Ipv4Addr::from(b)))
    } else if let Ok(b) = <[u8; 16]>::try_from(payload) {
        Ok(IpAddr::V6(Ipv6Addr::from(b)))
    } else {
        Err(malformed("address of a bad length"))
    }
}

fn be16(payload: &[u8]) -> Result<u16> {
    <[u8; 2]>::try_from(payload)
        .map(u16::from_be_bytes)
        .map_err(|_| malformed("port of a bad length"))
}

fn parse_tuple(buf: &[u8]) -> Result<Tuple> {
    let (mut src, mut dst, mut proto) = (None, None, None);
    let (mut src_port, mut dst_port) = (0, 0);
    for attr in attrs(buf)? {
        match attr.ty {
            CTA_TUPLE_IP => {
                for ip in attrs(attr.payload)? {
                    match ip.ty {
                        CTA_IP_V4_SRC | CTA_IP_V6_SRC => src = Some(ip_of(ip.payload)?),
                        CTA_IP_V4_DST | CTA_IP_V6_DST => dst = Some(ip_of(ip.payload)?),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for p in attrs(attr.payload)? {
                    match p.ty {
                        CTA_PROTO_NUM => proto = p.payload.first().copied(),
                        CTA_PROTO_SRC_PORT => src_port = be16(p.payload)?,
                        CTA_PROTO_DST_PORT => dst_port = be16(p.payload)?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Tuple {
        src: src.ok_or_else(|| malformed("no source address"))?,
        dst: dst.ok_or_else(|| malformed("no destination address"))?,
        proto: proto.ok_or_else(|| malformed("no protocol"))?,
        src_port,
        dst_port,
    })
}

/// Decodes the attributes of one dumped entry.
pub(crate) fn parse_entry(buf: &[u8]) -> Result<Entry> {
    let (mut orig, mut reply, mut id, mut zone) = (None, None, None, None);
    for attr in attrs(buf)? {
        match attr.ty {
            CTA_TUPLE_ORIG => orig = Some(parse_tuple(attr.payload)?),
            CTA_TUPLE_REPLY => reply = Some(parse_tuple(attr.payload)?),
            CTA_ID => {
                id = <[u8; 4]>::try_from(attr.payload)
                    .ok()
                    .map(u32::from_be_bytes)
            }
            CTA_ZONE => {
                zone = <[u8; 2]>::try_from(attr.payload)
                    .ok()
                    .map(u16::from_be_bytes)
            }
            _ => {}
        }
    }
    Ok(Entry {
        orig: orig.ok_or_else(|| malformed("no original tuple"))?,
        reply: reply.ok_or_else(|| malformed("no reply tuple"))?,
        id,
        zone,
    })
}

#[cfg(test)]
mod tests;
