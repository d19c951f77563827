//! A netlink writer for kproxy's own batches. `nft` 1.0.6 reads every chain and set of
//! the table into its cache before any batch that adds a rule or an element: about a
//! second at 10,000 services, for a change of a few rules. kproxy knows its table and
//! needs no cache, so a transaction whose operations are all in the forms this module
//! encodes (regular chains added, flushed and deleted; the service ports' rules; elements
//! of the fixed sets and maps) goes to the kernel as one nfnetlink batch, the same
//! messages `nft` would send: every partial sync of such ports, and the first sync's
//! batches once its fixed objects are in. Anything else, and any batch larger than
//! [`MAX_BATCH_BYTES`], is left to `nft`.

mod batch;
mod expr;
mod rule;

pub use batch::{encode, Batch, Builder};

use super::parse::parse_commands;
use super::Transaction;
use kproxy_netlink::{replies, Reply, Socket};
use std::time::Duration;

/// The largest batch written over netlink (the socket's send buffer is sized to it).
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Operations above which a transaction is not even looked at (a full sync over an
/// existing table goes in one transaction of every operation).
const MAX_OPERATIONS: usize = 50_000;
/// How long to wait for the kernel's answers, which it queues before `send` returns.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// About how many bytes a message takes per byte of its `nft` text (rules carry their
/// table and chain names and a nest per expression), to size a batch's buffer once.
const ENCODED_BYTES_PER_TEXT_BYTE: usize = 3;
/// The same, per typed operation.
const ENCODED_BYTES_PER_OPERATION: usize = 300;
/// Room in the send buffer beyond the batch (the kernel's accounting of the datagram).
const SEND_BUFFER_SLACK: usize = 64 * 1024;

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
/// large or holds an operation the writer does not encode. A written transaction is read
/// back one line at a time, so no typed copy of a large batch is held.
pub fn batch_for(tx: &Transaction, first_seq: u32) -> Option<Batch> {
    if tx.is_empty() || tx.len() > MAX_OPERATIONS {
        return None;
    }
    let text = tx.written_text();
    let expected = text.map_or(tx.len() * ENCODED_BYTES_PER_OPERATION, |t| {
        t.len() * ENCODED_BYTES_PER_TEXT_BYTE
    });
    let mut builder = Builder::with_capacity(tx.family(), tx.table(), first_seq, expected);
    if let Some(text) = text {
        for line in text.lines() {
            for command in parse_commands(line).ok()? {
                if command.family != tx.family() || command.table != tx.table() {
                    return None;
                }
                builder.add(&command.op)?;
            }
            if builder.byte_len() > MAX_BATCH_BYTES {
                return None;
            }
        }
    } else {
        for op in tx.operations() {
            builder.add(op)?;
        }
    }
    Some(builder.finish()).filter(|b| b.bytes.len() <= MAX_BATCH_BYTES)
}

/// Applies `tx` over netlink in the calling thread's network namespace. `Ok(false)` when
/// the writer does not encode it (nothing was sent; an empty `tx` is applied without
/// sending anything); an error when the kernel refused it (nothing changed: a batch is
/// atomic).
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
    socket.set_send_buffer(batch.bytes.len() + SEND_BUFFER_SLACK)?;
    socket.send(&batch.bytes)?;
    let mut refused = None;
    loop {
        let mut answered = false;
        for reply in replies(socket.recv()?)? {
            let Reply::Status { seq, errno } = reply else {
                continue;
            };
            if errno != 0 {
                refused.get_or_insert((seq, errno));
            }
            answered |= seq == batch.last_seq;
        }
        if answered {
            break;
        }
    }
    match refused {
        None => Ok(true),
        Some((seq, errno)) => Err(WireError::Refused {
            what: if seq == batch.begin_seq {
                "the commit".to_string()
            } else {
                format!("message {}", seq.wrapping_sub(batch.begin_seq + 1))
            },
            source: std::io::Error::from_raw_os_error(errno),
        }),
    }
}
