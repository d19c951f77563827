//! A cheap stamp of an iptables-legacy (x_tables) table: the kernel's table info (hook
//! offsets, number of rules, size of the rule blob), read with one `getsockopt` and no
//! rules. Listing one chain with `iptables-legacy` reads and parses the whole table
//! (about a second at 10,000 services), so the agent's periodic check compares stamps
//! first and lists rules only when a table changed.

use kproxy_model::IpFamily;
use std::hash::{DefaultHasher, Hasher};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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

/// `IPT_SO_GET_INFO` and `IP6T_SO_GET_INFO` (both `64`, the x_tables base).
const SO_GET_INFO: libc::c_int = 64;
/// `XT_TABLE_MAXNAMELEN`.
const TABLE_NAME_LEN: usize = 32;
/// `struct ipt_getinfo` / `ip6t_getinfo`: the name, then valid hooks, five hook entry
/// offsets, five underflow offsets, the number of entries and the size, all `u32`.
const GET_INFO_LEN: usize = TABLE_NAME_LEN + 13 * 4;

/// Reads the stamp of `table` (`nat`, `filter`, ...) of the network namespace this process
/// is in. A table the kernel does not have gets a stamp of its own.
pub fn table_stamp(family: IpFamily, table: &str) -> io::Result<TableStamp> {
    let (domain, level) = match family {
        IpFamily::V4 => (libc::AF_INET, libc::IPPROTO_IP),
        IpFamily::V6 => (libc::AF_INET6, libc::IPPROTO_IPV6),
    };
    let name = table.as_bytes();
    if name.is_empty() || name.len() >= TABLE_NAME_LEN || name.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a table name: {table:?}"),
        ));
    }
    // SAFETY: plain socket(2) call; the result is checked before it is owned.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut info = [0u8; GET_INFO_LEN];
    info[..name.len()].copy_from_slice(name);
    let mut len = GET_INFO_LEN as libc::socklen_t;
    // SAFETY: `info` is a writable buffer of `len` bytes that outlives the call.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            SO_GET_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(TableStamp::of(&info[TABLE_NAME_LEN..]))
    } else {
        match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ENOENT) => Ok(TableStamp::of(b"absent")),
            e => Err(e),
        }
    }
}
