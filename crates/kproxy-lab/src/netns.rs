//! A named network namespace (`/run/netns/NAME`), deleted on drop.
//!
//! Code runs inside it on a thread of its own that entered it with `setns` ([`Netns::enter`]);
//! a socket created there stays in the namespace whichever thread uses it later. Tools run
//! through `ip -n NAME` and `ip netns exec NAME`. The calling thread never changes namespace.

use crate::command::{ip, run_tool, TOOL_TIMEOUT};
use crate::error::LabError;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// A network namespace owned by the lab.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace with `lo` up and duplicate address detection off (addresses
    /// are usable at once).
    pub fn create(name: &str) -> Result<Netns, LabError> {
        ip(&["netns", "add", name])?;
        let netns = Netns {
            name: name.to_string(),
        };
        for key in ["all", "default"] {
            netns.sysctl(&format!("net/ipv6/conf/{key}/accept_dad"), "0")?;
        }
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// The namespace's name, as `ip netns` lists it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME args...`.
    pub fn ip(&self, args: &[&str]) -> Result<String, LabError> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Runs a tool inside the namespace (`ip netns exec NAME program args...`).
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String, LabError> {
        self.exec_with_timeout(program, args, TOOL_TIMEOUT)
    }

    /// [`exec`](Self::exec) with its own deadline.
    pub fn exec_with_timeout(
        &self,
        program: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<String, LabError> {
        let mut full = vec!["netns", "exec", self.name.as_str(), program];
        full.extend_from_slice(args);
        run_tool("ip", &full, timeout)
    }

    /// Writes a sysctl of this namespace, `key` as a path under `/proc/sys`
    /// (`net/ipv4/ip_forward`).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), LabError> {
        let path = std::path::Path::new("/proc/sys").join(key);
        self.enter(|| std::fs::write(&path, value))?
            .map_err(|source| LabError::File { path, source })
    }

    /// Runs `f` on a thread that entered this namespace, and returns its result.
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R, LabError> {
        enter_named(&self.name, f)
    }
}

/// Runs `f` on a thread that entered the namespace `/run/netns/NAME`, and returns its
/// result (for holders of a namespace's name that do not own it).
pub fn enter_named<R: Send>(name: &str, f: impl FnOnce() -> R + Send) -> Result<R, LabError> {
    let target = open_named(name)?;
    let setns_error = |source| LabError::Setns {
        namespace: name.to_string(),
        source,
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                setns(&target).map_err(setns_error)?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Opens `/run/netns/NAME`, for a long-lived thread that enters it with [`setns`].
pub fn open_named(name: &str) -> Result<File, LabError> {
    File::open(format!("/run/netns/{name}")).map_err(|source| LabError::Setns {
        namespace: name.to_string(),
        source,
    })
}

/// Moves the calling thread into the network namespace behind `file`.
pub fn setns(file: &File) -> std::io::Result<()> {
    // SAFETY: setns with a valid namespace descriptor changes only this thread's network
    // namespace; no memory is shared with the kernel beyond the call.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting takes the links inside with it; a failure here (already gone) leaves
        // nothing to clean.
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("kproxy-lab: removing namespace {}: {e}", self.name);
        }
    }
}
