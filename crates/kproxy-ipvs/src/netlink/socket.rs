//! A generic netlink socket: the only place in the crate that does netlink I/O.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::wire::{replies, Reply};
use crate::error::{Error, Result};

/// `SOL_NETLINK`.
const SOL_NETLINK: libc::c_int = 270;
/// `NETLINK_CAP_ACK`: error replies carry only the failed request's header.
const NETLINK_CAP_ACK: libc::c_int = 10;
/// Receive buffer asked for (as root, past `rmem_max`), for runs of error replies.
const SOCKET_RCVBUF: libc::c_int = 4 * 1024 * 1024;
/// Receive buffer for one `recv`; a dump part or a run of error replies fits.
const RECV_BUF: usize = 256 * 1024;

/// A bound `NETLINK_GENERIC` socket with its sequence counter.
#[derive(Debug)]
pub(crate) struct GenlSocket {
    fd: OwnedFd,
    next_seq: u32,
    buf: Vec<u8>,
}

fn last_os_error(context: &str) -> Error {
    Error::io(context, io::Error::last_os_error())
}

/// Sets an `int` socket option, ignoring failure.
fn set_int_option(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) {
    // SAFETY: a c_int option value of the right size on a valid socket.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

impl GenlSocket {
    /// Opens and binds a socket; the kernel assigns the port id.
    pub(crate) fn open() -> Result<GenlSocket> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_GENERIC,
            )
        };
        if raw < 0 {
            return Err(last_os_error("open a generic netlink socket"));
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero means "kernel, assign my port id".
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `addr` is a valid sockaddr_nl of `len` bytes.
        let rc = unsafe { libc::bind(fd.as_raw_fd(), std::ptr::addr_of!(addr).cast(), len) };
        if rc < 0 {
            return Err(last_os_error("bind the generic netlink socket"));
        }
        // Both options are optimisations: without them replies are longer
        // and the buffer smaller, and a full buffer is an ENOBUFS error.
        set_int_option(&fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
        set_int_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, SOCKET_RCVBUF);
        Ok(GenlSocket {
            fd,
            next_seq: 1,
            buf: vec![0; RECV_BUF],
        })
    }

    /// A fresh sequence number.
    pub(crate) fn seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        s
    }

    fn send(&self, bytes: &[u8]) -> Result<()> {
        // SAFETY: sockaddr_nl is plain data; all-zero addresses the kernel.
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        loop {
            // SAFETY: `bytes` and `to` are valid for the lengths given.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    0,
                    std::ptr::addr_of!(to).cast(),
                    len,
                )
            };
            if n >= 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(Error::io("send to netlink", err));
            }
        }
    }

    /// Receives one datagram into the socket's buffer and returns its length.
    fn recv(&mut self) -> Result<usize> {
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(Error::io("receive from netlink", err));
            }
        }
    }

    /// Sends `batch` (requests with sequence numbers `first..=last`, where only
    /// `last` asks for an acknowledgement) and returns `(seq, errno)` for each
    /// request the kernel refused. The kernel handles a batch in order and
    /// answers failures as it goes, so the acknowledgement of `last` ends it.
    pub(crate) fn execute(
        &mut self,
        batch: &[u8],
        first: u32,
        last: u32,
    ) -> Result<Vec<(u32, i32)>> {
        self.send(batch)?;
        let mut failures = Vec::new();
        loop {
            let n = self.recv()?;
            for reply in replies(&self.buf[..n])? {
                match reply {
                    Reply::Status { seq, errno }
                        if seq.wrapping_sub(first) <= last.wrapping_sub(first) =>
                    {
                        if errno != 0 {
                            failures.push((seq, errno));
                        }
                        if seq == last {
                            return Ok(failures);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Sends one request and returns the attribute bytes of each data reply,
    /// until the dump ends or the request is acknowledged.
    pub(crate) fn query(&mut self, request: &[u8], seq: u32, what: &str) -> Result<Vec<Vec<u8>>> {
        self.send(request)?;
        let mut out = Vec::new();
        loop {
            let n = self.recv()?;
            for reply in replies(&self.buf[..n])? {
                match reply {
                    Reply::Data { seq: s, attrs, .. } if s == seq => out.push(attrs.to_vec()),
                    Reply::Done { seq: s } if s == seq => return Ok(out),
                    Reply::Status { seq: s, errno } if s == seq => {
                        if errno != 0 {
                            return Err(Error::Kernel {
                                request: what.to_string(),
                                errno,
                            });
                        }
                        return Ok(out);
                    }
                    _ => {}
                }
            }
        }
    }
}
