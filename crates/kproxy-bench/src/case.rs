//! One benchmark case: a fresh lab, the baseline without any rules, the cluster of N
//! Services programmed by the agent in one mode, then the measured connections to the pod
//! directly and through the ClusterIP, interleaved.

use crate::cluster::{pod_ipv4, BenchCluster, BENCH_PORT};
use crate::connect::{self, Series};
use crate::echo::EchoServer;
use crate::error::BenchError;
use crate::machine::LoadAverage;
use crate::program::{wait_programmed, Expected, Programming};
use kproxy_lab::{AgentBinary, AgentOptions, ClusterSource, Lab, LabSpec, ProxyMode};
use serde::Serialize;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

/// Lab pods behind the measured Service.
pub const BACKENDS: u8 = 2;

/// What to run.
#[derive(Debug, Clone)]
pub struct CaseSpec {
    /// Services programmed, the measured one included.
    pub services: u32,
    /// The agent's mode.
    pub mode: ProxyMode,
    /// Timed connections per target.
    pub connections: usize,
    /// The cap on programming.
    pub sync_cap: Duration,
    /// More agent flags.
    pub agent_args: Vec<String>,
}

/// Figures measured with the cluster programmed.
#[derive(Debug, Clone, Serialize)]
pub struct Programmed {
    /// Straight to pod-0's IP (bridged, but still through the node's prerouting rules).
    pub pod_ip: Series,
    /// Through the measured ClusterIP.
    pub cluster_ip: Series,
    /// The load average just after.
    pub load: Option<LoadAverage>,
}

/// One case's report.
#[derive(Debug, Clone, Serialize)]
pub struct CaseReport {
    /// Services programmed.
    pub services: u32,
    /// The mode.
    pub mode: String,
    /// Straight to pod-0's IP before the agent ran (no rules at all).
    pub no_rules: Series,
    /// The load average just after the baseline.
    pub no_rules_load: Option<LoadAverage>,
    /// How programming went.
    pub programming: Programming,
    /// The figures, if programmed.
    pub measured: Option<Programmed>,
}

/// Runs one case in a lab of its own (removed when done).
pub fn run_case(binary: &AgentBinary, spec: &CaseSpec) -> Result<CaseReport, BenchError> {
    if spec.services == 0 || spec.connections == 0 {
        return Err(BenchError::Usage(
            "--services and --connections must be at least 1".into(),
        ));
    }
    let lab = Lab::build(LabSpec { pods: BACKENDS })?;
    let _servers = lab
        .pods
        .iter()
        .map(|pod| EchoServer::start(pod, BENCH_PORT))
        .collect::<Result<Vec<_>, _>>()?;
    let pod_target = pod_target()?;
    let [no_rules] = connect::measure(&lab.client_pod, [pod_target], spec.connections)?;
    let no_rules_load = LoadAverage::read();
    let cluster = BenchCluster {
        services: spec.services,
        backends: BACKENDS,
    };
    let file = lab.write_file("cluster.yaml", &cluster.manifest())?;
    let options = AgentOptions {
        mode: spec.mode,
        source: ClusterSource::File(file),
        extra_args: spec.agent_args.clone(),
    };
    let started = Instant::now();
    let mut agent = lab.start_agent(binary, &options)?;
    let expected = Expected {
        services: spec.services as usize,
        target: BenchCluster::measured_target(),
        cap: spec.sync_cap,
    };
    let programming = wait_programmed(&lab, &mut agent, started, &expected)?;
    let measured = match programming {
        Programming::Programmed { .. } => Some(measure_programmed(&lab, pod_target, spec)?),
        Programming::NotProgrammed { .. } => None,
    };
    // The lab's removal cleans up whatever a stop that went wrong left.
    let _ = agent.stop();
    Ok(CaseReport {
        services: spec.services,
        mode: spec.mode.name().to_string(),
        no_rules,
        no_rules_load,
        programming,
        measured,
    })
}

fn measure_programmed(
    lab: &Lab,
    pod_target: SocketAddr,
    spec: &CaseSpec,
) -> Result<Programmed, BenchError> {
    let targets = [pod_target, BenchCluster::measured_target()];
    let [pod_ip, cluster_ip] = connect::measure(&lab.client_pod, targets, spec.connections)?;
    Ok(Programmed {
        pod_ip,
        cluster_ip,
        load: LoadAverage::read(),
    })
}

fn pod_target() -> Result<SocketAddr, BenchError> {
    pod_ipv4(0)
        .map(|ip| SocketAddr::V4(SocketAddrV4::new(ip, BENCH_PORT)))
        .ok_or_else(|| BenchError::Usage("the lab's pod-0 has no IPv4 address".into()))
}
