//! 10,000 Services x 10 endpoints through the agent: from the agent's start until the
//! kernel holds every virtual and real server, then one endpoint change from the cluster
//! file's rewrite to the kernel. The agent runs in its own network namespace (IPVS state
//! is per namespace, so the functional run's leftovers cannot interfere). Prints the
//! figures; asserts only that the kernel ends up right.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::agent::{metric, Agent};
use crate::checks::{ensure, eventually, Checks, Failure};
use crate::cluster::{cluster_yaml, write_atomically, Service, POD_PORT};
use crate::kernel::Node;
use crate::net::sh;

const NETNS: &str = "kscale";
/// The number of Services the figures are for.
pub const SERVICES: u32 = 10_000;
const ENDPOINTS: u32 = 10;

fn service(i: u32, changed: bool) -> Service {
    let [_, _, hi, lo] = i.to_be_bytes();
    let endpoints = (0..ENDPOINTS)
        .map(|e| {
            let e = if changed && e == 0 { ENDPOINTS } else { e };
            Ipv4Addr::new(10, 200 + e as u8, hi, lo)
        })
        .collect::<Vec<_>>();
    // On other nodes, as in a real cluster: 100,000 local endpoints would overflow
    // KUBE-LOOP-BACK (65,536 entries at most, as upstream's).
    Service {
        endpoints_elsewhere: true,
        ..Service::cluster_ip(&format!("s{i}"), Ipv4Addr::new(10, 100, hi, lo), &endpoints)
    }
}

/// The cluster of `services` Services; with `change_one`, the middle one has one endpoint
/// replaced.
fn cluster(services: u32, change_one: bool) -> String {
    let services: Vec<Service> = (0..services)
        .map(|i| service(i, change_one && i == services / 2))
        .collect();
    cluster_yaml("scale-node", Ipv4Addr::new(192, 168, 60, 1), &services)
}

/// Runs the measurement for `services` Services with the agent at `kproxy`, working in
/// `dir`.
pub fn run(kproxy: &Path, dir: &Path, services: u32, checks: &mut Checks) {
    let netns = sh(&format!(
        "ip netns add {NETNS}; ip -n {NETNS} link set lo up"
    ));
    if !checks.record("scale: network namespace", netns.map(drop)) {
        return;
    }
    let result = measure(kproxy, dir, services);
    checks.record(
        &format!("scale: {services} services x {ENDPOINTS} endpoints and one endpoint change reach the kernel"),
        result,
    );
    let _ = sh(&format!("ip netns del {NETNS}"));
    let log = std::fs::read_to_string(dir.join("scale-agent.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    println!(
        "---- scale agent log (end) ----\n{}\n----",
        lines[lines.len().saturating_sub(12)..].join("\n")
    );
}

fn measure(kproxy: &Path, dir: &Path, services: u32) -> Result<(), Failure> {
    let file = dir.join("scale.yaml");
    let start = Instant::now();
    let text = cluster(services, false);
    write_atomically(&file, &text)?;
    println!(
        "scale: cluster file of {services} Services + EndpointSlices ({:.1} MiB) written in {:.2?}",
        text.len() as f64 / (1 << 20) as f64,
        start.elapsed()
    );
    let node = Node::netns(NETNS);
    let args: Vec<String> = [
        "--proxy-mode",
        "ipvs",
        "--iptables-backend",
        "legacy",
        "--cluster-file",
        &file.to_string_lossy(),
        "--hostname-override",
        "scale-node",
        "--cluster-cidr",
        "10.200.0.0/13",
        "--v",
        "2",
    ]
    .map(String::from)
    .to_vec();
    let mut agent = Agent::start(
        kproxy,
        &node,
        Some(NETNS),
        &args,
        &dir.join("scale-agent.log"),
    )?;
    let first = agent.wait_synced(Duration::from_secs(300))?;
    let metrics = agent.metrics()?;
    let sync_secs = metric(&metrics, "kubeproxy_sync_proxy_rules_duration_seconds_sum");
    println!(
        "scale: agent start -> first sync done: {first:.2?} (the sync itself: {}; peak RSS {} MiB)",
        sync_secs.map_or("?".into(), |s| format!("{s:.2} s")),
        agent
            .peak_rss_kib()
            .map_or("?".into(), |k| (k / 1024).to_string())
    );
    let servers = node.ipvs()?;
    let reals: usize = servers.iter().map(|s| s.real_servers.len()).sum();
    ensure(
        servers.len() == services as usize && reals == (services * ENDPOINTS) as usize,
        || {
            format!(
                "the kernel holds {} virtual and {reals} real servers",
                servers.len()
            )
        },
    )?;
    endpoint_change(&mut agent, &node, &file, services)?;
    let status = agent.stop(Duration::from_secs(30))?;
    ensure(status.success(), || format!("agent exit status {status}"))?;
    let start = Instant::now();
    node.run(
        &kproxy.to_string_lossy(),
        &[
            "--cleanup",
            "--proxy-mode",
            "ipvs",
            "--iptables-backend",
            "legacy",
        ],
    )?;
    println!("scale: kproxy --cleanup: {:.2?}", start.elapsed());
    let left = node.ipvs()?;
    ensure(left.is_empty(), || {
        format!("{} virtual servers left after --cleanup", left.len())
    })
}

/// Rewrites the file with one endpoint of one Service replaced; times the file's rename
/// to the kernel having the new real server (the agent polls the file every second).
fn endpoint_change(
    agent: &mut Agent,
    node: &Node,
    file: &Path,
    services: u32,
) -> Result<(), Failure> {
    let before = agent.metrics()?;
    let count = |text: &str| metric(text, "kubeproxy_sync_proxy_rules_duration_seconds_count");
    let sum = |text: &str| metric(text, "kubeproxy_sync_proxy_rules_duration_seconds_sum");
    let text = cluster(services, true);
    let changed = service(services / 2, true);
    let vs = SocketAddr::new(IpAddr::V4(changed.cluster_ip), 80);
    let new = SocketAddr::new(IpAddr::V4(changed.endpoints[0]), POD_PORT);
    write_atomically(file, &text)?;
    let ((), took) = eventually(Duration::from_secs(60), Duration::from_millis(10), || {
        let vs = node
            .tcp_virtual_server(vs)?
            .ok_or("the changed Service's virtual server is gone")?;
        ensure(vs.real_server(new).is_some(), || "not yet".into())
    })?;
    let ((), _) = eventually(Duration::from_secs(60), Duration::from_millis(50), || {
        let after = agent.metrics()?;
        ensure(count(&after) > count(&before), || {
            "no sync counted yet".into()
        })
    })?;
    let after = agent.metrics()?;
    let syncs = count(&after).unwrap_or(0.0) - count(&before).unwrap_or(0.0);
    let secs = sum(&after).unwrap_or(0.0) - sum(&before).unwrap_or(0.0);
    println!(
        "scale: one endpoint change, file rename -> kernel: {took:.2?} (includes the 1 s file poll); \
         {syncs} sync(s) took {secs:.3} s in total"
    );
    Ok(())
}
