//! The x_tables structures as the kernel lays them out on 64-bit Linux: `ipt_entry` and
//! `ip6t_entry`, the match and target headers, the standard and error targets, and the
//! headers of the `getsockopt`/`setsockopt` calls.

/// x_tables aligns every entry, match and target to 8 bytes (`XT_ALIGN`).
pub const ALIGN: usize = 8;

/// `size` rounded up to [`ALIGN`].
pub const fn align(size: usize) -> usize {
    (size + ALIGN - 1) & !(ALIGN - 1)
}

/// `struct xt_entry_match` / `xt_entry_target` header: `u16` size, a 29-byte name and a
/// revision byte.
pub const EXTENSION_HEADER: usize = 32;
/// Room for an extension's name, with its NUL (`XT_EXTENSION_MAXNAMELEN`).
pub const EXTENSION_NAME_LEN: usize = 29;
/// Offset of the revision byte in an extension header.
pub const REVISION_OFFSET: usize = 31;
/// `struct xt_standard_target`: header and an `int` verdict.
pub const STANDARD_TARGET_SIZE: usize = align(EXTENSION_HEADER + 4);
/// `struct xt_error_target`: header and a 30-byte name (`XT_FUNCTION_MAXNAMELEN`).
pub const ERROR_TARGET_SIZE: usize = align(EXTENSION_HEADER + 30);
/// Room for a chain name in an error target, with its NUL.
pub const ERROR_NAME_LEN: usize = 30;
/// Longest chain name `iptables` accepts.
pub const CHAIN_NAME_MAX: usize = EXTENSION_NAME_LEN - 1;
/// The error target's name, also the name of the entry that ends a table.
pub const ERROR_TARGET: &str = "ERROR";

/// Verdict of `-j ACCEPT` (`-NF_ACCEPT - 1`).
pub const VERDICT_ACCEPT: i32 = -2;
/// Verdict of `-j DROP` (`-NF_DROP - 1`).
pub const VERDICT_DROP: i32 = -1;
/// Verdict of `-j RETURN` (`XT_RETURN`).
pub const VERDICT_RETURN: i32 = -5;

/// `XT_TABLE_MAXNAMELEN`.
pub const TABLE_NAME_LEN: usize = 32;
/// `NF_INET_NUMHOOKS`.
pub const HOOKS: usize = 5;
/// Built-in chain of each hook, by hook number.
pub const HOOK_CHAINS: [&str; HOOKS] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// `struct ipt_getinfo`: name, valid hooks, hook entries, underflows, entries, size.
pub const GET_INFO_LEN: usize = TABLE_NAME_LEN + 4 + 2 * HOOKS * 4 + 4 + 4;
/// `struct ipt_get_entries` header: name, size, padding to the 8-aligned entries.
pub const GET_ENTRIES_HEADER: usize = TABLE_NAME_LEN + 8;
/// `struct ipt_replace` header: name, hooks, counts, offsets and the counters pointer.
pub const REPLACE_HEADER: usize = 96;
/// Offset of the counters pointer in `struct ipt_replace`.
pub const REPLACE_COUNTERS_POINTER: usize = 88;
/// `struct xt_counters_info` header: name, count, padding.
pub const COUNTERS_INFO_HEADER: usize = TABLE_NAME_LEN + 8;
/// `struct xt_counters`: packets and bytes, `u64` each.
pub const COUNTERS_SIZE: usize = 16;

/// `getsockopt` option that reads a table's info (`IPT_SO_GET_INFO`, same for IPv6).
pub const SO_GET_INFO: i32 = 64;
/// `getsockopt` option that reads a table's entries (`IPT_SO_GET_ENTRIES`).
pub const SO_GET_ENTRIES: i32 = 65;
/// `setsockopt` option that replaces a table (`IPT_SO_SET_REPLACE`).
pub const SO_SET_REPLACE: i32 = 64;
/// `setsockopt` option that adds to a table's counters (`IPT_SO_SET_ADD_COUNTERS`).
pub const SO_SET_ADD_COUNTERS: i32 = 65;

/// The address family of a table: which entry layout it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `iptables`: `struct ipt_entry`.
    V4,
    /// `ip6tables`: `struct ip6t_entry`.
    V6,
}

/// Where the fields of one family's entry sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryLayout {
    /// Size of the entry header (`sizeof(struct ipt_entry)`); matches follow it.
    pub size: usize,
    /// Length of one address.
    pub addr_len: usize,
    /// Offset of the source address; destination, source mask and destination mask follow.
    pub src: usize,
    /// Offset of the input interface name; output name and both masks follow, 16 bytes each.
    pub iniface: usize,
    /// Offset of the `u16` protocol.
    pub proto: usize,
    /// Offset of the flags byte.
    pub flags: usize,
    /// Offset of the inversion flags byte.
    pub invflags: usize,
    /// Offset of the `u16` target offset (the `u16` next offset follows it).
    pub target_offset: usize,
    /// Offset of the `u32` `comefrom` the kernel fills in.
    pub comefrom: usize,
    /// Offset of the counters.
    pub counters: usize,
    /// Flag: the rule jumps with `-g` (goto).
    pub goto_flag: u8,
    /// Flag set whenever a protocol is given (IPv6 only).
    pub proto_flag: u8,
}

impl Family {
    /// The layout of this family's entries.
    pub const fn layout(self) -> EntryLayout {
        match self {
            Family::V4 => EntryLayout {
                size: 112,
                addr_len: 4,
                src: 0,
                iniface: 16,
                proto: 80,
                flags: 82,
                invflags: 83,
                target_offset: 88,
                comefrom: 92,
                counters: 96,
                goto_flag: 0x02,
                proto_flag: 0,
            },
            Family::V6 => EntryLayout {
                size: 168,
                addr_len: 16,
                src: 0,
                iniface: 64,
                proto: 128,
                flags: 131,
                invflags: 132,
                target_offset: 140,
                comefrom: 144,
                counters: 152,
                goto_flag: 0x04,
                proto_flag: 0x01,
            },
        }
    }
}

/// Inversion flag of `! -i` (`IPT_INV_VIA_IN`, same value for IPv6).
pub const INV_VIA_IN: u8 = 0x01;
/// Inversion flag of `! -o`.
pub const INV_VIA_OUT: u8 = 0x02;
/// Inversion flag of `! -s`.
pub const INV_SRCIP: u8 = 0x08;
/// Inversion flag of `! -d`.
pub const INV_DSTIP: u8 = 0x10;
/// Inversion flag of `! -p`.
pub const INV_PROTO: u8 = 0x40;

/// Reads a native-endian `u16`.
pub fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

/// Reads a native-endian `u32`.
pub fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Writes a native-endian `u16` (the caller sized `bytes`).
pub fn put_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_ne_bytes());
}

/// Writes a native-endian `u32` (the caller sized `bytes`).
pub fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_ne_bytes());
}

/// The NUL-terminated name in `bytes` (all of it when there is no NUL).
pub fn c_name(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_the_kernels() {
        assert_eq!(STANDARD_TARGET_SIZE, 40);
        assert_eq!(ERROR_TARGET_SIZE, 64);
        assert_eq!(GET_INFO_LEN, 84);
        assert_eq!(align(44), 48);
        assert_eq!(Family::V6.layout().size % ALIGN, 0);
    }
}
