//! Netlink plumbing shared by kproxy's kernel clients (ctnetlink in `kproxy-conntrack`,
//! nf_tables in `kproxy-nftables`/`kproxy-node`): building requests and splitting replies
//! (module `wire`, pure and unit tested) and one socket (module `socket`, the only I/O).

mod error;
mod socket;
mod wire;

pub use error::{Error, Result};
pub use socket::Socket;
pub use wire::{
    attrs, replies, Attr, Message, Reply, NFNETLINK_V0, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
