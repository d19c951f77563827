//! kproxy stopped (SIGTERM) and crashed (SIGKILL), then started again, while clients keep
//! connecting: the kernel keeps the rules meanwhile, and the new agent takes over without
//! a window where a service has none. Not one connection may fail.

mod support;

use kproxy_lab::plan::FAMILIES;
use kproxy_lab::{tcp_probe, Agent, Netns, Outcome, Probe};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::cluster::{cluster_yaml, TestService};
use support::{cluster_ip, for_each_mode, start_synced, Running};

const WEB: u8 = 10;

fn cluster() -> String {
    cluster_yaml(&[TestService {
        name: "web",
        ip_suffix: WEB,
        protocol: "TCP",
        port: 80,
        node_port: Some(30080),
        spec: vec!["type: NodePort"],
        status: "",
        pods: vec![0, 1, 2],
    }])
}

/// What the clients saw while the agent was restarted.
#[derive(Default)]
struct TrafficRecord {
    landed: usize,
    failures: Vec<String>,
}

/// Connects to every target in turn from `from` until `stop` is set.
fn keep_connecting(from: &Netns, targets: &[SocketAddr], stop: &AtomicBool) -> TrafficRecord {
    let mut record = TrafficRecord::default();
    while !stop.load(Ordering::Relaxed) {
        for &target in targets {
            match tcp_probe(from, Probe::to(target)) {
                Ok(Outcome::Landed(_)) => record.landed += 1,
                Ok(other) => record.failures.push(format!("{target}: {other}")),
                Err(e) => record.failures.push(format!("{target}: {e}")),
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    record
}

/// What a disturbance may use: the lab, and what it takes to start another agent.
struct Node<'a> {
    lab: &'a kproxy_lab::Lab,
    binary: &'a kproxy_lab::AgentBinary,
    options: &'a kproxy_lab::AgentOptions,
}

/// Runs `disturb` on the agent while the outside client and the client pod connect to the
/// ClusterIP and the NodePort of both families; asserts that no connection failed.
fn under_traffic(run: &mut Running, disturb: impl FnOnce(&mut Agent, &Node)) {
    let mut targets = Vec::new();
    for family in FAMILIES {
        targets.push(SocketAddr::new(cluster_ip(family, WEB), 80));
        targets.push(SocketAddr::new(kproxy_lab::plan::node_ip(family), 30080));
    }
    let stop = AtomicBool::new(false);
    let Running {
        ref mut agent,
        ref lab,
        ref binary,
        ref options,
        mode,
    } = *run;
    let node = Node {
        lab,
        binary,
        options,
    };
    let (outside, client_pod) = (&lab.outside, &lab.client_pod);
    let records = std::thread::scope(|scope| {
        let clients = [
            scope.spawn(|| keep_connecting(outside, &targets, &stop)),
            scope.spawn(|| keep_connecting(client_pod, &targets[..1], &stop)),
        ];
        std::thread::sleep(Duration::from_millis(500));
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| disturb(agent, &node)));
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let records: Vec<TrafficRecord> = clients
            .map(|c| c.join().expect("client thread"))
            .into_iter()
            .collect();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
        records
    });
    let landed: usize = records.iter().map(|r| r.landed).sum();
    let failures: Vec<&String> = records.iter().flat_map(|r| &r.failures).collect();
    assert!(
        failures.is_empty(),
        "[{mode}] {} connections failed: {failures:?}",
        failures.len()
    );
    assert!(landed >= 50, "[{mode}] only {landed} connections were made");
    eprintln!("[{mode}] {landed} connections, none failed");
}

#[test]
fn a_stopped_and_restarted_agent_fails_no_connection() {
    for_each_mode(
        "a_stopped_and_restarted_agent_fails_no_connection",
        &cluster(),
        |run| {
            under_traffic(run, |agent, node| {
                agent.stop().expect("agent stops on SIGTERM");
                std::thread::sleep(Duration::from_millis(500));
                *agent = start_synced(node.lab, node.binary, node.options);
                std::thread::sleep(Duration::from_millis(500));
            });
        },
    );
}

#[test]
fn a_crashed_and_restarted_agent_fails_no_connection() {
    for_each_mode(
        "a_crashed_and_restarted_agent_fails_no_connection",
        &cluster(),
        |run| {
            under_traffic(run, |agent, node| {
                agent.kill().expect("agent killed");
                std::thread::sleep(Duration::from_millis(500));
                *agent = start_synced(node.lab, node.binary, node.options);
                std::thread::sleep(Duration::from_millis(500));
            });
        },
    );
}
