//! A bound netlink socket: the only place in the crate that does I/O. It works in the
//! network namespace of the thread that opened it.

use crate::error::{Error, Result};
use crate::wire::{replies, Reply};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `SOL_NETLINK`.
const SOL_NETLINK: libc::c_int = 270;
/// `NETLINK_CAP_ACK`: error replies carry only the failed request's header.
const NETLINK_CAP_ACK: libc::c_int = 10;
/// Receive buffer asked for (as root, past `rmem_max`), for runs of replies.
const SOCKET_RCVBUF: libc::c_int = 4 * 1024 * 1024;
/// Receive buffer for one `recv`; a dump part or a run of error replies fits.
const RECV_BUF: usize = 256 * 1024;
const ADDR_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;

/// A bound netlink socket of one protocol with its sequence counter.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    next_seq: u32,
    buf: Vec<u8>,
}

/// Sets a socket option whose value is the plain-data `value` (`c_int`, `timeval`).
fn set_option<T: Copy>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> std::io::Result<()> {
    // SAFETY: `value` is a valid, initialized option value of exactly the size passed,
    // on a valid socket; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::addr_of!(*value).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn kernel_address() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; all-zero addresses the kernel (or, bound, asks
    // it to assign the port id).
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr
}

impl Socket {
    /// Opens and binds a socket of `protocol` (e.g. `libc::NETLINK_NETFILTER`) in the
    /// calling thread's network namespace.
    pub fn open(protocol: libc::c_int) -> Result<Socket> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if raw < 0 {
            return Err(Error::last_os_error("open a netlink socket"));
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let addr = kernel_address();
        // SAFETY: `addr` is a valid sockaddr_nl of ADDR_LEN bytes.
        let rc = unsafe { libc::bind(fd.as_raw_fd(), std::ptr::addr_of!(addr).cast(), ADDR_LEN) };
        if rc < 0 {
            return Err(Error::last_os_error("bind the netlink socket"));
        }
        // Both are best effort: without them replies are larger, or a long run of them
        // may not fit.
        let _ = set_option(&fd, SOL_NETLINK, NETLINK_CAP_ACK, &1);
        let _ = set_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &SOCKET_RCVBUF);
        Ok(Socket {
            fd,
            next_seq: 1,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Lets one datagram of up to `bytes` be sent (`SO_SNDBUFFORCE`, as root; the default
    /// buffer takes about 200 KiB).
    pub fn set_send_buffer(&self, bytes: usize) -> Result<()> {
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        set_option(&self.fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &value).map_err(|source| {
            Error::Io {
                context: "set the netlink send buffer",
                source,
            }
        })
    }

    /// Makes [`recv`](Self::recv) fail instead of waiting longer than `timeout` for a reply.
    pub fn set_receive_timeout(&self, timeout: std::time::Duration) -> Result<()> {
        let tv = libc::timeval {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
        };
        set_option(&self.fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv).map_err(|source| Error::Io {
            context: "set the netlink receive timeout",
            source,
        })
    }

    /// The next sequence number.
    pub fn seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        s
    }

    /// Sends one datagram (one or more messages) to the kernel.
    pub fn send(&self, bytes: &[u8]) -> Result<()> {
        let to = kernel_address();
        loop {
            // SAFETY: `bytes` and `to` are valid for the lengths given.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    0,
                    std::ptr::addr_of!(to).cast(),
                    ADDR_LEN,
                )
            };
            if n >= 0 {
                return Ok(());
            }
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::last_os_error("send to netlink"));
            }
        }
    }

    /// Receives one datagram; the bytes are valid until the next call.
    pub fn recv(&mut self) -> Result<&[u8]> {
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
            if let Ok(n) = usize::try_from(n) {
                return Ok(&self.buf[..n]);
            }
            if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::last_os_error("receive from netlink"));
            }
        }
    }

    /// Sends the dump request `request` (sequence number `seq`) and hands each answering
    /// data message to `each` as (type, family byte, attribute bytes), until the dump
    /// ends. An error answer is [`Error::Kernel`], after which the socket is ready for
    /// the next request.
    pub fn dump(
        &mut self,
        request: &[u8],
        seq: u32,
        mut each: impl FnMut(u16, u8, &[u8]),
    ) -> Result<()> {
        self.send(request)?;
        loop {
            let received = self.recv()?;
            for reply in replies(received)? {
                match reply {
                    Reply::Data {
                        seq: s,
                        ty,
                        family,
                        attrs,
                    } if s == seq => each(ty, family, attrs),
                    Reply::Done { seq: s } if s == seq => return Ok(()),
                    Reply::Status { seq: s, errno } if s == seq => {
                        return match errno {
                            0 => Ok(()),
                            errno => Err(Error::Kernel { errno }),
                        };
                    }
                    _ => {}
                }
            }
        }
    }
}
