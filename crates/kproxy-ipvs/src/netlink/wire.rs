//! Netlink and generic netlink framing: building messages with attributes and
//! splitting received buffers into messages and attributes. Pure; no sockets.

use crate::error::{Error, Result};

/// `NLMSG_NOOP`.
const NLMSG_NOOP: u16 = 1;
/// `NLMSG_ERROR`: an error or an acknowledgement.
const NLMSG_ERROR: u16 = 2;
/// `NLMSG_DONE`: the end of a dump.
const NLMSG_DONE: u16 = 3;
/// `NLM_F_REQUEST`.
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
/// `NLM_F_ACK`.
pub(crate) const NLM_F_ACK: u16 = 0x4;
/// `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
pub(crate) const NLM_F_DUMP: u16 = 0x300;
/// `NLA_F_NESTED`.
const NLA_F_NESTED: u16 = 0x8000;
/// Bits of `nla_type` that are the type proper.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;
/// Size of `struct genlmsghdr`.
const GENL_HDRLEN: usize = 4;
/// Size of `struct nlattr`.
const NLA_HDRLEN: usize = 4;

/// Rounds up to netlink's 4-byte alignment.
fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// Builds one generic netlink request: header, command, attributes.
#[derive(Debug)]
pub(crate) struct GenlMessage {
    buf: Vec<u8>,
    open_nests: Vec<usize>,
}

impl GenlMessage {
    /// A request to family `family` with command `cmd`.
    pub(crate) fn new(family: u16, flags: u16, seq: u32, cmd: u8, version: u8) -> GenlMessage {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&family.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&[cmd, version, 0, 0]);
        GenlMessage {
            buf,
            open_nests: Vec::new(),
        }
    }

    /// Appends attribute `ty` with a raw payload.
    pub(crate) fn put(&mut self, ty: u16, payload: &[u8]) -> &mut Self {
        let len = NLA_HDRLEN + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(align(self.buf.len()), 0);
        self
    }

    /// Appends a `u16` attribute in host byte order.
    pub(crate) fn put_u16(&mut self, ty: u16, v: u16) -> &mut Self {
        self.put(ty, &v.to_ne_bytes())
    }

    /// Appends a `u32` attribute in host byte order.
    pub(crate) fn put_u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.put(ty, &v.to_ne_bytes())
    }

    /// Appends a NUL-terminated string attribute.
    pub(crate) fn put_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut bytes = Vec::with_capacity(s.len() + 1);
        bytes.extend_from_slice(s.as_bytes());
        bytes.push(0);
        self.put(ty, &bytes)
    }

    /// Opens a nested attribute; attributes up to [`GenlMessage::end_nest`] go inside.
    pub(crate) fn begin_nest(&mut self, ty: u16) -> &mut Self {
        self.open_nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        self
    }

    /// Closes the innermost nested attribute.
    pub(crate) fn end_nest(&mut self) -> &mut Self {
        if let Some(start) = self.open_nests.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// The finished message bytes, with its length filled in.
    pub(crate) fn finish(mut self) -> Vec<u8> {
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
pub(crate) enum Reply<'a> {
    /// A generic netlink message: its command and attribute bytes.
    Data {
        /// Sequence number of the request it answers.
        seq: u32,
        /// Generic netlink command.
        cmd: u8,
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
pub(crate) fn replies(buf: &[u8]) -> Result<Vec<Reply<'_>>> {
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
                let cmd = *body.first().ok_or_else(malformed)?;
                let attrs = body.get(GENL_HDRLEN..).ok_or_else(malformed)?;
                out.push(Reply::Data { seq, cmd, attrs });
            }
        }
        at += align(len);
    }
    Ok(out)
}

/// One attribute: its type (without the nested/byte-order bits) and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attr<'a> {
    /// Attribute type.
    pub(crate) ty: u16,
    /// Payload bytes.
    pub(crate) payload: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The payload as a host-order `u16`.
    pub(crate) fn u16(&self) -> Result<u16> {
        read_u16(self.payload, 0).ok_or_else(|| self.short("u16"))
    }

    /// The payload as a host-order `u32`.
    pub(crate) fn u32(&self) -> Result<u32> {
        read_u32(self.payload, 0).ok_or_else(|| self.short("u32"))
    }

    /// The payload as a NUL-terminated string.
    pub(crate) fn str(&self) -> Result<&'a str> {
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
pub(crate) fn attrs(buf: &[u8]) -> Result<Vec<Attr<'_>>> {
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

    #[test]
    fn a_message_with_a_nested_attribute_is_framed_and_padded() {
        let mut m = GenlMessage::new(0x20, NLM_F_REQUEST | NLM_F_ACK, 7, 1, 1);
        m.begin_nest(1).put_u16(1, 2).put_str(6, "rr").end_nest();
        let bytes = m.finish();
        assert_eq!(bytes.len(), 16 + 4 + 4 + 8 + 8);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), 40);
        assert_eq!(u16::from_ne_bytes(bytes[4..6].try_into().unwrap()), 0x20);
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 7);
        assert_eq!(&bytes[16..20], &[1, 1, 0, 0]);
        let top = attrs(&bytes[20..]).unwrap();
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].ty, 1);
        let inner = attrs(top[0].payload).unwrap();
        assert_eq!(inner[0].u16().unwrap(), 2);
        assert_eq!(inner[1].str().unwrap(), "rr");
    }

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
    fn acks_errors_and_done_are_told_apart() {
        let mut buf = header(20, NLMSG_ERROR, 1);
        buf.extend_from_slice(&0i32.to_ne_bytes());
        buf.extend(header(20, NLMSG_ERROR, 2));
        buf.extend_from_slice(&(-17i32).to_ne_bytes());
        buf.extend(header(16, NLMSG_DONE, 3));
        assert_eq!(
            replies(&buf).unwrap(),
            vec![
                Reply::Status { seq: 1, errno: 0 },
                Reply::Status { seq: 2, errno: 17 },
                Reply::Done { seq: 3 },
            ]
        );
    }

    #[test]
    fn a_truncated_message_is_an_error_not_a_panic() {
        let buf = header(64, 0x20, 1);
        assert!(replies(&buf).is_err());
        assert!(attrs(&[8, 0, 1, 0, 0]).is_err());
    }
}
