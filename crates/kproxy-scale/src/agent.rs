//! The agent under test: `kproxy` with kube-proxy's flags, pointed at the fake API server,
//! its iptables-restore (iptables mode) or nft (nftables mode) replaced by the relay. Stopped (SIGTERM, then SIGKILL) on drop.

use crate::args::{Backend, Mode};
use crate::cluster::{CLUSTER_CIDR, NODE_NAME};
use crate::procstat::ProcessUsage;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a stopping agent gets before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How to start the agent.
#[derive(Debug, Clone)]
pub struct AgentCommand {
    /// The kproxy binary.
    pub binary: PathBuf,
    /// Kubeconfig pointing at the fake API server.
    pub kubeconfig: PathBuf,
    /// iptables backend.
    pub backend: Backend,
    /// Proxy mode.
    pub mode: Mode,
    /// Where `/metrics` is served.
    pub metrics: SocketAddr,
    /// Where `/healthz` is served.
    pub healthz: SocketAddr,
    /// The relay script that stands in for iptables-restore or nft.
    pub restore_relay: PathBuf,
    /// `--iptables-restore-timeout`.
    pub restore_timeout: Duration,
    /// Where its standard error goes.
    pub log: PathBuf,
}

impl AgentCommand {
    /// The agent's arguments: kube-proxy's defaults except addresses, and no conntrack
    /// sysctls (those are not per namespace).
    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--kubeconfig",
            &self.kubeconfig.to_string_lossy(),
            "--hostname-override",
            NODE_NAME,
            "--cluster-cidr",
            CLUSTER_CIDR,
            "--proxy-mode",
            self.mode.name(),
            "--iptables-backend",
            self.backend.name(),
            "--metrics-bind-address",
            &self.metrics.to_string(),
            "--healthz-bind-address",
            &self.healthz.to_string(),
            "--iptables-restore-timeout",
            &format!("{}s", self.restore_timeout.as_secs()),
        ]
        .map(String::from)
        .to_vec();
        for flag in [
            "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0s",
            "--conntrack-tcp-timeout-close-wait=0s",
        ] {
            args.push(flag.to_string());
        }
        args
    }

    /// Starts the agent in its own process group (a Ctrl-C reaches only the harness,
    /// which then stops the agent).
    pub fn spawn(&self) -> Result<Agent, String> {
        use std::os::unix::process::CommandExt;
        let log =
            std::fs::File::create(&self.log).map_err(|e| format!("{}: {e}", self.log.display()))?;
        let child = Command::new(&self.binary)
            .args(self.args())
            .env(self.mode.tool_env(), &self.restore_relay)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.binary.display()))?;
        Ok(Agent {
            child,
            log: self.log.clone(),
        })
    }
}

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its memory and CPU now; `None` once it has exited.
    pub fn usage(&self) -> Option<ProcessUsage> {
        ProcessUsage::read(self.pid())
    }

    /// The exit status, if it has already exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Stops it: SIGTERM, then SIGKILL after [`STOP_GRACE`]; reaps it.
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let pid = libc::pid_t::try_from(self.pid()).unwrap_or(0);
        // SAFETY: kill on our own child's pid (not yet reaped, so not reused).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Still there after the grace period; kill and reap.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
