//! Byte fixtures are little-endian (netlink headers are in host order).
#![cfg(target_endian = "little")]

use super::*;

/// CTA_TUPLE_ORIG of a UDP flow 10.0.0.1:40000 -> 10.96.0.10:53, as the kernel dumps it.
const ORIG_V4: [u8; 52] = [
    52, 0, 1, 0x80, // CTA_TUPLE_ORIG, nested
    20, 0, 1, 0x80, // CTA_TUPLE_IP, nested
    8, 0, 1, 0, 10, 0, 0, 1, // CTA_IP_V4_SRC
    8, 0, 2, 0, 10, 96, 0, 10, // CTA_IP_V4_DST
    28, 0, 2, 0x80, // CTA_TUPLE_PROTO, nested
    5, 0, 1, 0, 17, 0, 0, 0, // CTA_PROTO_NUM udp
    6, 0, 2, 0, 0x9c, 0x40, 0, 0, // CTA_PROTO_SRC_PORT 40000
    6, 0, 3, 0, 0x00, 0x35, 0, 0, // CTA_PROTO_DST_PORT 53
];

/// The rest of the dumped entry: reply 10.244.1.5:5353 -> 10.0.0.1:40000, status, id.
const REST_V4: [u8; 68] = [
    52, 0, 2, 0x80, // CTA_TUPLE_REPLY, nested
    20, 0, 1, 0x80, // CTA_TUPLE_IP
    8, 0, 1, 0, 10, 244, 1, 5, // CTA_IP_V4_SRC
    8, 0, 2, 0, 10, 0, 0, 1, // CTA_IP_V4_DST
    28, 0, 2, 0x80, // CTA_TUPLE_PROTO
    5, 0, 1, 0, 17, 0, 0, 0, // udp
    6, 0, 2, 0, 0x14, 0xe9, 0, 0, // 5353
    6, 0, 3, 0, 0x9c, 0x40, 0, 0, // 40000
    8, 0, 3, 0, 0, 0, 0x01, 0x88, // CTA_STATUS
    8, 0, 12, 0, 0xde, 0xad, 0xbe, 0xef, // CTA_ID
];

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

fn entry_v4() -> Vec<u8> {
    [&ORIG_V4[..], &REST_V4[..]].concat()
}

#[test]
fn a_dumped_ipv4_entry_is_decoded() {
    let entry = parse_entry(&entry_v4()).expect("entry");
    assert_eq!(
        entry,
        Entry {
            orig: Tuple {
                src: ip("10.0.0.1"),
                dst: ip("10.96.0.10"),
                proto: IPPROTO_UDP,
                src_port: 40000,
                dst_port: 53,
            },
            reply: Tuple {
                src: ip("10.244.1.5"),
                dst: ip("10.0.0.1"),
                proto: IPPROTO_UDP,
                src_port: 5353,
                dst_port: 40000,
            },
            id: Some(0xdead_beef),
            zone: None,
        }
    );
}

#[test]
fn a_delete_carries_the_dumped_original_tuple_and_the_id() {
    let entry = parse_entry(&entry_v4()).expect("entry");
    let mut want = vec![80, 0, 0, 0, 2, 1, 5, 0, 9, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0];
    want.extend_from_slice(&ORIG_V4);
    want.extend_from_slice(&[8, 0, 12, 0, 0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(delete_request(Family::V4, &entry, 9, true), want);
    let quiet = delete_request(Family::V4, &entry, 9, false);
    assert_eq!(quiet[6], 1, "only NLM_F_REQUEST");
}

#[test]
fn the_dump_request_names_the_family() {
    assert_eq!(
        dump_request(Family::V6, 3),
        [20, 0, 0, 0, 1, 1, 1, 3, 3, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0]
    );
}

fn v6_tuple(ty: u8, src: [u8; 16], dst: [u8; 16], sport: [u8; 2], dport: [u8; 2]) -> Vec<u8> {
    let mut b = vec![76, 0, ty, 0x80, 44, 0, 1, 0x80, 20, 0, 3, 0];
    b.extend_from_slice(&src);
    b.extend_from_slice(&[20, 0, 4, 0]);
    b.extend_from_slice(&dst);
    b.extend_from_slice(&[28, 0, 2, 0x80, 5, 0, 1, 0, 17, 0, 0, 0, 6, 0, 2, 0]);
    b.extend_from_slice(&sport);
    b.extend_from_slice(&[0, 0, 6, 0, 3, 0]);
    b.extend_from_slice(&dport);
    b.extend_from_slice(&[0, 0]);
    b
}

const CLIENT6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const SERVICE6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
const ENDPOINT6: [u8; 16] = [0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];

#[test]
fn a_dumped_ipv6_entry_in_a_zone_is_decoded_and_deleted_in_that_zone() {
    let orig = v6_tuple(1, CLIENT6, SERVICE6, [0x9c, 0x40], [0x75, 0x35]);
    let mut bytes = orig.clone();
    bytes.extend(v6_tuple(2, ENDPOINT6, CLIENT6, [0x14, 0xe9], [0x9c, 0x40]));
    bytes.extend_from_slice(&[6, 0, 18, 0, 0, 7, 0, 0]);
    let entry = parse_entry(&bytes).expect("entry");
    assert_eq!(entry.orig.dst, ip("fd00::10"));
    assert_eq!(entry.orig.dst_port, 30005);
    assert_eq!(entry.reply.src, ip("fd00:1::5"));
    assert_eq!((entry.id, entry.zone), (None, Some(7)));
    let request = delete_request(Family::V6, &entry, 1, true);
    assert_eq!(&request[16..20], &[10, 0, 0, 0]);
    assert_eq!(&request[20..96], &orig[..]);
    assert_eq!(&request[96..], &[6, 0, 18, 0, 0, 7, 0, 0]);
}

#[test]
fn filters_select_udp_entries_by_service_ip_node_port_and_endpoint() {
    let entry = parse_entry(&entry_v4()).expect("entry");
    let to = |dst: &str| Filter {
        orig_dst: Some(ip(dst)),
        ..Filter::default()
    };
    assert!(to("10.96.0.10").matches(&entry));
    assert!(!to("10.96.0.11").matches(&entry));
    let port = |p| Filter {
        orig_dst_port: Some(p),
        ..Filter::default()
    };
    assert!(port(53).matches(&entry));
    assert!(!port(30053).matches(&entry));
    let nat = |ep: &str| Filter {
        orig_dst: Some(ip("10.96.0.10")),
        reply_src: Some(ip(ep)),
        ..Filter::default()
    };
    assert!(nat("10.244.1.5").matches(&entry));
    assert!(!nat("10.244.2.6").matches(&entry));
    let tcp = Entry {
        orig: Tuple {
            proto: 6,
            ..entry.orig
        },
        ..entry
    };
    assert!(!to("10.96.0.10").matches(&tcp));
}

#[test]
fn an_entry_without_tuples_or_with_a_bad_address_is_an_error() {
    assert!(parse_entry(&REST_V4[52..]).is_err());
    let mut bad = entry_v4();
    bad[8] = 7; // CTA_IP_V4_SRC of 3 bytes
    assert!(parse_entry(&bad).is_err());
}
