//! The kproxy agent under test: started in the node's namespace with its output in a
//! log file, asked for its metrics, stopped with SIGTERM (killed if it hangs or when
//! dropped).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::checks::{eventually, Failure};
use crate::kernel::Node;
use crate::net::enter;

/// Where the agent serves metrics (in its namespace).
pub const METRICS_ADDR: &str = "127.0.0.1:10249";

/// A running agent.
pub struct Agent {
    child: Option<Child>,
    log: PathBuf,
    netns: Option<String>,
}

impl Agent {
    /// Starts `binary args` in `node`, logging to `log`.
    pub fn start(
        binary: &Path,
        node: &Node,
        netns: Option<&str>,
        args: &[String],
        log: &Path,
    ) -> Result<Agent, Failure> {
        let file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = file.try_clone().map_err(|e| format!("log: {e}"))?;
        let mut command = node.command(&binary.to_string_lossy());
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err);
        // SAFETY: prctl only changes the child's own death signal.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        Ok(Agent {
            child: Some(child),
            log: log.to_path_buf(),
            netns: netns.map(str::to_string),
        })
    }

    /// The agent's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Fails when the agent has exited.
    pub fn running(&mut self) -> Result<(), Failure> {
        let child = self.child.as_mut().ok_or("the agent was stopped")?;
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "the agent exited ({status}):\n{}",
                self.log_tail(30)
            )),
            Err(e) => Err(format!("waiting for the agent: {e}")),
        }
    }

    /// Its `/metrics` text.
    pub fn metrics(&self) -> Result<String, Failure> {
        let netns = self.netns.clone();
        std::thread::spawn(move || {
            if let Some(ns) = &netns {
                enter(ns)?;
            }
            http_get(METRICS_ADDR, "/metrics")
        })
        .join()
        .map_err(|_| "the metrics thread panicked".to_string())?
    }

    /// Waits until the agent reports a sync (its last-sync timestamp is set); returns how
    /// long that took from now.
    pub fn wait_synced(&mut self, timeout: Duration) -> Result<Duration, Failure> {
        let start = Instant::now();
        eventually(timeout, Duration::from_millis(50), || {
            self.running()?;
            let text = self.metrics()?;
            match metric(&text, "kubeproxy_sync_proxy_rules_last_timestamp_seconds") {
                Some(t) if t > 0.0 => Ok(()),
                _ => Err("no sync yet".to_string()),
            }
        })
        .map_err(|e| format!("{e}\n{}", self.log_tail(30)))?;
        Ok(start.elapsed())
    }

    /// Peak resident memory (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        // With `ip netns exec` the agent is the exec'd process itself: same pid.
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Stops it with SIGTERM, killing it after `grace`; returns its exit status.
    pub fn stop(&mut self, grace: Duration) -> Result<ExitStatus, Failure> {
        let mut child = self.child.take().ok_or("the agent was already stopped")?;
        // SAFETY: kill on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().map_err(|e| format!("wait: {e}"))? {
                return Ok(status);
            }
            if start.elapsed() > grace {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the agent ignored SIGTERM for {grace:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A plain HTTP/1.0 GET of `path` from `addr`; the body.
pub fn http_get(addr: &str, path: &str) -> Result<String, Failure> {
    let mut conn = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| format!("timeout: {e}"))?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")
        .map_err(|e| format!("GET {path}: {e}"))?;
    let mut text = String::new();
    conn.read_to_string(&mut text)
        .map_err(|e| format!("reading {path}: {e}"))?;
    match text.split_once("\r\n\r\n") {
        Some((_, body)) => Ok(body.to_string()),
        None => Err(format!("no HTTP response from {addr}{path}: {text:?}")),
    }
}

/// The value of the unlabelled sample `name` in a metrics text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlabelled_samples_are_read() {
        let text = "# HELP x\nkubeproxy_sync_proxy_rules_duration_seconds_sum 1.5\n\
                    kubeproxy_sync_proxy_rules_duration_seconds_count 3\n";
        assert_eq!(
            metric(text, "kubeproxy_sync_proxy_rules_duration_seconds_count"),
            Some(3.0)
        );
        assert_eq!(
            metric(text, "kubeproxy_sync_proxy_rules_duration_seconds"),
            None
        );
    }
}
