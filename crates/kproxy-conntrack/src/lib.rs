//! Deleting conntrack entries over ctnetlink, without the `conntrack` tool.
//!
//! [`Conntrack::delete_udp`] dumps one family's table, keeps the UDP entries any
//! [`Filter`] matches and deletes each by its original tuple. Message encoding and
//! decoding ([`wire`], [`entry`]) are pure and unit tested with byte fixtures; the
//! socket ([`socket`]) is the only I/O.

mod entry;
mod error;
mod socket;
mod wire;

pub use entry::{Entry, Family, Filter, Tuple, IPPROTO_UDP};
pub use error::Error;
pub use socket::{Conntrack, Deleted};
