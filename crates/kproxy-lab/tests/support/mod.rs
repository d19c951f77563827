//! Shared end-to-end test plumbing: run a check in a fresh lab with kproxy synced, once per
//! proxy mode; connect and collect where connections landed; wait for a condition.

#![allow(dead_code)]

pub mod cluster;

use kproxy_lab::require::{check_machine, skip_or_fail};
use kproxy_lab::{
    tcp_probe, udp_probe, Agent, AgentBinary, AgentOptions, ClusterSource, Lab, LabError, LabSpec,
    Landing, Netns, Outcome, Probe, ProxyMode,
};
use kproxy_model::IpFamily;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How long the agent may take to program its first rules.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a change may take to reach the kernel.
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(15);

/// A lab with kproxy synced in one mode. The agent drops (and is killed) before the lab.
pub struct Running {
    pub agent: Agent,
    pub mode: ProxyMode,
    pub binary: AgentBinary,
    pub options: AgentOptions,
    pub lab: Lab,
}

impl Running {
    /// Starts another agent on the same node with the same options (after a stop).
    pub fn restart_agent(&mut self) {
        self.agent = start_synced(&self.lab, &self.binary, &self.options);
    }

    /// Rewrites the cluster file at once (write beside, then rename).
    pub fn rewrite_cluster(&self, text: &str) {
        let ClusterSource::File(path) = &self.options.source else {
            panic!("the agent does not read a cluster file");
        };
        let staged = path.with_extension("new");
        std::fs::write(&staged, text).expect("write cluster file");
        std::fs::rename(&staged, path).expect("replace cluster file");
    }
}

/// Starts an agent on `lab` and waits for its first sync.
pub fn start_synced(lab: &Lab, binary: &AgentBinary, options: &AgentOptions) -> Agent {
    let mut agent = lab.start_agent(binary, options).expect("agent starts");
    agent
        .wait_synced(SYNC_TIMEOUT)
        .unwrap_or_else(|e| panic!("[{}] agent: {e}", options.mode));
    agent
}

/// The lab and a located binary, or `None` after a skip notice (a failure under CI).
pub fn lab_prerequisites(test: &str) -> Option<AgentBinary> {
    if let Err(e) = check_machine() {
        skip_or_fail(test, &e);
        return None;
    }
    match AgentBinary::locate() {
        Ok(binary) => Some(binary),
        Err(e @ LabError::NoAgent(_)) => {
            // Not a machine problem: the binary's agent mode has not landed yet.
            eprintln!("!!! SKIPPING {test}: {e}");
            None
        }
        Err(e) => {
            skip_or_fail(test, &e);
            None
        }
    }
}

/// Runs `check` once per selected proxy mode, each in a fresh lab whose agent has synced
/// `cluster` from a cluster file. A mode the binary does not have yet is skipped with a
/// notice.
pub fn for_each_mode(test: &str, cluster: &str, mut check: impl FnMut(&mut Running)) {
    for_each_mode_with(
        test,
        |lab| {
            let path = lab
                .write_file("cluster.yaml", cluster)
                .expect("cluster file");
            (ClusterSource::File(path), ())
        },
        |running, ()| check(running),
    );
}

/// [`for_each_mode`] with the source made per lab by `source`, which also returns what the
/// check needs beside it (a fake API server); that outlives the agent.
pub fn for_each_mode_with<T>(
    test: &str,
    mut source: impl FnMut(&Lab) -> (ClusterSource, T),
    mut check: impl FnMut(&mut Running, &T),
) {
    let Some(binary) = lab_prerequisites(test) else {
        return;
    };
    let mut ran = Vec::new();
    for mode in ProxyMode::selected() {
        let lab = Lab::build(LabSpec::default()).expect("lab builds");
        let (source, companion) = source(&lab);
        let options = AgentOptions {
            mode,
            source,
            extra_args: Vec::new(),
        };
        let mut agent = lab.start_agent(&binary, &options).expect("agent starts");
        match agent.wait_synced(SYNC_TIMEOUT) {
            Ok(()) => {}
            Err(LabError::ModeUnavailable(name)) => {
                eprintln!("!!! {test}: this kproxy has no {name} mode yet; that mode is skipped");
                continue;
            }
            Err(e) => panic!("{test} [{mode}]: {e}"),
        }
        let started = Instant::now();
        let mut running = Running {
            agent,
            mode,
            binary: binary.clone(),
            options,
            lab,
        };
        check(&mut running, &companion);
        eprintln!("{test} [{mode}]: passed in {:?}", started.elapsed());
        ran.push(mode);
    }
    assert!(!ran.is_empty(), "{test}: no proxy mode could run");
}

/// A service's cluster IP in the test cluster (10.96.0.N, fd00:10:96::N).
pub fn cluster_ip(family: IpFamily, suffix: u8) -> IpAddr {
    let text = match family {
        IpFamily::V4 => format!("10.96.0.{suffix}"),
        IpFamily::V6 => format!("fd00:10:96::{suffix}"),
    };
    text.parse().expect("valid cluster IP")
}

/// An address from text the test wrote.
pub fn ip(text: &str) -> IpAddr {
    text.parse().expect("valid IP")
}

/// One TCP connection.
pub fn tcp(from: &Netns, target: SocketAddr) -> Outcome {
    tcp_probe(from, Probe::to(target)).expect("probe runs")
}

/// One UDP exchange on a fresh socket.
pub fn udp(from: &Netns, target: SocketAddr) -> Outcome {
    udp_probe(from, Probe::to(target)).expect("probe runs")
}

/// `count` TCP connections that must all land; where they did.
pub fn landings(mode: ProxyMode, from: &Netns, target: SocketAddr, count: usize) -> Vec<Landing> {
    (0..count)
        .map(|i| match tcp(from, target) {
            Outcome::Landed(landing) => landing,
            other => panic!(
                "[{mode}] connection {i} from {} to {target}: {other}",
                from.name()
            ),
        })
        .collect()
}

/// The distinct pods among `landings`, sorted.
pub fn pods_hit(landings: &[Landing]) -> Vec<String> {
    let mut pods: Vec<String> = landings.iter().map(|l| l.pod.clone()).collect();
    pods.sort();
    pods.dedup();
    pods
}

/// Polls `condition` every 100 ms until it holds; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
