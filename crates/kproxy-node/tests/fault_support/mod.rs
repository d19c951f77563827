//! Plumbing shared by the fault and security tests: the real `kproxy` binary run as a child
//! process in a throwaway network namespace (its own environment, so fault-injecting
//! wrappers never leak into other tests), its metrics and log read back, its processes
//! counted, and the small cluster those tests program.
//!
//! Namespaces are named `kpl-<pid>-f<n>-<tag>`, so kproxy-lab's sweep removes them if this
//! process is killed before its drops run. Needs root, the iptables tools and a built
//! `kproxy` (see kproxy-lab's README); under `CI=true` a machine that cannot run a test
//! fails it, elsewhere it is skipped with a loud notice.

#![allow(dead_code)]

pub mod frames;
#[path = "../support/held_lock.rs"]
pub mod held_lock;

use kproxy_lab::agent::{http_get, metric_value};
use kproxy_lab::netns::enter_named;
use kproxy_lab::require::{check_machine, skip_or_fail};
use kproxy_lab::{AgentBinary, Netns};
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Where the agent serves metrics inside its namespace.
pub const METRICS: &str = "127.0.0.1:10249";
/// Where the agent serves `/healthz` inside its namespace.
pub const HEALTHZ: &str = "127.0.0.1:10256";

/// `kubeproxy_sync_proxy_rules_duration_seconds_count`: syncs run.
pub const SYNCS: &str = "kubeproxy_sync_proxy_rules_duration_seconds_count";
/// Full syncs run.
pub const FULL_SYNCS: &str = "kubeproxy_sync_full_proxy_rules_duration_seconds_count";
/// Failed iptables restores.
pub const RESTORE_FAILURES: &str = "kubeproxy_sync_proxy_rules_iptables_restore_failures_total";
/// Failed partial iptables restores.
pub const PARTIAL_FAILURES: &str =
    "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total";
/// Failed nftables syncs.
pub const NFT_FAILURES: &str = "kubeproxy_sync_proxy_rules_nftables_sync_failures_total";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The binary, or `None` after a skip notice (a failure under `CI=true`).
pub fn prerequisites(test: &str) -> Option<AgentBinary> {
    if let Err(e) = check_machine() {
        skip_or_fail(test, &e);
        return None;
    }
    match AgentBinary::locate() {
        Ok(binary) => Some(binary),
        Err(e) => {
            skip_or_fail(test, &e);
            None
        }
    }
}

/// A fresh namespace with `lo` up, deleted on drop.
pub fn namespace(tag: &str) -> Netns {
    let name = format!(
        "kpl-{}-f{}-{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    Netns::create(&name).expect("namespace")
}

/// A node, a ClusterIP service `web` (10.96.0.20:80, two endpoints), a UDP NodePort
/// service `dns` (30053): the base that `support::CLUSTER` extends.
pub const CLUSTER: &str = include_str!("../fixtures/cluster-base.yaml");

/// [`CLUSTER`] with web's first endpoint at `ip`.
pub fn cluster_with_endpoint(ip: &str) -> String {
    CLUSTER.replace("10.244.1.5", ip)
}

/// The flags every test passes: node name, pod CIDR, servers on loopback, no host-wide
/// conntrack sysctls, fast syncs.
pub fn base_args(mode: &[&str], sync_period: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--hostname-override",
        "node-0",
        "--cluster-cidr",
        "10.244.0.0/16",
        "--metrics-bind-address",
        METRICS,
        "--healthz-bind-address",
        HEALTHZ,
        "--conntrack-max-per-core",
        "0",
        "--conntrack-tcp-timeout-established",
        "0s",
        "--conntrack-tcp-timeout-close-wait",
        "0s",
        "--iptables-min-sync-period",
        "100ms",
        "--iptables-sync-period",
        sync_period,
    ]
    .map(String::from)
    .to_vec();
    args.extend(mode.iter().map(|a| a.to_string()));
    args
}

/// The agent as a child process in a namespace; killed on drop (its log printed when the
/// test panics).
pub struct AgentProcess {
    child: Child,
    netns: String,
    log_path: PathBuf,
}

impl AgentProcess {
    /// Runs `[prefix...] kproxy args...` inside `netns` with `env` added, logging to
    /// `log_path`. `prefix` is a program that execs the rest (`setpriv ...`), or empty.
    /// iptables-legacy's lock is a private file beside the log (`XTABLES_LOCKFILE`, unless
    /// `env` sets it): the lock only guards one namespace's tables, and the host's
    /// `/run/xtables.lock` may be held for minutes by whatever else runs there.
    pub fn start(
        binary: &AgentBinary,
        netns: &Netns,
        prefix: &[&str],
        args: &[String],
        env: &[(&str, &str)],
        log_path: &Path,
    ) -> AgentProcess {
        let log = File::create(log_path).expect("agent log");
        let log_err = log.try_clone().expect("agent log");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", netns.name()])
            .args(prefix)
            .arg(binary.path())
            .args(args)
            .env("XTABLES_LOCKFILE", private_lock(log_path))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // SAFETY: prctl is async-signal-safe and only sets the child's own death signal.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().expect("agent starts");
        AgentProcess {
            child,
            netns: netns.name().to_string(),
            log_path: log_path.to_path_buf(),
        }
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `/metrics` text, `None` while the agent does not answer.
    pub fn metrics(&self) -> Option<String> {
        let addr: SocketAddr = METRICS.parse().ok()?;
        enter_named(&self.netns, || http_get(addr, "/metrics"))
            .ok()
            .flatten()
    }

    /// One unlabelled metric, `None` while the agent does not answer.
    pub fn metric(&self, name: &str) -> Option<f64> {
        metric_value(&self.metrics()?, name)
    }

    /// One unlabelled metric, 0 while the agent does not answer.
    pub fn count(&self, name: &str) -> u64 {
        self.metric(name).unwrap_or(0.0) as u64
    }

    /// Waits until `name` reaches at least `at_least`; panics (with the log) after
    /// `timeout`. Returns how long it took.
    pub fn wait_count(&mut self, name: &str, at_least: u64, timeout: Duration) -> Duration {
        let started = Instant::now();
        self.wait_until(&format!("{name} >= {at_least}"), timeout, |agent| {
            agent.count(name) >= at_least
        });
        started.elapsed()
    }

    /// Polls `condition` every 20 ms; panics after `timeout`, also when the agent exits.
    /// Returns how long it took.
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut(&Self) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            if condition(self) {
                return started.elapsed();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("agent exited ({status}) while waiting for {what}");
            }
            assert!(
                started.elapsed() < timeout,
                "not within {timeout:?}: {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Peak resident memory (`VmHWM`) in KiB.
    pub fn vm_hwm_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("agent's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// The agent's descendants right now (children, grandchildren, ...), as
    /// `pid command` lines.
    pub fn descendants(&self) -> Vec<String> {
        descendants_of(self.pid())
    }

    /// Kills the agent with SIGKILL (a crash) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the agent with SIGTERM and waits up to 10 s for it.
    pub fn stop(&mut self) {
        if let Ok(pid) = i32::try_from(self.pid()) {
            // SAFETY: our own unreaped child; the pid cannot name another process.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        panic!("the agent ignored SIGTERM for 10 s");
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- kproxy agent log (last lines) ---\n{}",
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
    }
}

/// A private xtables lock file beside `path`.
pub fn private_lock(path: &Path) -> PathBuf {
    path.with_file_name("xtables.lock")
}

/// Every process whose parent chain leads to `root`, as `pid command` lines.
pub fn descendants_of(root: u32) -> Vec<String> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces, so split after the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map(|(_, c)| c).unwrap_or("");
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid, comm.to_string()));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (pid, _, comm) in parents.iter().filter(|(_, p, _)| *p == parent) {
            found.push(format!("{pid} {comm}"));
            frontier.push(*pid);
        }
    }
    found
}

/// Every running process whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect()
}

/// Writes an executable shell script.
pub fn write_script(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Rewrites a file at once (write beside, then rename), as a config manager would.
pub fn replace_file(path: &Path, text: &str) {
    let staged = path.with_extension("new");
    std::fs::write(&staged, text).expect("write");
    std::fs::rename(&staged, path).expect("rename");
}

/// Runs a tool inside `netns`; its standard output (empty on failure).
pub fn run_in(netns: &Netns, program: &str, args: &[&str]) -> String {
    netns.exec(program, args).unwrap_or_default()
}

/// Prints one measured figure in a form easy to find in CI logs.
pub fn report(test: &str, text: impl std::fmt::Display) {
    eprintln!("MEASURED [{test}] {text}");
}

/// `args` without `flag` and its value.
pub fn without_flag(args: &[String], flag: &str) -> Vec<String> {
    let mut kept = Vec::new();
    let mut skip = false;
    for arg in args {
        if skip {
            skip = false;
        } else if arg == flag {
            skip = true;
        } else {
            kept.push(arg.clone());
        }
    }
    kept
}

/// An HTTP/1.0 request from inside `netns`: the status code, `Err` when the connection
/// fails (refused, timed out).
pub fn http_status(
    netns: &Netns,
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let stream = netns
        .enter(|| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
        .map_err(std::io::Error::other)??;
    let mut stream = stream;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {response:?}")))
}
