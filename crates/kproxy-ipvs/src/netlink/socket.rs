//! A generic netlink socket (`kproxy-netlink`'s): the only place in the crate that does
//! netlink I/O.

use super::wire::{replies, Reply};
use crate::error::{Error, Result};
use kproxy_netlink::Socket;

/// A bound `NETLINK_GENERIC` socket with its sequence counter.
#[derive(Debug)]
pub(crate) struct GenlSocket {
    socket: Socket,
}

impl GenlSocket {
    /// Opens and binds a socket; the kernel assigns the port id.
    pub(crate) fn open() -> Result<GenlSocket> {
        Ok(GenlSocket {
            socket: Socket::open(libc::NETLINK_GENERIC)?,
        })
    }

    /// A fresh sequence number.
    pub(crate) fn seq(&mut self) -> u32 {
        self.socket.seq()
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
        self.socket.send(batch)?;
        let mut failures = Vec::new();
        loop {
            for reply in replies(self.socket.recv()?)? {
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
        let mut out = Vec::new();
        match self
            .socket
            .dump(request, seq, |_, _, attrs| out.push(attrs.to_vec()))
        {
            Ok(()) => Ok(out),
            Err(kproxy_netlink::Error::Kernel { errno }) => Err(Error::Kernel {
                request: what.to_string(),
                errno,
            }),
            Err(e) => Err(e.into()),
        }
    }
}
