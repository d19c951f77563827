//! `kproxy demo`: a node, an outside client and three pods in network namespaces, kproxy
//! running on the node against the bundled cluster (`demo/cluster.yaml`), connections to a
//! ClusterIP and a NodePort with where each one landed, and a `kproxy trace` of one of
//! them through the node's live ruleset. Printed as it goes; everything is removed at the
//! end.

use crate::agent::{AgentOptions, ClusterSource};
use crate::binary::AgentBinary;
use crate::client::{tcp_probe, udp_probe, Outcome, Probe};
use crate::error::LabError;
use crate::mode::ProxyMode;
use crate::netns::Netns;
use crate::plan;
use crate::require::check_machine;
use crate::topology::{Lab, LabSpec};
use kproxy_model::IpFamily;
use kproxy_trace::{Packet, Protocol, Ruleset, Tracer};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// The demo's cluster: a node, a dual-stack NodePort service `web` and a UDP service `dns`
/// over three pods.
pub const DEMO_CLUSTER: &str = include_str!("../demo/cluster.yaml");
/// The `web` service's cluster IPs and node port, and the `dns` service's cluster IP, as in
/// [`DEMO_CLUSTER`].
const WEB_V4: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const WEB_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x10);
const WEB_NODE_PORT: u16 = 30080;
const DNS_V4: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 53);
/// How many connections the demo makes to each address.
const CONNECTIONS: usize = 6;

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Building the lab or running the agent failed.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// The node's ruleset could not be read for the trace.
    #[error("reading the node's ruleset for the trace: {0}")]
    Trace(String),
    /// Printing failed.
    #[error("writing the demo's output: {0}")]
    Output(#[from] std::io::Error),
}

/// One connection the demo made.
#[derive(Debug, Clone)]
pub struct DemoConnection {
    /// Where from (`outside`, `client pod`).
    pub from: &'static str,
    /// The protocol (`tcp`, `udp`).
    pub protocol: &'static str,
    /// The address connected to.
    pub target: SocketAddr,
    /// Where it landed.
    pub outcome: Outcome,
}

/// What the demo did, once it is over.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// Every connection, in order.
    pub connections: Vec<DemoConnection>,
    /// The `kproxy trace` tree of the first ClusterIP connection.
    pub trace: String,
    /// The agent's time from start to its first successful sync.
    pub agent_synced_after: Duration,
}

/// Runs the demo, printing to `out` as it goes.
pub fn run_demo(out: &mut dyn Write) -> Result<DemoReport, DemoError> {
    check_machine()?;
    let binary = AgentBinary::locate()?;
    writeln!(
        out,
        "== Building a lab of network namespaces: a node, an outside client, 3 pods"
    )?;
    let lab = Lab::build(LabSpec { pods: 3 })?;
    describe_lab(out, &lab)?;
    let cluster = lab.write_file("cluster.yaml", DEMO_CLUSTER)?;
    writeln!(
        out,
        "== Starting kproxy on the node (iptables mode) with the bundled cluster:\n   {} --cluster-file {} --hostname-override {} --cluster-cidr {}",
        binary.path().display(),
        cluster.display(),
        plan::NODE_NAME,
        plan::CLUSTER_CIDRS
    )?;
    let started = Instant::now();
    let options = AgentOptions {
        mode: ProxyMode::IptablesNft,
        source: ClusterSource::File(cluster),
        extra_args: Vec::new(),
    };
    let mut agent = lab.start_agent(&binary, &options)?;
    agent.wait_synced(Duration::from_secs(20))?;
    let agent_synced_after = started.elapsed();
    writeln!(
        out,
        "   rules programmed after {} ms",
        agent_synced_after.as_millis()
    )?;
    let connections = send_traffic(out, &lab)?;
    let trace = trace_one(out, &lab)?;
    writeln!(out, "== Stopping kproxy and removing the lab")?;
    agent.stop()?;
    drop(lab);
    writeln!(out, "== Done")?;
    Ok(DemoReport {
        connections,
        trace,
        agent_synced_after,
    })
}

fn describe_lab(out: &mut dyn Write, lab: &Lab) -> Result<(), DemoError> {
    let v4 = IpFamily::V4;
    writeln!(
        out,
        "   node     {}  eth0 {} / {}, bridge cbr0 {}",
        lab.node.name(),
        plan::node_ip(v4),
        plan::node_ip(IpFamily::V6),
        plan::bridge_ip(v4)
    )?;
    writeln!(
        out,
        "   outside  {}  {}",
        lab.outside.name(),
        plan::outside_ip(v4, 0)
    )?;
    for index in 0..3 {
        writeln!(
            out,
            "   {}    {}  {} (TCP and UDP servers on :{})",
            plan::pod_name(index),
            lab.pods[usize::from(index)].name(),
            plan::pod_ip(v4, index),
            plan::POD_PORT
        )?;
    }
    Ok(())
}

fn send_traffic(out: &mut dyn Write, lab: &Lab) -> Result<Vec<DemoConnection>, DemoError> {
    let web_v4 = SocketAddr::new(WEB_V4.into(), 80);
    let node_port = SocketAddr::new(plan::node_ip(IpFamily::V4), WEB_NODE_PORT);
    let plan_rows: [(&'static str, &Netns, &'static str, SocketAddr); 5] = [
        ("outside", &lab.outside, "tcp", web_v4),
        ("outside", &lab.outside, "tcp", node_port),
        (
            "outside",
            &lab.outside,
            "tcp",
            SocketAddr::new(WEB_V6.into(), 80),
        ),
        ("client pod", &lab.client_pod, "tcp", web_v4),
        (
            "client pod",
            &lab.client_pod,
            "udp",
            SocketAddr::new(DNS_V4.into(), 53),
        ),
    ];
    let mut connections = Vec::new();
    for (from, netns, protocol, target) in plan_rows {
        writeln!(
            out,
            "== {CONNECTIONS} {protocol} connections from the {from} to {target}"
        )?;
        for _ in 0..CONNECTIONS {
            let probe = Probe::to(target);
            let outcome = match protocol {
                "udp" => udp_probe(netns, probe)?,
                _ => tcp_probe(netns, probe)?,
            };
            writeln!(out, "   {outcome}")?;
            connections.push(DemoConnection {
                from,
                protocol,
                target,
                outcome,
            });
        }
    }
    Ok(connections)
}

fn trace_one(out: &mut dyn Write, lab: &Lab) -> Result<String, DemoError> {
    let src = plan::outside_ip(IpFamily::V4, 0);
    let dst = IpAddr::V4(WEB_V4);
    writeln!(
        out,
        "== kproxy trace --live --src {src} --dst {dst} --dport 80 (the node's iptables-save)"
    )?;
    let text = ProxyMode::IptablesNft.dump_rules(&lab.node, IpFamily::V4)?;
    let ruleset = Ruleset::parse(&text).map_err(|e| DemoError::Trace(e.to_string()))?;
    let local_ips = [
        plan::node_ip(IpFamily::V4),
        plan::bridge_ip(IpFamily::V4),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    ];
    let tracer = Tracer::new(&ruleset, &local_ips);
    let tree = tracer
        .trace(&Packet::new(src, dst, Protocol::Tcp, 80))
        .render_tree();
    writeln!(out, "{tree}")?;
    Ok(tree)
}
