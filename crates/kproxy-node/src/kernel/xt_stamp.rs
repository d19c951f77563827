//! A cheap stamp of an iptables-legacy (x_tables) table: the kernel's table info (hook
//! offsets, number of rules, size of the rule blob), read with one `getsockopt` and no
//! rules. Listing one chain with `iptables-legacy` reads and parses the whole table
//! (about a second at 10,000 services), so the agent's periodic check compares stamps
//! first and lists rules only when a table changed.

use super::xt_socket::XtSocket;
use kproxy_model::IpFamily;
use kproxy_xtables::layout::TABLE_NAME_LEN;
use std::hash::{DefaultHasher, Hasher};
use std::io;

/// A value that changes whenever a table's rules are added, deleted or replaced by rules
/// of another size (and, in practice, whenever anything in the table changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableStamp(u64);

impl TableStamp {
    /// The stamp of a table described by `bytes`.
    pub fn of(bytes: &[u8]) -> TableStamp {
        let mut hasher = DefaultHasher::new();
        hasher.write(bytes);
        TableStamp(hasher.finish())
    }
}

/// Reads the stamp of `table` (`nat`, `filter`, ...) of the network namespace this process
/// is in. A table the kernel does not have gets a stamp of its own.
pub fn table_stamp(family: IpFamily, table: &str) -> io::Result<TableStamp> {
    Ok(match XtSocket::open(family)?.info_bytes(table)? {
        Some(info) => TableStamp::of(&info[TABLE_NAME_LEN..]),
        None => TableStamp::of(b"absent"),
    })
}
