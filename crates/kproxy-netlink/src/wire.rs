//! Netlink framing: building a request (netlink header, a 4-byte family header such as
//! `nfgenmsg` or `genlmsghdr`, attributes) and splitting received buffers into messages
//! and attributes. Pure.

use crate::error::{Error, Result};

/// `NLMSG_NOOP`.
const NLMSG_NOOP: u16 = 1;
/// `NLMSG_ERROR`: an error or an acknowledgement.
const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
const NLMSG_DONE: u16 = 3;
/// `NFNETLINK_V0`, the version byte of `nfgenmsg`.
pub const NFNETLINK_V0: u8 = 0;
/// `NLM_F_REQUEST`.
pub const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ACK`.
pub const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
pub const NLM_F_DUMP: u16 = 0x300;
/// `NLA_F_NESTED`.
const NLA_F_NESTED: u16 = 0x8000;
/// Bits of `nla_type` that are the type proper.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;
/// Size of the family header after the netlink header (`nfgenmsg`, `genlmsghdr`).
const FAMILY_HDRLEN: usize = 4;
/// Size of `struct nlattr`.
const NLA_HDRLEN: usize = 4;

/// Rounds up to netlink's 4-byte alignment.
fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// Builds one request: netlink header, family header, attributes.
#[derive(Debug)]
pub struct Message {
    buf: Vec<u8>,
    open_nests: Vec<usize>,
}

impl Message {
    /// A request of type `ty` with the 4-byte family header `header`.
    pub fn new(ty: u16, flags: u16, seq: u32, header: [u8; 4]) -> Message {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&header);
        Message {
            buf,
            open_nests: Vec::new(),
        }
    }

    /// An nfnetlink request of type `ty` (subsystem << 8 | command) for address family
    /// `family`: `nfgenmsg` with version [`NFNETLINK_V0`] and resource id 0.
    pub fn nfnetlink(ty: u16, flags: u16, seq: u32, family: u8) -> Message {
        Message::new(ty, flags, seq, [family, NFNETLINK_V0, 0, 0])
    }

    /// Appends attribute `ty` with a raw payload.
    pub fn put(&mut self, ty: u16, payload: &[u8]) -> &mut Self {
        let len = NLA_HDRLEN + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    /// Appends a `u16` attribute in host byte order.
    pub fn put_u16(&mut self, ty: u16, value: u16) -> &mut Self {
        self.put(ty, &value.to_ne_bytes())
    }

    /// Appends a `u32` attribute in host byte order.
    pub fn put_u32(&mut self, ty: u16, value: u32) -> &mut Self {
        self.put(ty, &value.to_ne_bytes())
    }

    /// Appends attribute `ty` holding `text` and its terminating NUL (`NLA_STRING`).
    pub fn put_str(&mut self, ty: u16, text: &str) -> &mut Self {
        let mut payload = Vec::with_capacity(text.len() + 1);
        payload.extend_from_slice(text.as_bytes());
        payload.push(0);
        self.put(ty, &payload)
    }

    /// Opens a nested attribute; attributes up to [`Message::end_nest`] go inside.
    pub fn begin_nest(&mut self, ty: u16) -> &mut Self {
        self.open_nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        self
    }

    /// Closes the innermost nested attribute.
    pub fn end_nest(&mut self) -> &mut Self {
        if let Some(start) = self.open_nests.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// The finished message bytes, with its length filled in.
    pub fn finish(mut self) -> Vec<u8> {
        while !self.open_nests.is_empty() {
            self.end_nest();
        }
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// One received netlink message, classified.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// A message of some family: its type, the first byte of its family header
    /// (`nfgen_family` for nfnetlink) and its attribute bytes.
    Data {
        /// Sequence number of the request it answers.
        seq: u32,
        /// Message type (subsystem << 8 | command).
        ty: u16,
        /// The first byte of the family header (`nfgen_family`).
        family: u8,
        /// Attributes, to be read with [`attrs`].
        attrs: &'a [u8],
    },
    /// An acknowledgement (`errno` 0) or an error (positive errno).
    Status {
        /// Sequence number of the request it answers.
        seq: u32,
        /// 0 for success, else the positive errno.
        errno: i32,
    },
    /// The end of a dump.
    Done {
        /// Sequence number of the dump request.
        seq: u32,
    },
}

fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Splits a received buffer into replies.
pub fn replies(buf: &[u8]) -> Result<Vec<Reply<'_>>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + NLMSG_HDRLEN <= buf.len() {
        let malformed = || Error::Malformed(format!("truncated message at byte {at}"));
        let len = read_u32(buf, at).ok_or_else(malformed)? as usize;
        let ty = read_u16(buf, at + 4).ok_or_else(malformed)?;
        let seq = read_u32(buf, at + 8).ok_or_else(malformed)?;
        if len < NLMSG_HDRLEN || at + len > buf.len() {
            return Err(malformed());
        }
        let body = &buf[at + NLMSG_HDRLEN..at + len];
        match ty {
            NLMSG_NOOP => {}
            NLMSG_DONE => out.push(Reply::Done { seq }),
            NLMSG_ERROR => {
                let code = read_u32(body, 0).ok_or_else(malformed)? as i32;
                out.push(Reply::Status { seq, errno: -code });
            }
            _ => {
                let family = *body.first().ok_or_else(malformed)?;
                let attrs = body.get(FAMILY_HDRLEN..).ok_or_else(malformed)?;
                out.push(Reply::Data {
                    seq,
                    ty,
                    family,
                    attrs,
                });
            }
        }
        at += align(len);
    }
    Ok(out)
}

/// One attribute: its type (without the nested/byte-order bits) and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    /// Attribute type.
    pub ty: u16,
    /// Payload bytes.
    pub payload: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The payload as a host-order `u16`.
    pub fn u16(&self) -> Result<u16> {
        read_u16(self.payload, 0).ok_or_else(|| self.short("u16"))
    }

    /// The payload as a host-order `u32`.
    pub fn u32(&self) -> Result<u32> {
        read_u32(self.payload, 0).ok_or_else(|| self.short("u32"))
    }

    /// The payload up to its NUL, as text.
    pub fn str(&self) -> Result<&'a str> {
        let end = self
            .payload
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.payload.len());
        std::str::from_utf8(&self.payload[..end])
            .map_err(|_| Error::Malformed(format!("attribute {} is not UTF-8", self.ty)))
    }

    fn short(&self, what: &str) -> Error {
        Error::Malformed(format!("attribute {} is too short for a {what}", self.ty))
    }
}

/// Splits attribute bytes into attributes.
pub fn attrs(buf: &[u8]) -> Result<Vec<Attr<'_>>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + NLA_HDRLEN <= buf.len() {
        let len = read_u16(buf, at).unwrap_or(0) as usize;
        let ty = read_u16(buf, at + 2).unwrap_or(0) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || at + len > buf.len() {
            return Err(Error::Malformed(format!(
                "bad attribute length at byte {at}"
            )));
        }
        out.push(Attr {
            ty,
            payload: &buf[at + NLA_HDRLEN..at + len],
        });
        at += align(len);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32, ty: u16, seq: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&len.to_ne_bytes());
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b
    }

    #[test]
    fn a_request_with_a_nested_attribute_is_framed_and_padded() {
        let mut m = Message::nfnetlink(0x0102, NLM_F_REQUEST | NLM_F_ACK, 7, 10);
        m.begin_nest(1).put(1, &[17]).end_nest();
        let bytes = m.finish();
        let mut want = header(32, 0x0102, 7);
        want[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        want.extend_from_slice(&[10, 0, 0, 0]);
        want.extend_from_slice(&12u16.to_ne_bytes());
        want.extend_from_slice(&(1 | NLA_F_NESTED).to_ne_bytes());
        want.extend_from_slice(&5u16.to_ne_bytes());
        want.extend_from_slice(&1u16.to_ne_bytes());
        want.extend_from_slice(&[17, 0, 0, 0]);
        assert_eq!(bytes, want);
    }

    #[test]
    fn a_string_attribute_carries_its_nul() {
        let mut m = Message::new(0x0a07, NLM_F_REQUEST, 1, [2, 0, 0, 0]);
        m.put_str(1, "kube-proxy");
        let bytes = m.finish();
        assert_eq!(bytes.len(), 20 + 4 + 12);
        assert_eq!(&bytes[20..22], &15u16.to_ne_bytes());
        assert_eq!(&bytes[24..35], b"kube-proxy\0");
        assert_eq!(&bytes[35..], &[0]);
    }

    #[test]
    fn data_acks_errors_and_done_are_told_apart() {
        let mut buf = header(24, 0x0100, 1);
        buf.extend_from_slice(&[2, 0, 0, 0]);
        buf.extend_from_slice(&[4, 0, 9, 0]);
        buf.extend(header(20, NLMSG_ERROR, 2));
        buf.extend_from_slice(&(-2i32).to_ne_bytes());
        buf.extend(header(20, NLMSG_ERROR, 3));
        buf.extend_from_slice(&0i32.to_ne_bytes());
        buf.extend(header(20, NLMSG_DONE, 1));
        buf.extend_from_slice(&0i32.to_ne_bytes());
        assert_eq!(
            replies(&buf).expect("replies"),
            vec![
                Reply::Data {
                    seq: 1,
                    ty: 0x0100,
                    family: 2,
                    attrs: &[4, 0, 9, 0],
                },
                Reply::Status { seq: 2, errno: 2 },
                Reply::Status { seq: 3, errno: 0 },
                Reply::Done { seq: 1 },
            ]
        );
        let attributes = attrs(&[4, 0, 9, 0x80]).expect("attrs");
        assert_eq!(
            attributes,
            [Attr {
                ty: 9,
                payload: &[]
            }]
        );
    }

    #[test]
    fn a_truncated_message_is_an_error_not_a_panic() {
        assert!(replies(&header(64, 0x0100, 1)).is_err());
        assert!(replies(&header(16, 0x0100, 1)).is_err());
        assert!(attrs(&[8, 0, 1, 0, 0]).is_err());
    }

    #[test]
    fn typed_attributes_round_trip() {
        let mut m = Message::new(0x22, 0, 1, [1, 1, 0, 0]);
        m.put_u16(1, 0x1234)
            .put_u32(2, 0xdead_beef)
            .put_str(3, "wrr");
        let bytes = m.finish();
        let got = attrs(&bytes[20..]).expect("attrs");
        assert_eq!(got[0].u16().expect("u16"), 0x1234);
        assert_eq!(got[1].u32().expect("u32"), 0xdead_beef);
        assert_eq!(got[2].str().expect("str"), "wrr");
        assert!(got[0].u32().is_err(), "a u16 is too short for a u32");
    }
}
