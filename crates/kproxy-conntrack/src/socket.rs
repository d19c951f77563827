//! A `NETLINK_NETFILTER` socket: the only place in the crate that does I/O. It works in
//! the network namespace of the thread that opened it.

use crate::entry::{
    ct_type, delete_request, dump_request, parse_entry, Entry, Family, Filter, IPCTNL_MSG_CT_NEW,
};
use crate::error::{Error, Result};
use crate::wire::{replies, Reply};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `SOL_NETLINK`.
const SOL_NETLINK: libc::c_int = 270;
/// `NETLINK_CAP_ACK`: error replies carry only the failed request's header.
const NETLINK_CAP_ACK: libc::c_int = 10;
/// Receive buffer asked for (as root, past `rmem_max`).
const SOCKET_RCVBUF: libc::c_int = 4 * 1024 * 1024;
/// Receive buffer for one `recv`; a dump part or a run of error replies fits.
const RECV_BUF: usize = 256 * 1024;
/// Deletions sent in one datagram, answered before the next one is sent.
const DELETE_BATCH: usize = 256;

/// What one [`Conntrack::delete_udp`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Entries the filters matched.
    pub matched: usize,
    /// Of those, entries already gone when deleted (expired meanwhile).
    pub already_gone: usize,
}

/// A bound ctnetlink socket with its sequence counter.
#[derive(Debug)]
pub struct Conntrack {
    fd: OwnedFd,
    next_seq: u32,
    buf: Vec<u8>,
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

fn kernel_address() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; all-zero addresses the kernel (or, bound,
    // asks it to assign the port id).
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr
}

const ADDR_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;

impl Conntrack {
    /// Opens and binds a socket in the calling thread's network namespace.
    pub fn open() -> Result<Conntrack> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(Error::io(
                "open a netfilter netlink socket",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let addr = kernel_address();
        // SAFETY: `addr` is a valid sockaddr_nl of ADDR_LEN bytes.
        let rc = unsafe { libc::bind(fd.as_raw_fd(), std::ptr::addr_of!(addr).cast(), ADDR_LEN) };
        if rc < 0 {
            return Err(Error::io(
                "bind the netfilter netlink socket",
                io::Error::last_os_error(),
            ));
        }
        set_int_option(&fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
        set_int_option(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, SOCKET_RCVBUF);
        Ok(Conntrack {
            fd,
            next_seq: 1,
            buf: vec![0; RECV_BUF],
        })
    }

    fn seq(&mut self) -> u32 {
        let s = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        s
    }

    fn send(&self, bytes: &[u8]) -> Result<()> {
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
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(Error::io("send to ctnetlink", err));
            }
        }
    }

    /// Receives one datagram into the buffer and returns its length.
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
                return Err(Error::io("receive from ctnetlink", err));
            }
        }
    }

    /// Dumps `family`'s table and returns the entries `keep` selects. An entry that
    /// cannot be decoded fails the dump, but only after its end was read, so the socket
    /// is ready for the next request.
    fn dump(&mut self, family: Family, keep: impl Fn(&Entry) -> bool) -> Result<Vec<Entry>> {
        let seq = self.seq();
        self.send(&dump_request(family, seq))?;
        let mut kept = Vec::new();
        let mut undecoded = None;
        loop {
            let n = self.recv()?;
            for reply in replies(&self.buf[..n])? {
                match reply {
                    Reply::Data {
                        seq: s, ty, attrs, ..
                    } if s == seq && ty == ct_type(IPCTNL_MSG_CT_NEW) => match parse_entry(attrs) {
                        Ok(entry) if keep(&entry) => kept.push(entry),
                        Ok(_) => {}
                        Err(e) => undecoded = undecoded.or(Some(e)),
                    },
                    Reply::Done { seq: s } if s == seq => {
                        return undecoded.map_or(Ok(kept), Err);
                    }
                    Reply::Status { seq: s, errno } if s == seq => {
                        if errno != 0 {
                            return Err(Error::Kernel {
                                request: format!("dump the {family:?} conntrack table"),
                                errno,
                            });
                        }
                        return undecoded.map_or(Ok(kept), Err);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Deletes `entries` in batches; returns how many were already gone and the errno
    /// of each other failure.
    fn delete(&mut self, family: Family, entries: &[Entry]) -> Result<(usize, Vec<i32>)> {
        let (mut gone, mut failures) = (0, Vec::new());
        for batch in entries.chunks(DELETE_BATCH) {
            let first = self.next_seq;
            let mut bytes = Vec::new();
            for (i, entry) in batch.iter().enumerate() {
                let seq = self.seq();
                bytes.extend(delete_request(family, entry, seq, i + 1 == batch.len()));
            }
            let last = self.next_seq.wrapping_sub(1);
            self.send(&bytes)?;
            'answers: loop {
                let n = self.recv()?;
                for reply in replies(&self.buf[..n])? {
                    let Reply::Status { seq, errno } = reply else {
                        continue;
                    };
                    if seq.wrapping_sub(first) > last.wrapping_sub(first) {
                        continue;
                    }
                    match errno {
                        0 => {}
                        libc::ENOENT => gone += 1,
                        other => failures.push(other),
                    }
                    if seq == last {
                        break 'answers;
                    }
                }
            }
        }
        Ok((gone, failures))
    }

    /// Deletes the UDP entries of `family` that any of `filters` matches, with one dump.
    /// An entry that expired before its delete counts as deleted.
    pub fn delete_udp(&mut self, family: Family, filters: &[Filter]) -> Result<Deleted> {
        if filters.is_empty() {
            return Ok(Deleted::default());
        }
        let entries = self.dump(family, |e| filters.iter().any(|f| f.matches(e)))?;
        let (already_gone, failures) = self.delete(family, &entries)?;
        match failures.first() {
            Some(&errno) => Err(Error::Delete {
                failed: failures.len(),
                errno,
            }),
            None => Ok(Deleted {
                matched: entries.len(),
                already_gone,
            }),
        }
    }
}
