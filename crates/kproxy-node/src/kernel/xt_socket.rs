//! The x_tables socket calls (iptables-legacy's kernel interface) on a raw socket of the
//! network namespace this process is in: read a table's info and entries, replace it, and
//! add to its counters. The structures themselves are `kproxy_xtables`'.

use kproxy_model::IpFamily;
use kproxy_xtables::layout::{
    GET_ENTRIES_HEADER, GET_INFO_LEN, REPLACE_COUNTERS_POINTER, SO_GET_ENTRIES, SO_GET_INFO,
    SO_SET_ADD_COUNTERS, SO_SET_REPLACE, TABLE_NAME_LEN,
};
use kproxy_xtables::table::{Replacement, TableInfo};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A raw socket to make x_tables calls of one family on.
#[derive(Debug)]
pub struct XtSocket {
    fd: OwnedFd,
    level: libc::c_int,
}

impl XtSocket {
    /// Opens the socket (needs `CAP_NET_RAW`).
    pub fn open(family: IpFamily) -> io::Result<XtSocket> {
        let (domain, level) = match family {
            IpFamily::V4 => (libc::AF_INET, libc::IPPROTO_IP),
            IpFamily::V6 => (libc::AF_INET6, libc::IPPROTO_IPV6),
        };
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
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(XtSocket { fd, level })
    }

    /// The table's info as the kernel returns it (`struct ipt_getinfo` after the name), or
    /// `None` when the kernel has no such table.
    pub fn info_bytes(&self, table: &str) -> io::Result<Option<[u8; GET_INFO_LEN]>> {
        let mut info = [0u8; GET_INFO_LEN];
        put_table_name(&mut info, table)?;
        match self.get(SO_GET_INFO, &mut info) {
            Ok(()) => Ok(Some(info)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The table's info, or `None` when the kernel has no such table.
    pub fn info(&self, table: &str) -> io::Result<Option<TableInfo>> {
        self.info_bytes(table)?
            .map(|bytes| TableInfo::from_bytes(&bytes).map_err(invalid_data))
            .transpose()
    }

    /// The table's entries (`size` bytes, from its info).
    pub fn entries(&self, table: &str, size: u32) -> io::Result<Vec<u8>> {
        let mut buffer = vec![0u8; GET_ENTRIES_HEADER + size as usize];
        put_table_name(&mut buffer, table)?;
        buffer[TABLE_NAME_LEN..TABLE_NAME_LEN + 4].copy_from_slice(&size.to_ne_bytes());
        self.get(SO_GET_ENTRIES, &mut buffer)?;
        buffer.drain(..GET_ENTRIES_HEADER);
        Ok(buffer)
    }

    /// Replaces the table; returns the old table's counters as the kernel hands them back.
    /// The kernel refuses (`EAGAIN`) when the table changed since it was read.
    pub fn replace(&self, replacement: &mut Replacement) -> io::Result<Vec<u8>> {
        let mut counters = vec![0u8; replacement.old_entries as usize * 16];
        let pointer = counters.as_mut_ptr() as u64;
        replacement.blob[REPLACE_COUNTERS_POINTER..REPLACE_COUNTERS_POINTER + 8]
            .copy_from_slice(&pointer.to_ne_bytes());
        self.set(SO_SET_REPLACE, &replacement.blob)?;
        Ok(counters)
    }

    /// Adds counters to the table's entries (`struct xt_counters_info`).
    pub fn add_counters(&self, counters: &[u8]) -> io::Result<()> {
        self.set(SO_SET_ADD_COUNTERS, counters)
    }

    fn get(&self, option: libc::c_int, buffer: &mut [u8]) -> io::Result<()> {
        let mut len = socklen(buffer.len())?;
        // SAFETY: `buffer` is writable for `len` bytes and outlives the call.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                self.level,
                option,
                buffer.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn set(&self, option: libc::c_int, buffer: &[u8]) -> io::Result<()> {
        let len = socklen(buffer.len())?;
        // SAFETY: `buffer` is readable for `len` bytes and outlives the call; a pointer it
        // holds (the replace's counters) is to memory the caller keeps alive across it.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                self.level,
                option,
                buffer.as_ptr().cast(),
                len,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

fn socklen(len: usize) -> io::Result<libc::socklen_t> {
    libc::socklen_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "table too large"))
}

fn put_table_name(buffer: &mut [u8], table: &str) -> io::Result<()> {
    let name = table.as_bytes();
    if name.is_empty() || name.len() >= TABLE_NAME_LEN || name.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a table name: {table:?}"),
        ));
    }
    buffer[..name.len()].copy_from_slice(name);
    Ok(())
}

fn invalid_data(e: kproxy_xtables::XtError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}
