//! Helpers shared by the kernel tests: throwaway network namespaces and the root check.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Whether kernel tests can run here (root and `ip netns`). When they cannot, a test
/// fails under `CI=true` and is skipped loudly elsewhere.
pub fn kernel_tests_possible(test: &str, tools: &[&str]) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let missing: Vec<&&str> = tools.iter().filter(|t| which(t).is_none()).collect();
    if root && missing.is_empty() {
        return true;
    }
    let why = if root {
        format!("missing tools {missing:?}")
    } else {
        "not root".to_string()
    };
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: kernel test cannot run in CI: {why}");
    }
    eprintln!("\n!!!!! SKIPPED {test}: kernel test cannot run: {why} !!!!!\n");
    false
}

/// Finds a program on PATH.
pub fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    })
}

/// A network namespace deleted on drop.
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// Creates `kproxy-<tag>-<pid>-<n>` with loopback up.
    pub fn new(tag: &str) -> NetNs {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("kproxy-{tag}-{}-{n}", std::process::id());
        let status = Command::new("ip").args(["netns", "add", &name]).status();
        assert!(
            status.map(|s| s.success()).unwrap_or(false),
            "ip netns add {name}"
        );
        let ns = NetNs { name };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command in the namespace and returns its output (panics if it cannot start).
    pub fn exec(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).expect("write stdin");
        }
        child.wait_with_output().expect("wait")
    }

    /// Runs a command that must succeed; returns stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.exec(args, None);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command with stdin that must succeed.
    pub fn run_with_input(&self, args: &[&str], input: &str) -> String {
        let out = self.exec(args, Some(input));
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
