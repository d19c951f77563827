//! The kproxy node agent running inside the lab's node namespace: started with
//! `ip netns exec`, ready once its metrics show a successful sync, stopped with SIGTERM
//! (or killed with SIGKILL, as a crash). Its output goes to a log file in the lab's
//! directory; the log's end is shown when it fails, and when a test panics.

use crate::binary::AgentBinary;
use crate::error::LabError;
use crate::mode::ProxyMode;
use crate::netns::{enter_named, Netns};
use crate::plan;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Where the agent serves metrics inside the node namespace.
pub const METRICS_ADDR: &str = "127.0.0.1:10249";
/// Where the agent serves `/healthz` inside the node namespace.
pub const HEALTHZ_ADDR: &str = "0.0.0.0:10256";
/// How long a stopped agent may take to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The text the agent prints for a mode this build does not have.
const MODE_UNAVAILABLE: &str = "not available yet";

/// Where the agent reads the cluster from.
#[derive(Debug, Clone)]
pub enum ClusterSource {
    /// `--cluster-file PATH`.
    File(PathBuf),
    /// `--kubeconfig PATH` (a fake API server inside the node namespace).
    Kubeconfig(PathBuf),
}

/// How to run the agent.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The proxy mode.
    pub mode: ProxyMode,
    /// The cluster source.
    pub source: ClusterSource,
    /// More flags, after the lab's own (a later flag wins).
    pub extra_args: Vec<String>,
}

impl AgentOptions {
    /// The full argument list: node name, cluster CIDRs, mode, source, servers, extras.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--hostname-override",
            plan::NODE_NAME,
            "--cluster-cidr",
            plan::CLUSTER_CIDRS,
            "--metrics-bind-address",
            METRICS_ADDR,
            "--healthz-bind-address",
            HEALTHZ_ADDR,
        ]
        .map(String::from)
        .to_vec();
        args.extend(self.mode.flags().into_iter().map(String::from));
        let (flag, path) = match &self.source {
            ClusterSource::File(path) => ("--cluster-file", path),
            ClusterSource::Kubeconfig(path) => ("--kubeconfig", path),
        };
        args.push(flag.to_string());
        args.push(path.to_string_lossy().into_owned());
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// A running agent; killed on drop if still running.
pub struct Agent {
    child: Child,
    node: String,
    log_path: PathBuf,
    mode: ProxyMode,
}

impl Agent {
    /// Starts the agent in `node`, logging to `log_path`. The agent is killed if the thread
    /// that started it exits first (it cannot outlive a test that was killed).
    pub fn start(
        binary: &AgentBinary,
        node: &Netns,
        options: &AgentOptions,
        log_path: &Path,
    ) -> Result<Agent, LabError> {
        Agent::start_with_args(binary, node, options.mode, &options.args(), &[], log_path)
    }

    /// Starts the agent in `node` with exactly `args` (none of the lab's own flags; pass
    /// `--metrics-bind-address` [`METRICS_ADDR`] for [`wait_synced`](Self::wait_synced)) and
    /// `env` added to its environment, logging to `log_path`; `mode` is what `args` select.
    pub fn start_with_args(
        binary: &AgentBinary,
        node: &Netns,
        mode: ProxyMode,
        args: &[String],
        env: &[(&str, &str)],
        log_path: &Path,
    ) -> Result<Agent, LabError> {
        let log = File::create(log_path).map_err(|source| LabError::File {
            path: log_path.to_path_buf(),
            source,
        })?;
        let log_err = log.try_clone().map_err(|e| LabError::io("agent log", e))?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", node.name()])
            .arg(binary.path())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // SAFETY: prctl is async-signal-safe and touches only the child's own attributes.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = command.spawn().map_err(|e| LabError::Command {
            command: format!("ip netns exec {} {}", node.name(), binary.path().display()),
            message: e.to_string(),
        })?;
        Ok(Agent {
            child,
            node: node.name().to_string(),
            log_path: log_path.to_path_buf(),
            mode,
        })
    }

    /// The mode it runs in.
    pub fn mode(&self) -> ProxyMode {
        self.mode
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the agent reports a successful sync (its metrics'
    /// `kubeproxy_sync_proxy_rules_last_timestamp_seconds` is set). An agent that exits
    /// first is an error; one whose build lacks the mode is [`LabError::ModeUnavailable`].
    pub fn wait_synced(&mut self, timeout: Duration) -> Result<(), LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status()? {
                return Err(self.exited_error(status));
            }
            if self.last_sync_timestamp().is_some_and(|t| t > 0.0) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.error(format!("no successful sync within {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The agent's `/metrics` text, `None` while it does not answer.
    pub fn metrics(&self) -> Option<String> {
        let addr: SocketAddr = METRICS_ADDR.parse().ok()?;
        enter_named(&self.node, || http_get(addr, "/metrics"))
            .ok()
            .flatten()
    }

    /// `kubeproxy_sync_proxy_rules_last_timestamp_seconds`, if the agent answers.
    pub fn last_sync_timestamp(&self) -> Option<f64> {
        metric_value(
            &self.metrics()?,
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
        )
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the agent with SIGTERM, killing it if it has not exited after 10 s.
    pub fn stop(&mut self) -> Result<ExitStatus, LabError> {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = self.exit_status()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = self.kill()?;
        Err(self.error(format!(
            "ignored SIGTERM for {STOP_GRACE:?}; killed ({status})"
        )))
    }

    /// Kills the agent with SIGKILL (a crash) and reaps it.
    pub fn kill(&mut self) -> Result<ExitStatus, LabError> {
        self.signal(libc::SIGKILL);
        self.child
            .wait()
            .map_err(|e| LabError::io("waiting for the agent", e))
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        // An unreadable log reads as empty; it is only ever shown to a person.
        if let Ok(mut file) = File::open(&self.log_path) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn signal(&mut self, signal: i32) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            if self.is_running() {
                // SAFETY: kill with the pid of our own unreaped child cannot hit another
                // process.
                unsafe {
                    libc::kill(pid, signal);
                }
            }
        }
    }

    fn exit_status(&mut self) -> Result<Option<ExitStatus>, LabError> {
        self.child
            .try_wait()
            .map_err(|e| LabError::io("checking on the agent", e))
    }

    fn exited_error(&self, status: ExitStatus) -> LabError {
        let log = self.log();
        if log.contains(MODE_UNAVAILABLE) {
            return LabError::ModeUnavailable(self.mode.name().to_string());
        }
        self.error(format!("exited early ({status})"))
    }

    fn error(&self, message: String) -> LabError {
        LabError::Agent {
            message,
            log: self.log_tail(40),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.is_running() {
            // Reaping a killed child cannot fail in a way worth reporting here.
            let _ = self.kill();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- kproxy agent log ({}, last lines) ---\n{}",
                self.mode,
                self.log_tail(60)
            );
        }
    }
}

/// A plain HTTP/1.0 GET; the body when the status is 200.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?;
    (status == "200").then(|| body.to_string())
}

/// The value of an unlabelled metric in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_unlabelled_metric() {
        let text = "# HELP x\nx_total 3\nx 1.5\nx{a=\"b\"} 2\n";
        assert_eq!(metric_value(text, "x"), Some(1.5));
        assert_eq!(metric_value(text, "y"), None);
    }

    #[test]
    fn lab_flags_come_first_and_extras_last() {
        let options = AgentOptions {
            mode: ProxyMode::Nftables,
            source: ClusterSource::File(PathBuf::from("/c.yaml")),
            extra_args: vec!["--v=4".into()],
        };
        let args = options.args().join(" ");
        assert!(
            args.starts_with("--hostname-override node-0 --cluster-cidr"),
            "{args}"
        );
        assert!(
            args.ends_with("--proxy-mode nftables --cluster-file /c.yaml --v=4"),
            "{args}"
        );
    }
}
