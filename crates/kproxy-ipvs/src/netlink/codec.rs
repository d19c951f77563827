//! The IPVS generic netlink protocol (`include/uapi/linux/ip_vs.h`) and the
//! controller query that resolves the `IPVS` family: requests to bytes,
//! reply attributes to values. Pure; no sockets.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::wire::{attrs, genl_message, Attr, GenlMessage, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use crate::error::{Error, Result};
use crate::types::{
    ConnectionCounts, Destination, ForwardMethod, Persistence, Protocol, RealServer, RealServerKey,
    SchedFlags, Scheduler, ServiceKey, Timeouts, VirtualServer,
};

/// The generic netlink controller's fixed family id (`GENL_ID_CTRL`).
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
/// The family name IPVS registers.
pub(crate) const IPVS_FAMILY_NAME: &str = "IPVS";
const IPVS_GENL_VERSION: u8 = 1;

const CMD_NEW_SERVICE: u8 = 1;
const CMD_SET_SERVICE: u8 = 2;
const CMD_DEL_SERVICE: u8 = 3;
const CMD_GET_SERVICE: u8 = 4;
const CMD_NEW_DEST: u8 = 5;
const CMD_SET_DEST: u8 = 6;
const CMD_DEL_DEST: u8 = 7;
const CMD_GET_DEST: u8 = 8;
const CMD_SET_CONFIG: u8 = 12;
const CMD_FLUSH: u8 = 17;

const CMD_ATTR_SERVICE: u16 = 1;
const CMD_ATTR_DEST: u16 = 2;
const CMD_ATTR_TIMEOUT_TCP: u16 = 4;
const CMD_ATTR_TIMEOUT_TCP_FIN: u16 = 5;
const CMD_ATTR_TIMEOUT_UDP: u16 = 6;

const SVC_ATTR_AF: u16 = 1;
const SVC_ATTR_PROTOCOL: u16 = 2;
const SVC_ATTR_ADDR: u16 = 3;
const SVC_ATTR_PORT: u16 = 4;
const SVC_ATTR_SCHED_NAME: u16 = 6;
const SVC_ATTR_FLAGS: u16 = 7;
const SVC_ATTR_TIMEOUT: u16 = 8;
const SVC_ATTR_NETMASK: u16 = 9;

const DEST_ATTR_ADDR: u16 = 1;
const DEST_ATTR_PORT: u16 = 2;
const DEST_ATTR_FWD_METHOD: u16 = 3;
const DEST_ATTR_WEIGHT: u16 = 4;
const DEST_ATTR_U_THRESH: u16 = 5;
const DEST_ATTR_L_THRESH: u16 = 6;
const DEST_ATTR_ACTIVE_CONNS: u16 = 7;
const DEST_ATTR_INACT_CONNS: u16 = 8;
const DEST_ATTR_ADDR_FAMILY: u16 = 11;

const SVC_F_PERSISTENT: u32 = 0x1;
const SVC_F_HASHED: u32 = 0x2;
const SVC_F_SCHED1: u32 = 0x8;
const SVC_F_SCHED2: u32 = 0x10;

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;

/// One IPVS request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request<'a> {
    /// `IPVS_CMD_NEW_SERVICE`.
    NewService(&'a VirtualServer),
    /// `IPVS_CMD_SET_SERVICE`.
    SetService(&'a VirtualServer),
    /// `IPVS_CMD_DEL_SERVICE`.
    DelService(&'a ServiceKey),
    /// `IPVS_CMD_GET_SERVICE` as a dump of all services.
    DumpServices,
    /// `IPVS_CMD_NEW_DEST`.
    NewDest(&'a ServiceKey, &'a RealServer),
    /// `IPVS_CMD_SET_DEST`.
    SetDest(&'a ServiceKey, &'a RealServer),
    /// `IPVS_CMD_DEL_DEST`.
    DelDest(&'a ServiceKey, &'a RealServerKey),
    /// `IPVS_CMD_GET_DEST` as a dump of one service's destinations.
    DumpDests(&'a ServiceKey),
    /// `IPVS_CMD_FLUSH`: delete every service.
    Flush,
    /// `IPVS_CMD_SET_CONFIG`: connection timeouts.
    SetTimeouts(Timeouts),
}

/// The generic netlink message asking the controller for `name`'s family id.
pub(crate) fn get_family_request(name: &str, seq: u32) -> Vec<u8> {
    let mut m = genl_message(
        GENL_ID_CTRL,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        CTRL_CMD_GETFAMILY,
        1,
    );
    m.put_str(CTRL_ATTR_FAMILY_NAME, name);
    m.finish()
}

/// The family id in the controller's answer to [`get_family_request`].
pub(crate) fn family_id(reply_attrs: &[u8]) -> Result<u16> {
    attrs(reply_attrs)?
        .iter()
        .find(|a| a.ty == CTRL_ATTR_FAMILY_ID)
        .ok_or_else(|| Error::Malformed("no family id in the controller's reply".into()))?
        .u16()
        .map_err(Error::from)
}

/// The bytes of `req` for the IPVS family `family` with sequence number `seq`.
///
/// With `ack`, a change request asks for an acknowledgement; without it the
/// kernel answers only when the request fails. Dumps ignore `ack`.
pub(crate) fn encode(family: u16, seq: u32, req: &Request<'_>, ack: bool) -> Vec<u8> {
    let ack = if ack { NLM_F_ACK } else { 0 };
    let (cmd, flags) = match req {
        Request::NewService(_) => (CMD_NEW_SERVICE, ack),
        Request::SetService(_) => (CMD_SET_SERVICE, ack),
        Request::DelService(_) => (CMD_DEL_SERVICE, ack),
        Request::DumpServices => (CMD_GET_SERVICE, NLM_F_DUMP),
        Request::NewDest(..) => (CMD_NEW_DEST, ack),
        Request::SetDest(..) => (CMD_SET_DEST, ack),
        Request::DelDest(..) => (CMD_DEL_DEST, ack),
        Request::DumpDests(_) => (CMD_GET_DEST, NLM_F_DUMP),
        Request::Flush => (CMD_FLUSH, ack),
        Request::SetTimeouts(_) => (CMD_SET_CONFIG, ack),
    };
    let mut m = genl_message(family, NLM_F_REQUEST | flags, seq, cmd, IPVS_GENL_VERSION);
    match req {
        Request::NewService(vs) | Request::SetService(vs) => put_service(&mut m, vs),
        Request::DelService(key) | Request::DumpDests(key) => put_service_key(&mut m, key),
        Request::NewDest(key, rs) | Request::SetDest(key, rs) => {
            put_service_key(&mut m, key);
            put_dest(&mut m, rs);
        }
        Request::DelDest(key, rs) => {
            put_service_key(&mut m, key);
            m.begin_nest(CMD_ATTR_DEST);
            put_dest_key(&mut m, rs);
            m.end_nest();
        }
        Request::SetTimeouts(t) => {
            m.put_u32(CMD_ATTR_TIMEOUT_TCP, t.tcp_secs)
                .put_u32(CMD_ATTR_TIMEOUT_TCP_FIN, t.tcp_fin_secs)
                .put_u32(CMD_ATTR_TIMEOUT_UDP, t.udp_secs);
        }
        Request::DumpServices | Request::Flush => {}
    }
    m.finish()
}

fn af(addr: &IpAddr) -> u16 {
    match addr {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

fn addr_bytes(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn put_key_attrs(m: &mut GenlMessage, key: &ServiceKey) {
    m.put_u16(SVC_ATTR_AF, af(&key.addr))
        .put_u16(SVC_ATTR_PROTOCOL, key.protocol.number())
        .put(SVC_ATTR_ADDR, &addr_bytes(&key.addr))
        .put(SVC_ATTR_PORT, &key.port.to_be_bytes());
}

fn put_service_key(m: &mut GenlMessage, key: &ServiceKey) {
    m.begin_nest(CMD_ATTR_SERVICE);
    put_key_attrs(m, key);
    m.end_nest();
}

/// `struct ip_vs_flags { flags, mask }`: all bits given, all bits meant.
fn service_flags(vs: &VirtualServer) -> [u8; 8] {
    let mut flags = 0;
    if vs.persistence.is_some() {
        flags |= SVC_F_PERSISTENT;
    }
    if vs.sched_flags.fallback {
        flags |= SVC_F_SCHED1;
    }
    if vs.sched_flags.port {
        flags |= SVC_F_SCHED2;
    }
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&u32::to_ne_bytes(flags));
    out[4..].copy_from_slice(&u32::MAX.to_ne_bytes());
    out
}

/// The kernel's netmask attribute: a network-order mask for IPv4, a prefix length for IPv6.
fn netmask(addr: &IpAddr, prefix_len: u8) -> [u8; 4] {
    match addr {
        IpAddr::V4(_) => {
            let bits = u32::MAX
                .checked_shl(32 - u32::from(prefix_len.min(32)))
                .unwrap_or(0);
            bits.to_be_bytes()
        }
        IpAddr::V6(_) => u32::from(prefix_len.min(128)).to_ne_bytes(),
    }
}

fn full_prefix(addr: &IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn put_service(m: &mut GenlMessage, vs: &VirtualServer) {
    let (timeout, prefix) = match vs.persistence {
        Some(p) => (p.timeout_secs, p.prefix_len),
        None => (0, full_prefix(&vs.key.addr)),
    };
    m.begin_nest(CMD_ATTR_SERVICE);
    put_key_attrs(m, &vs.key);
    m.put_str(SVC_ATTR_SCHED_NAME, vs.scheduler.name())
        .put(SVC_ATTR_FLAGS, &service_flags(vs))
        .put_u32(SVC_ATTR_TIMEOUT, timeout)
        .put(SVC_ATTR_NETMASK, &netmask(&vs.key.addr, prefix));
    m.end_nest();
}

fn put_dest_key(m: &mut GenlMessage, rs: &RealServerKey) {
    m.put(DEST_ATTR_ADDR, &addr_bytes(&rs.addr))
        .put(DEST_ATTR_PORT, &rs.port.to_be_bytes())
        .put_u16(DEST_ATTR_ADDR_FAMILY, af(&rs.addr));
}

fn put_dest(m: &mut GenlMessage, rs: &RealServer) {
    m.begin_nest(CMD_ATTR_DEST);
    put_dest_key(m, &rs.key);
    m.put_u32(DEST_ATTR_FWD_METHOD, rs.forward.code())
        .put_u32(DEST_ATTR_WEIGHT, rs.weight)
        .put_u32(DEST_ATTR_U_THRESH, 0)
        .put_u32(DEST_ATTR_L_THRESH, 0);
    m.end_nest();
}

fn find<'a>(list: &[Attr<'a>], ty: u16, what: &str) -> Result<Attr<'a>> {
    list.iter()
        .copied()
        .find(|a| a.ty == ty)
        .ok_or_else(|| Error::Malformed(format!("{what} has no attribute {ty}")))
}

fn nested<'a>(reply_attrs: &'a [u8], ty: u16, what: &str) -> Result<Vec<Attr<'a>>> {
    let top = attrs(reply_attrs)?;
    Ok(attrs(find(&top, ty, what)?.payload)?)
}

fn decode_addr(family: u16, a: Attr<'_>) -> Result<IpAddr> {
    let p = a.payload;
    match family {
        AF_INET if p.len() >= 4 => Ok(IpAddr::V4(Ipv4Addr::new(p[0], p[1], p[2], p[3]))),
        AF_INET6 if p.len() >= 16 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&p[..16]);
            Ok(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => Err(Error::Malformed(format!(
            "address family {family} with {} address bytes",
            p.len()
        ))),
    }
}

fn decode_port(a: Attr<'_>) -> Result<u16> {
    Ok(u16::from_be(a.u16()?))
}

fn decode_prefix(addr: &IpAddr, raw: [u8; 4]) -> u8 {
    match addr {
        IpAddr::V4(_) => u32::from_be_bytes(raw).count_ones() as u8,
        IpAddr::V6(_) => u32::from_ne_bytes(raw).min(128) as u8,
    }
}

/// The virtual server in one reply to [`Request::DumpServices`].
///
/// Services the kernel reports by firewall mark, or with a protocol kube-proxy
/// does not use, decode to `Ok(None)`.
pub(crate) fn decode_service(reply_attrs: &[u8]) -> Result<Option<VirtualServer>> {
    let svc = nested(reply_attrs, CMD_ATTR_SERVICE, "service reply")?;
    let Some(addr_attr) = svc.iter().copied().find(|a| a.ty == SVC_ATTR_ADDR) else {
        return Ok(None);
    };
    let family = find(&svc, SVC_ATTR_AF, "service")?.u16()?;
    let Some(protocol) = Protocol::from_number(find(&svc, SVC_ATTR_PROTOCOL, "service")?.u16()?)
    else {
        return Ok(None);
    };
    let addr = decode_addr(family, addr_attr)?;
    let key = ServiceKey {
        addr,
        port: decode_port(find(&svc, SVC_ATTR_PORT, "service")?)?,
        protocol,
    };
    let flags = find(&svc, SVC_ATTR_FLAGS, "service")?.u32()?;
    if flags & SVC_F_HASHED == 0 {
        return Err(Error::Malformed(format!("service {key} is not hashed")));
    }
    let mask = find(&svc, SVC_ATTR_NETMASK, "service")?.payload;
    let raw_mask: [u8; 4] = mask
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::Malformed(format!("service {key} has a short netmask")))?;
    let persistence = (flags & SVC_F_PERSISTENT != 0).then(|| -> Result<Persistence> {
        Ok(Persistence {
            timeout_secs: find(&svc, SVC_ATTR_TIMEOUT, "service")?.u32()?,
            prefix_len: decode_prefix(&addr, raw_mask),
        })
    });
    Ok(Some(VirtualServer {
        key,
        scheduler: Scheduler::from_name(find(&svc, SVC_ATTR_SCHED_NAME, "service")?.str()?),
        sched_flags: SchedFlags {
            fallback: flags & SVC_F_SCHED1 != 0,
            port: flags & SVC_F_SCHED2 != 0,
        },
        persistence: persistence.transpose()?,
    }))
}

/// The destination in one reply to [`Request::DumpDests`] of a service of family `service_addr`.
pub(crate) fn decode_dest(reply_attrs: &[u8], service_addr: &IpAddr) -> Result<Destination> {
    let d = nested(reply_attrs, CMD_ATTR_DEST, "destination reply")?;
    let family = match d.iter().find(|a| a.ty == DEST_ATTR_ADDR_FAMILY) {
        Some(a) => a.u16()?,
        None => af(service_addr),
    };
    let fwd = find(&d, DEST_ATTR_FWD_METHOD, "destination")?.u32()?;
    let count = |ty| -> Result<u32> {
        d.iter()
            .find(|a| a.ty == ty)
            .map_or(Ok(0), |a| Ok(a.u32()?))
    };
    Ok(Destination {
        server: RealServer {
            key: RealServerKey {
                addr: decode_addr(family, find(&d, DEST_ATTR_ADDR, "destination")?)?,
                port: decode_port(find(&d, DEST_ATTR_PORT, "destination")?)?,
            },
            weight: find(&d, DEST_ATTR_WEIGHT, "destination")?.u32()?,
            forward: ForwardMethod::from_code(fwd)
                .ok_or_else(|| Error::Malformed(format!("forwarding method {fwd}")))?,
        },
        connections: ConnectionCounts {
            active: count(DEST_ATTR_ACTIVE_CONNS)?,
            inactive: count(DEST_ATTR_INACT_CONNS)?,
        },
    })
}

#[cfg(test)]
mod tests;
