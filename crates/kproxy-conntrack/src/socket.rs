//! The ctnetlink client over `kproxy-netlink`'s socket: the only place in the crate that
//! does I/O. It works in the network namespace of the thread that opened it.

use crate::entry::{
    ct_type, delete_request, dump_request, parse_entry, Entry, Family, Filter, IPCTNL_MSG_CT_NEW,
};
use crate::error::{Error, Result};
use kproxy_netlink::{replies, Reply, Socket};

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

/// A bound ctnetlink socket.
#[derive(Debug)]
pub struct Conntrack {
    socket: Socket,
}

impl Conntrack {
    /// Opens and binds a socket in the calling thread's network namespace.
    pub fn open() -> Result<Conntrack> {
        Ok(Conntrack {
            socket: Socket::open(libc::NETLINK_NETFILTER)?,
        })
    }

    /// Dumps `family`'s table and returns the entries `keep` selects. An entry that
    /// cannot be decoded fails the dump, but only after its end was read, so the socket
    /// is ready for the next request.
    fn dump(&mut self, family: Family, keep: impl Fn(&Entry) -> bool) -> Result<Vec<Entry>> {
        let seq = self.socket.seq();
        let mut kept = Vec::new();
        let mut undecoded = None;
        let dumped = self
            .socket
            .dump(&dump_request(family, seq), seq, |ty, _, attrs| {
                if ty != ct_type(IPCTNL_MSG_CT_NEW) {
                    return;
                }
                match parse_entry(attrs) {
                    Ok(entry) if keep(&entry) => kept.push(entry),
                    Ok(_) => {}
                    Err(e) => undecoded = undecoded.take().or(Some(e)),
                }
            });
        match dumped {
            Err(kproxy_netlink::Error::Kernel { errno }) => Err(Error::Kernel {
                request: format!("dump the {family:?} conntrack table"),
                errno,
            }),
            Err(e) => Err(e.into()),
            Ok(()) => undecoded.map_or(Ok(kept), Err),
        }
    }

    /// Deletes `entries` in batches; returns how many were already gone and the errno
    /// of each other failure.
    fn delete(&mut self, family: Family, entries: &[Entry]) -> Result<(usize, Vec<i32>)> {
        let (mut gone, mut failures) = (0, Vec::new());
        for batch in entries.chunks(DELETE_BATCH) {
            let mut bytes = Vec::new();
            let (mut first, mut last) = (None, 0);
            for (i, entry) in batch.iter().enumerate() {
                last = self.socket.seq();
                first.get_or_insert(last);
                bytes.extend(delete_request(family, entry, last, i + 1 == batch.len()));
            }
            let Some(first) = first else {
                continue;
            };
            self.socket.send(&bytes)?;
            'answers: loop {
                let received = self.socket.recv()?;
                for reply in replies(received)? {
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
