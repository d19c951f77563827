//! [`NetlinkIpvs`]: the kernel's IPVS table over generic netlink.

use crate::error::{Error, Result};
use crate::handle::IpvsHandle;
use crate::netlink::codec::{self, Request, IPVS_FAMILY_NAME};
use crate::netlink::socket::GenlSocket;
use crate::ops::{Failure, IpvsOp};
use crate::types::{Destination, ServiceKey, Timeouts, VirtualServer};

/// Requests sent in one `sendto`. If all of them fail, their error replies
/// (one small datagram each, ~1 KiB of socket memory) must fit the receive buffer.
const BATCH: usize = 128;

/// The kernel's IPVS table, reached over a generic netlink socket.
#[derive(Debug)]
pub struct NetlinkIpvs {
    socket: GenlSocket,
    family: u16,
}

impl NetlinkIpvs {
    /// Opens a socket and resolves the `IPVS` generic netlink family.
    /// [`Error::NoIpvs`] when the kernel has no IPVS.
    pub fn connect() -> Result<NetlinkIpvs> {
        let mut socket = GenlSocket::open()?;
        let seq = socket.seq();
        let request = codec::get_family_request(IPVS_FAMILY_NAME, seq);
        let replies = match socket.query(&request, seq, "resolve the IPVS netlink family") {
            Err(e) if e.errno() == Some(libc::ENOENT) => return Err(Error::NoIpvs),
            other => other?,
        };
        let attrs = replies.first().ok_or(Error::NoIpvs)?;
        let family = codec::family_id(attrs)?;
        Ok(NetlinkIpvs { socket, family })
    }
}

impl NetlinkIpvs {
    /// Sends one acknowledged request; the kernel's refusal is the error.
    fn request(&mut self, req: &Request<'_>, what: &str) -> Result<()> {
        let seq = self.socket.seq();
        let msg = codec::encode(self.family, seq, req, true);
        match self.socket.execute(&msg, seq, seq)?.first() {
            Some(&(_, errno)) => Err(Error::Kernel {
                request: what.to_string(),
                errno,
            }),
            None => Ok(()),
        }
    }
}

fn request(op: &IpvsOp) -> Request<'_> {
    match op {
        IpvsOp::AddService(vs) => Request::NewService(vs),
        IpvsOp::UpdateService(vs) => Request::SetService(vs),
        IpvsOp::DeleteService(key) => Request::DelService(key),
        IpvsOp::AddDestination(key, rs) => Request::NewDest(key, rs),
        IpvsOp::UpdateDestination(key, rs) => Request::SetDest(key, rs),
        IpvsOp::DeleteDestination(key, rs) => Request::DelDest(key, rs),
    }
}

impl IpvsHandle for NetlinkIpvs {
    fn services(&mut self) -> Result<Vec<VirtualServer>> {
        let seq = self.socket.seq();
        let msg = codec::encode(self.family, seq, &Request::DumpServices, false);
        let replies = self.socket.query(&msg, seq, "list IPVS services")?;
        let mut out = Vec::with_capacity(replies.len());
        for attrs in &replies {
            out.extend(codec::decode_service(attrs)?);
        }
        Ok(out)
    }

    fn destinations(&mut self, service: &ServiceKey) -> Result<Vec<Destination>> {
        let seq = self.socket.seq();
        let msg = codec::encode(self.family, seq, &Request::DumpDests(service), false);
        let what = format!("list destinations of {service}");
        let replies = self.socket.query(&msg, seq, &what)?;
        replies
            .iter()
            .map(|attrs| codec::decode_dest(attrs, &service.addr))
            .collect()
    }

    fn apply(&mut self, ops: &[IpvsOp]) -> Result<Vec<Failure>> {
        let mut failures = Vec::new();
        for chunk in ops.chunks(BATCH) {
            let mut batch = Vec::with_capacity(chunk.len() * 96);
            let mut first = 0;
            let mut last = 0;
            for (i, op) in chunk.iter().enumerate() {
                let seq = self.socket.seq();
                if i == 0 {
                    first = seq;
                }
                last = seq;
                let ack = i + 1 == chunk.len();
                batch.extend(codec::encode(self.family, seq, &request(op), ack));
            }
            for (seq, errno) in self.socket.execute(&batch, first, last)? {
                let index = seq.wrapping_sub(first) as usize;
                if let Some(op) = chunk.get(index) {
                    failures.push(Failure {
                        op: op.clone(),
                        error: Error::Kernel {
                            request: op.to_string(),
                            errno,
                        },
                    });
                }
            }
        }
        Ok(failures)
    }

    fn flush(&mut self) -> Result<()> {
        self.request(&Request::Flush, "flush IPVS services")
    }

    fn set_timeouts(&mut self, timeouts: Timeouts) -> Result<()> {
        self.request(&Request::SetTimeouts(timeouts), "set IPVS timeouts")
    }
}
