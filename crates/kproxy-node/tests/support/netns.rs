//! A throwaway network namespace entered by the current test thread only (setns), so
//! every tool the test starts from this thread runs inside it; the root namespace's
//! firewall, routes and interfaces are never touched. Left and deleted on drop.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The namespace, while the thread is inside it.
pub struct Netns {
    name: String,
    original: File,
}

/// Whether kernel tests may be skipped here (not CI), or must fail.
fn skip_or_fail(reason: &str) -> Option<Netns> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("kernel test cannot run under CI=true: {reason}");
    }
    eprintln!("!!! SKIPPING kernel test: {reason} (set up root, ip and iptables to run it)");
    None
}

fn tool_exists(name: &str) -> bool {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .any(|dir| std::path::Path::new(dir).join(name).exists())
}

impl Netns {
    /// Creates and enters a namespace with `lo` up; `None` (skip) when this machine cannot.
    pub fn enter(tools: &[&str]) -> Option<Netns> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return skip_or_fail("not running as root");
        }
        if let Some(missing) = tools.iter().find(|t| !tool_exists(t)) {
            return skip_or_fail(&format!("{missing} is not installed"));
        }
        let name = format!(
            "kproxy-node-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let added = Command::new("ip").args(["netns", "add", &name]).status();
        if !added.is_ok_and(|s| s.success()) {
            return skip_or_fail("`ip netns add` failed");
        }
        let original = File::open("/proc/thread-self/ns/net").expect("own netns");
        let target = File::open(format!("/run/netns/{name}")).expect("new netns");
        // SAFETY: setns on valid namespace file descriptors affects only this thread.
        let rc = unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) };
        let netns = Netns { name, original };
        assert_eq!(rc, 0, "setns failed: {}", std::io::Error::last_os_error());
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
        assert!(up.is_ok_and(|s| s.success()), "lo up");
        Some(netns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // SAFETY: as above; returns this thread to the namespace it came from.
        unsafe {
            libc::setns(self.original.as_raw_fd(), libc::CLONE_NEWNET);
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
