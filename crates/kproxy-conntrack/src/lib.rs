//! Deleting conntrack entries over ctnetlink, without the `conntrack` tool.
//!
//! [`Conntrack::delete_udp`] dumps one family's table, keeps the UDP entries any
//! [`Filter`] matches and deletes each by its original tuple. Message encoding and
//! decoding (module `entry`, over `kproxy-netlink`'s framing) are pure and unit tested with byte fixtures; the
//! socket (module `socket`) is the only I/O. Kernel tests: `kproxy-node`'s
//! `tests/conntrack_netns.rs`.

mod entry;
mod error;
mod socket;

pub use entry::{Entry, Family, Filter, Tuple, IPPROTO_UDP};
pub use error::Error;
pub use socket::{Conntrack, Deleted};
