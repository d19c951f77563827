use super::*;
use crate::netlink::wire::{replies, Reply};

fn tcp(addr: &str, port: u16) -> ServiceKey {
    ServiceKey {
        addr: addr.parse().unwrap(),
        port,
        protocol: Protocol::Tcp,
    }
}

/// The attributes of the first message in `bytes`, as a reply would carry them.
fn body(bytes: &[u8]) -> &[u8] {
    &bytes[20..]
}

/// A dump reply the way the kernel writes one: 16-byte address, hashed flag, stats.
fn kernel_service_reply(family: u16, addr: &[u8], flags: u32, netmask: [u8; 4]) -> Vec<u8> {
    let mut full = [0u8; 16];
    full[..addr.len()].copy_from_slice(addr);
    let mut f = [0u8; 8];
    f[..4].copy_from_slice(&(flags | SVC_F_HASHED).to_ne_bytes());
    f[4..].copy_from_slice(&u32::MAX.to_ne_bytes());
    let mut m = genl_message(0x22, 0, 1, CMD_NEW_SERVICE, 1);
    m.begin_nest(CMD_ATTR_SERVICE)
        .put_u16(SVC_ATTR_AF, family)
        .put_u16(SVC_ATTR_PROTOCOL, 17)
        .put(SVC_ATTR_ADDR, &full)
        .put(SVC_ATTR_PORT, &53u16.to_be_bytes())
        .put_str(SVC_ATTR_SCHED_NAME, "mh")
        .put(SVC_ATTR_FLAGS, &f)
        .put_u32(SVC_ATTR_TIMEOUT, 10800)
        .put(SVC_ATTR_NETMASK, &netmask)
        .begin_nest(10)
        .put_u32(1, 5)
        .end_nest()
        .end_nest();
    m.finish()
}

#[test]
fn new_service_request_matches_the_kernel_abi_byte_for_byte() {
    let vs = VirtualServer::new(tcp("10.0.0.1", 80));
    let bytes = encode(0x22, 9, &Request::NewService(&vs), true);
    #[rustfmt::skip]
    let want: Vec<u8> = [
        &[92u32.to_ne_bytes().as_slice(), &0x22u16.to_ne_bytes(), &5u16.to_ne_bytes(),
          &9u32.to_ne_bytes(), &0u32.to_ne_bytes(), &[1, 1, 0, 0]].concat()[..],
        &[72, 0, 1, 0x80],                     // nested IPVS_CMD_ATTR_SERVICE
        &[6, 0, 1, 0], &2u16.to_ne_bytes(), &[0, 0],   // AF_INET
        &[6, 0, 2, 0], &6u16.to_ne_bytes(), &[0, 0],   // TCP
        &[8, 0, 3, 0, 10, 0, 0, 1],            // address
        &[6, 0, 4, 0, 0, 80, 0, 0],            // port, network order
        &[7, 0, 6, 0, b'r', b'r', 0, 0],       // scheduler
        &[12, 0, 7, 0], &0u32.to_ne_bytes(), &u32::MAX.to_ne_bytes(),
        &[8, 0, 8, 0], &0u32.to_ne_bytes(),    // timeout
        &[8, 0, 9, 0, 255, 255, 255, 255],     // netmask
    ]
    .concat();
    assert_eq!(bytes, want);
}

#[test]
fn a_persistent_ipv4_mh_service_survives_encode_then_kernel_style_decode() {
    let reply = kernel_service_reply(
        AF_INET,
        &[10, 96, 0, 10],
        SVC_F_PERSISTENT | SVC_F_SCHED1 | SVC_F_SCHED2,
        [255, 255, 255, 0],
    );
    let vs = decode_service(body(&reply)).unwrap().unwrap();
    assert_eq!(vs.key.to_string(), "10.96.0.10:53/UDP");
    assert_eq!(vs.scheduler, Scheduler::MaglevHashing);
    assert_eq!(
        vs.sched_flags,
        SchedFlags {
            fallback: true,
            port: true
        }
    );
    assert_eq!(
        vs.persistence,
        Some(Persistence {
            timeout_secs: 10800,
            prefix_len: 24
        })
    );
    let again = encode(0x22, 1, &Request::SetService(&vs), true);
    assert_eq!(
        decode_service(body(&again)).err().map(|e| e.to_string()),
        Some("malformed netlink reply: service 10.96.0.10:53/UDP is not hashed".into())
    );
}

#[test]
fn an_ipv6_service_decodes_its_prefix_length() {
    let addr: Ipv6Addr = "fd00::10".parse().unwrap();
    let reply = kernel_service_reply(
        AF_INET6,
        &addr.octets(),
        SVC_F_PERSISTENT,
        64u32.to_ne_bytes(),
    );
    let vs = decode_service(body(&reply)).unwrap().unwrap();
    assert_eq!(vs.key.to_string(), "[fd00::10]:53/UDP");
    assert_eq!(vs.persistence.map(|p| p.prefix_len), Some(64));
}

#[test]
fn a_non_persistent_service_sends_a_full_netmask() {
    let mut vs = VirtualServer::new(tcp("fd00::1", 443));
    vs.key.protocol = Protocol::Sctp;
    let bytes = encode(0x22, 1, &Request::NewService(&vs), true);
    let svc = nested(body(&bytes), CMD_ATTR_SERVICE, "t").unwrap();
    assert_eq!(
        find(&svc, SVC_ATTR_NETMASK, "t").unwrap().u32().unwrap(),
        128
    );
    assert_eq!(
        find(&svc, SVC_ATTR_PROTOCOL, "t").unwrap().u16().unwrap(),
        132
    );
    assert_eq!(find(&svc, SVC_ATTR_ADDR, "t").unwrap().payload.len(), 16);
}

#[test]
fn a_destination_round_trips_with_its_connection_counts() {
    let key = tcp("10.0.0.1", 80);
    let mut rs = RealServer::new("10.244.1.5".parse().unwrap(), 8080);
    rs.weight = 3;
    rs.forward = ForwardMethod::DirectRoute;
    let mut reply = encode(0x22, 1, &Request::NewDest(&key, &rs), true);
    let mut m = genl_message(0x22, 0, 1, 0, 1);
    m.begin_nest(CMD_ATTR_DEST)
        .put(
            DEST_ATTR_ADDR,
            &[10, 244, 1, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        )
        .put(DEST_ATTR_PORT, &8080u16.to_be_bytes())
        .put_u32(DEST_ATTR_FWD_METHOD, 3)
        .put_u32(DEST_ATTR_WEIGHT, 3)
        .put_u32(DEST_ATTR_ACTIVE_CONNS, 4)
        .put_u32(DEST_ATTR_INACT_CONNS, 2)
        .end_nest();
    reply = [reply, m.finish()].concat();
    let parsed = replies(&reply).unwrap();
    let Reply::Data { attrs, .. } = parsed[1] else {
        panic!("not data")
    };
    let d = decode_dest(attrs, &key.addr).unwrap();
    assert_eq!(d.server, rs);
    assert_eq!(
        d.connections,
        ConnectionCounts {
            active: 4,
            inactive: 2
        }
    );
    let Reply::Data { attrs, .. } = parsed[0] else {
        panic!("not data")
    };
    assert_eq!(decode_dest(attrs, &key.addr).unwrap().server, rs);
}

#[test]
fn delete_destination_carries_only_identities() {
    let key = tcp("10.0.0.1", 80);
    let rs = RealServerKey {
        addr: "10.244.1.5".parse().unwrap(),
        port: 8080,
    };
    let bytes = encode(0x22, 1, &Request::DelDest(&key, &rs), true);
    let d = nested(body(&bytes), CMD_ATTR_DEST, "t").unwrap();
    let types: Vec<u16> = d.iter().map(|a| a.ty).collect();
    assert_eq!(
        types,
        vec![DEST_ATTR_ADDR, DEST_ATTR_PORT, DEST_ATTR_ADDR_FAMILY]
    );
}

#[test]
fn the_family_id_comes_from_the_controller_reply() {
    let req = get_family_request("IPVS", 1);
    assert_eq!(
        &req[20..],
        &[9, 0, 2, 0, b'I', b'P', b'V', b'S', 0, 0, 0, 0]
    );
    let mut m = genl_message(GENL_ID_CTRL, 0, 1, 1, 1);
    m.put_str(CTRL_ATTR_FAMILY_NAME, "IPVS")
        .put_u16(CTRL_ATTR_FAMILY_ID, 0x23);
    assert_eq!(family_id(body(&m.finish())).unwrap(), 0x23);
}

#[test]
fn firewall_mark_services_are_skipped_not_errors() {
    let mut m = genl_message(0x22, 0, 1, 0, 1);
    m.begin_nest(CMD_ATTR_SERVICE)
        .put_u16(SVC_ATTR_AF, AF_INET)
        .put_u32(5, 7)
        .end_nest();
    assert_eq!(decode_service(body(&m.finish())).unwrap(), None);
}

#[test]
fn timeouts_go_as_top_level_attributes_of_set_config() {
    let t = Timeouts {
        tcp_secs: 900,
        tcp_fin_secs: 0,
        udp_secs: 300,
    };
    let bytes = encode(0x22, 1, &Request::SetTimeouts(t), true);
    assert_eq!(bytes[16], CMD_SET_CONFIG);
    let got: Vec<(u16, u32)> = attrs(body(&bytes))
        .unwrap()
        .iter()
        .map(|a| (a.ty, a.u32().unwrap()))
        .collect();
    assert_eq!(got, vec![(4, 900), (5, 0), (6, 300)]);
}
