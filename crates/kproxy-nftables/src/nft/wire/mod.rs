//! A netlink writer for small batches. `nft` 1.0.6 reads every chain and set of the
//! table into its cache before any batch that adds a rule or an element: about a second
//! at 10,000 services, for a change of a few rules. kproxy knows its table and needs no
//! cache, so a partial sync whose operations are all in the forms this module encodes
//! (regular chains added, flushed and deleted; the service and endpoint chains' rules;
//! elements of the fixed sets and maps) goes to the kernel as one nfnetlink batch,
//! the same messages `nft` would send. Anything else, and any batch larger than
//! [`MAX_BATCH_BYTES`], is left to `nft`.

mod batch;
mod expr;
mod rule;

pub use batch::{encode, Batch};

use super::parse::parse_commands;
use super::Transaction;
use kproxy_netlink::{replies, Reply, Socket};
use std::borrow::Cow;
use std::time::Duration;

/// The largest batch written over netlink: well inside the socket's default send buffer.
pub const MAX_BATCH_BYTES: usize = 128 * 1024;
/// Operations above which a transaction is not even looked at (a full sync's batches).
const MAX_OPERATIONS: usize = 2_000;
/// How long to wait for the kernel's answers, which it queues before `send` returns.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a batch the writer sent did not apply.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The socket failed, or a reply could not be read.
    #[error("netlink: {0}")]
    Netlink(#[from] kproxy_netlink::Error),
    /// The kernel refused a message of the batch, or its commit (the whole batch was
    /// rolled back).
    #[error("the kernel refused {what}: {source}")]
    Refused {
        /// `message N` (counted from 0) or `the commit`.
        what: String,
        /// The kernel's errno.
        source: std::io::Error,
    },
}

/// The batch for `tx`, sequence numbers from `first_seq` on, or `None` when `tx` is too
/// large or holds an operation the writer does not encode.
pub fn batch_for(tx: &Transaction, first_seq: u32) -> Option<Batch> {
    if tx.is_empty() || tx.len() > MAX_OPERATIONS {
        return None;
    }
    let ops = if tx.operations().is_empty() {
        let commands = parse_commands(&tx.render()).ok()?;
        if commands
            .iter()
            .any(|c| c.family != tx.family() || c.table != tx.table())
        {
            return None;
        }
        Cow::Owned(commands.into_iter().map(|c| c.op).collect())
    } else {
        Cow::Borrowed(tx.operations())
    };
    encode(tx.family(), tx.table(), &ops, first_seq).filter(|b| b.bytes.len() <= MAX_BATCH_BYTES)
}

/// Applies `tx` over netlink in the calling thread's network namespace. `Ok(false)` when
/// the writer does not encode it (nothing was sent; an empty `tx` is applied without
/// sending anything); an error when the kernel refused it
/// (nothing changed: a batch is atomic).
pub fn apply(tx: &Transaction) -> Result<bool, WireError> {
    if tx.is_empty() {
        return Ok(true);
    }
    let mut socket = Socket::open(libc::NETLINK_NETFILTER)?;
    let first_seq = socket.seq();
    let Some(batch) = batch_for(tx, first_seq) else {
        return Ok(false);
    };
    socket.set_receive_timeout(REPLY_TIMEOUT)?;
    socket.send(&batch.bytes)?;
    let mut unanswered = batch.acked.len();
    let mut refused = None;
    while unanswered > 0 {
        for reply in replies(socket.recv()?)? {
            let Reply::Status { seq, errno } = reply else {
                continue;
            };
            if seq == batch.begin_seq && errno != 0 {
                refused.get_or_insert((seq, errno));
            } else if batch.acked.contains(&seq) {
                unanswered -= 1;
                if errno != 0 {
                    refused.get_or_insert((seq, errno));
                }
            }
        }
    }
    match refused {
        None => Ok(true),
        Some((seq, errno)) => Err(WireError::Refused {
            what: if seq == batch.begin_seq {
                "the commit".to_string()
            } else {
                format!("message {}", seq.wrapping_sub(batch.acked.start))
            },
            source: std::io::Error::from_raw_os_error(errno),
        }),
    }
}
