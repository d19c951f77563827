//! A transaction's operations as one nfnetlink batch: begin, one message per operation
//! (two more for each `numgen` map: the anonymous map and its elements), end. Only the
//! operations partial syncs use are encoded; for anything else there is no batch.

use super::expr::{Expr, Verdict, NFTA_LIST_ELEM};
use super::rule::{address_bytes, dnat_exprs, family_of, parse_rule, protocol_number, Action};
use crate::nft::netlink::{nfproto, nft_type, NFNL_SUBSYS_NFTABLES};
use crate::nft::{Element, Family, Named, Object, Operation};
use crate::render::ELEMENT_CONTAINERS;
use kproxy_netlink::{Message, NLM_F_ACK, NLM_F_REQUEST};
use std::net::IpAddr;

/// `NFNL_MSG_BATCH_BEGIN`.
const BATCH_BEGIN: u16 = 16;
/// `NFNL_MSG_BATCH_END`.
const BATCH_END: u16 = 17;
/// `NFT_MSG_NEWCHAIN`.
const NEWCHAIN: u16 = 3;
/// `NFT_MSG_DELCHAIN`.
const DELCHAIN: u16 = 5;
/// `NFT_MSG_NEWRULE`.
const NEWRULE: u16 = 6;
/// `NFT_MSG_DELRULE`.
const DELRULE: u16 = 8;
/// `NFT_MSG_NEWSET`.
const NEWSET: u16 = 9;
/// `NFT_MSG_NEWSETELEM`.
const NEWSETELEM: u16 = 12;
/// `NFT_MSG_DELSETELEM`.
const DELSETELEM: u16 = 14;
/// `NLM_F_CREATE`.
const NLM_F_CREATE: u16 = 0x400;
/// `NLM_F_APPEND`.
const NLM_F_APPEND: u16 = 0x800;

/// `NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | NFT_SET_MAP`.
const ANONYMOUS_MAP_FLAGS: u32 = 0x1 | 0x2 | 0x8;
/// nft's `integer` type, the key type of a `numgen` map.
const INTEGER_TYPE: u32 = 4;
/// `NFT_DATA_VERDICT`.
const VERDICT_DATA: u32 = 0xffff_ff00;
/// What `nft` 1.0.6 stores with a `numgen` map: key in host byte order, typed by a
/// `numgen` expression, so that listings print it back as `numgen ... vmap { ... }`.
const NUMGEN_MAP_USERDATA: [u8; 28] = [
    0x00, 0x04, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x04, 0x08, 0x00, 0x04,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
];
/// The name an anonymous map is declared with; the kernel numbers it.
const ANONYMOUS_MAP: &str = "__map%d";

/// An encoded batch and the sequence numbers the kernel answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The datagram.
    pub bytes: Vec<u8>,
    /// The batch-begin message's sequence number (a failed commit is reported on it).
    pub begin_seq: u32,
    /// The sequence number of the last operation's message, the only one acknowledged:
    /// the kernel answers it after every error of the batch, and after a failed commit.
    pub last_seq: u32,
}

/// Builds a batch on `family table`, one operation at a time.
#[derive(Debug)]
pub struct Builder<'a> {
    family: Family,
    table: &'a str,
    bytes: Vec<u8>,
    begin_seq: u32,
    seq: u32,
    last_message: Option<usize>,
    next_set_id: u32,
}

/// The nfgenmsg of the batch delimiters: no family, resource id = the subsystem.
const BATCH_HEADER: [u8; 4] = [
    0,
    0,
    (NFNL_SUBSYS_NFTABLES >> 8) as u8,
    NFNL_SUBSYS_NFTABLES as u8,
];

impl<'a> Builder<'a> {
    /// An empty batch on `family table` whose messages are numbered from `first_seq` on.
    pub fn new(family: Family, table: &'a str, first_seq: u32) -> Builder<'a> {
        Builder::with_capacity(family, table, first_seq, 0)
    }

    /// [`new`](Self::new), with room for `bytes` of messages reserved once.
    pub fn with_capacity(
        family: Family,
        table: &'a str,
        first_seq: u32,
        bytes: usize,
    ) -> Builder<'a> {
        let mut buffer = Vec::with_capacity(bytes);
        buffer.extend(Message::new(BATCH_BEGIN, NLM_F_REQUEST, first_seq, BATCH_HEADER).finish());
        Builder {
            family,
            table,
            bytes: buffer,
            begin_seq: first_seq,
            seq: first_seq,
            last_message: None,
            next_set_id: 0,
        }
    }

    /// Bytes so far.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// The finished batch: the last operation's message asks for an acknowledgement.
    pub fn finish(mut self) -> Batch {
        if let Some(at) = self.last_message {
            let flags_at = at + 6;
            let flags = u16::from_ne_bytes([self.bytes[flags_at], self.bytes[flags_at + 1]]);
            self.bytes[flags_at..flags_at + 2].copy_from_slice(&(flags | NLM_F_ACK).to_ne_bytes());
        }
        let end_seq = self.seq.wrapping_add(1);
        let end = Message::new(BATCH_END, NLM_F_REQUEST, end_seq, BATCH_HEADER);
        self.bytes.extend(end.finish());
        Batch {
            bytes: self.bytes,
            begin_seq: self.begin_seq,
            last_seq: self.seq,
        }
    }

    fn message(&mut self, command: u16, extra_flags: u16) -> Message {
        self.seq = self.seq.wrapping_add(1);
        Message::nfnetlink(
            nft_type(command),
            NLM_F_REQUEST | extra_flags,
            self.seq,
            nfproto(self.family),
        )
    }

    fn push(&mut self, message: Message) {
        self.last_message = Some(self.bytes.len());
        self.bytes.extend(message.finish());
    }

    fn chain_message(&mut self, command: u16, flags: u16, name_attr: u16, chain: &str) {
        let mut m = self.message(command, flags);
        m.put_str(1, self.table).put_str(name_attr, chain);
        self.push(m);
    }

    /// Adds one operation; `None` (and a builder to drop) when it is not one this writer
    /// encodes.
    pub fn add(&mut self, op: &Operation) -> Option<()> {
        match op {
            Operation::Add(object) => match object.as_ref() {
                Object::Chain(chain) if chain.base.is_none() && chain.comment.is_none() => {
                    self.chain_message(NEWCHAIN, NLM_F_CREATE, 3, &chain.name);
                }
                Object::Rule(rule) => {
                    self.rule(&rule.chain, &rule.body, rule.comment.as_deref())?
                }
                Object::Element(element) => self.element(NEWSETELEM, NLM_F_CREATE, element)?,
                _ => return None,
            },
            Operation::Flush(Named::Chain(chain)) => self.chain_message(DELRULE, 0, 2, chain),
            Operation::Delete(Named::Chain(chain)) => self.chain_message(DELCHAIN, 0, 3, chain),
            Operation::DeleteElement(element) => self.element(DELSETELEM, 0, element)?,
            _ => return None,
        }
        Some(())
    }

    fn rule(&mut self, chain: &str, body: &str, comment: Option<&str>) -> Option<()> {
        let parsed = parse_rule(self.family, body)?;
        let comment = match comment {
            None => None,
            Some(text) => Some(comment_userdata(text)?),
        };
        let mut exprs = parsed.matches;
        match parsed.action {
            Action::Verdict(verdict) => exprs.push(Expr::Verdict(verdict)),
            Action::Dnat(target) => exprs.extend(dnat_exprs(self.family, target)),
            Action::NumgenMap(values) => {
                let set_id = self.numgen_map(&values);
                exprs.push(Expr::Numgen {
                    modulus: u32::try_from(values.len()).ok()?,
                });
                exprs.push(Expr::MapLookup {
                    set: ANONYMOUS_MAP.to_string(),
                    set_id,
                });
            }
        }
        let mut m = self.message(NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
        m.put_str(1, self.table).put_str(2, chain);
        m.begin_nest(4);
        for expr in &exprs {
            expr.put(&mut m);
        }
        m.end_nest();
        if let Some(userdata) = comment {
            m.put(7, &userdata);
        }
        self.push(m);
        Some(())
    }

    /// Declares the anonymous map of a `numgen` rule and its elements; returns its id.
    fn numgen_map(&mut self, values: &[Verdict]) -> u32 {
        self.next_set_id += 1;
        let id = self.next_set_id;
        let mut set = self.message(NEWSET, NLM_F_CREATE);
        set.put_str(1, self.table)
            .put_str(2, ANONYMOUS_MAP)
            .put(3, &ANONYMOUS_MAP_FLAGS.to_be_bytes())
            .put(4, &INTEGER_TYPE.to_be_bytes())
            .put(5, &4u32.to_be_bytes())
            .put(6, &VERDICT_DATA.to_be_bytes())
            .put(7, &0u32.to_be_bytes())
            .put(10, &id.to_be_bytes());
        set.begin_nest(9)
            .put(1, &(values.len() as u32).to_be_bytes())
            .end_nest();
        set.put(13, &NUMGEN_MAP_USERDATA);
        self.push(set);
        let mut elements = self.message(NEWSETELEM, NLM_F_CREATE);
        elements
            .put_str(1, self.table)
            .put_str(2, ANONYMOUS_MAP)
            .put(4, &id.to_be_bytes());
        elements.begin_nest(3);
        for (key, value) in (0u32..).zip(values) {
            put_element(&mut elements, &key.to_ne_bytes(), Some(value), None);
        }
        elements.end_nest();
        self.push(elements);
        id
    }

    fn element(&mut self, command: u16, flags: u16, element: &Element) -> Option<()> {
        if !ELEMENT_CONTAINERS.contains(&element.container.as_str()) {
            return None;
        }
        let key = element_key(self.family, &element.key)?;
        let value = match element.value.as_deref() {
            None => None,
            Some(text) => Some(element_value(text)?),
        };
        let comment = match element.comment.as_deref() {
            None => None,
            Some(text) => Some(comment_userdata(text)?),
        };
        let mut m = self.message(command, flags);
        m.put_str(1, self.table).put_str(2, &element.container);
        m.begin_nest(3);
        put_element(&mut m, &key, value.as_ref(), comment.as_deref());
        m.end_nest();
        self.push(m);
        Some(())
    }
}

/// A rule or element comment as `nft` stores it (`NFTNL_UDATA_RULE_COMMENT` /
/// `NFTNL_UDATA_SET_ELEM_COMMENT`: type 0, length, the text and its NUL), for the plain
/// comments kproxy writes.
fn comment_userdata(text: &str) -> Option<Vec<u8>> {
    let plain = text.len() < 128 && !text.contains(['"', '\\']) && !text.contains(char::is_control);
    let len = u8::try_from(text.len() + 1).ok().filter(|_| plain)?;
    let mut bytes = vec![0, len];
    bytes.extend(text.as_bytes());
    bytes.push(0);
    Some(bytes)
}

/// One `NFTA_LIST_ELEM` of an element list: the key (`NFTA_SET_ELEM_KEY`), in a map the
/// verdict (`NFTA_SET_ELEM_DATA`), and the comment (`NFTA_SET_ELEM_USERDATA`).
fn put_element(m: &mut Message, key: &[u8], value: Option<&Verdict>, userdata: Option<&[u8]>) {
    m.begin_nest(NFTA_LIST_ELEM);
    m.begin_nest(1).put(1, key).end_nest();
    if let Some(verdict) = value {
        m.begin_nest(2);
        verdict.put(m);
        m.end_nest();
    }
    if let Some(userdata) = userdata {
        m.put(6, userdata);
    }
    m.end_nest();
}

/// The key bytes of an element: an address alone, or a concatenation of addresses,
/// protocols and ports, each padded to 4 bytes as the kernel's registers hold them.
fn element_key(family: Family, key: &str) -> Option<Vec<u8>> {
    let parts: Vec<&str> = key.split(" . ").map(str::trim).collect();
    let address = |word: &str| -> Option<Vec<u8>> {
        let ip: IpAddr = word.parse().ok()?;
        (family_of(ip) == family).then(|| address_bytes(ip))
    };
    if let [single] = parts.as_slice() {
        return address(single);
    }
    let mut bytes = Vec::new();
    for part in parts {
        if let Some(addr) = address(part) {
            bytes.extend(addr);
        } else if let Some(protocol) = protocol_number(part) {
            bytes.extend([protocol, 0, 0, 0]);
        } else {
            let port: u16 = part.parse().ok()?;
            bytes.extend(port.to_be_bytes());
            bytes.extend([0, 0]);
        }
    }
    Some(bytes)
}

/// A map element's value: `goto chain`, `jump chain`, `drop` or `accept`.
fn element_value(text: &str) -> Option<Verdict> {
    match text.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["drop"] => Some(Verdict::Drop),
        ["accept"] => Some(Verdict::Accept),
        ["goto", chain] if !chain.starts_with('"') => Some(Verdict::Goto(chain.to_string())),
        ["jump", chain] if !chain.starts_with('"') => Some(Verdict::Jump(chain.to_string())),
        _ => None,
    }
}

/// Encodes `ops` on `family table` as one batch, sequence numbers from `first_seq` on;
/// `None` when an operation is not one this writer knows.
pub fn encode(family: Family, table: &str, ops: &[Operation], first_seq: u32) -> Option<Batch> {
    let mut builder = Builder::new(family, table, first_seq);
    for op in ops {
        builder.add(op)?;
    }
    Some(builder.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::{Chain, Rule};

    fn header(bytes: &[u8]) -> (u16, u16, u32) {
        let ty = u16::from_ne_bytes([bytes[4], bytes[5]]);
        let flags = u16::from_ne_bytes([bytes[6], bytes[7]]);
        let seq = u32::from_ne_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        (ty, flags, seq)
    }

    /// Each message of a batch: (type, flags, sequence number).
    fn messages(batch: &Batch) -> Vec<(u16, u16, u32)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < batch.bytes.len() {
            let len = u32::from_ne_bytes([
                batch.bytes[at],
                batch.bytes[at + 1],
                batch.bytes[at + 2],
                batch.bytes[at + 3],
            ]) as usize;
            out.push(header(&batch.bytes[at..]));
            at += len;
        }
        out
    }

    fn rule(chain: &str, body: &str) -> Operation {
        Operation::Add(Box::new(Object::Rule(Rule {
            chain: chain.into(),
            body: body.into(),
            comment: None,
        })))
    }

    #[test]
    fn a_partial_sync_is_one_batch_with_an_acknowledged_message_per_operation() {
        let ops = [
            Operation::Add(Box::new(Object::Chain(Chain::regular("endpoint-a")))),
            Operation::Flush(Named::Chain("endpoint-a".into())),
            rule("endpoint-a", "meta l4proto tcp dnat to 10.0.0.1:80"),
            rule(
                "service-s",
                "numgen random mod 1 vmap { 0 : goto endpoint-a }",
            ),
            Operation::Delete(Named::Chain("endpoint-old".into())),
        ];
        let batch = encode(Family::Ip, "kube-proxy", &ops, 100).expect("known forms");
        let sent = messages(&batch);
        let types: Vec<u16> = sent.iter().map(|m| m.0).collect();
        assert_eq!(
            types,
            [16, 0x0a03, 0x0a08, 0x0a06, 0x0a09, 0x0a0c, 0x0a06, 0x0a05, 17],
            "begin, chain, flush, rule, numgen map and its elements, rule, delete, end"
        );
        assert_eq!((batch.begin_seq, batch.last_seq), (100, 107));
        let acked: Vec<bool> = sent.iter().map(|m| m.1 & NLM_F_ACK != 0).collect();
        assert_eq!(
            acked,
            [false, false, false, false, false, false, false, true, false],
            "only the last operation is acknowledged"
        );
        assert_eq!(
            sent[3].1 & (NLM_F_CREATE | NLM_F_APPEND),
            NLM_F_CREATE | NLM_F_APPEND
        );
        assert_eq!(sent[8].2, 108);
    }

    #[test]
    fn element_keys_pad_each_part_of_a_concatenation_to_four_bytes() {
        assert_eq!(
            element_key(Family::Ip, "172.30.0.45 . tcp . 80"),
            Some(vec![172, 30, 0, 45, 6, 0, 0, 0, 0, 80, 0, 0])
        );
        assert_eq!(
            element_key(Family::Ip, "udp . 30053"),
            Some(vec![17, 0, 0, 0, 0x75, 0x65, 0, 0])
        );
        assert_eq!(
            element_key(Family::Ip6, "fd00::1").map(|k| k.len()),
            Some(16)
        );
        assert_eq!(element_key(Family::Ip, "fd00::1"), None);
        assert_eq!(element_key(Family::Ip, "80"), None);
        assert_eq!(element_key(Family::Ip, "10.0.0.1 . icmp"), None);
        assert_eq!(
            comment_userdata("ns/svc:p"),
            Some(b"\x00\x09ns/svc:p\x00".to_vec())
        );
        assert_eq!(comment_userdata("a \"quote\""), None);
    }

    #[test]
    fn anything_else_is_left_to_nft() {
        let element = |container: &str, value: &str| {
            Operation::Add(Box::new(Object::Element(Element {
                container: container.into(),
                key: "10.0.0.1 . tcp . 80".into(),
                comment: None,
                value: Some(value.into()),
            })))
        };
        let based = Chain {
            base: Some(crate::nft::BaseChain {
                kind: crate::nft::ChainType::Nat,
                hook: crate::nft::Hook::Output,
                priority: -100,
            }),
            ..Chain::regular("nat-output")
        };
        for op in [
            Operation::Add(Box::new(Object::Chain(based))),
            Operation::Delete(Named::Table),
            Operation::Flush(Named::Set("cluster-ips".into())),
            rule("external-x", "iifname \"eth0\" goto service-x"),
            element("affinity-x", "goto a"),
            element("service-ips", "goto \"a\""),
            element("service-ips", "reject"),
        ] {
            assert_eq!(
                encode(Family::Ip, "kube-proxy", std::slice::from_ref(&op), 1),
                None,
                "{op:?}"
            );
        }
    }
}
