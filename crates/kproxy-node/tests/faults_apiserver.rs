//! The API server goes away for 12 s (a shortened "minute", to keep CI fast) while clients
//! keep connecting through the node; meanwhile an endpoint and a service are added and the
//! history is compacted, so the agent's next watch gets 410 Gone and must list again. The
//! kernel keeps the old rules (no connection fails), and once the agent reconnects the new
//! state is programmed quickly. Measures and prints (`MEASURED`) the outage's traffic, how
//! long after the restart the agent came back (its retry backoff), and how long after
//! reconnecting the kernel converged.

mod fault_support;

use fault_support::{base_args, prerequisites, report, run_in, AgentProcess, FULL_SYNCS};
use kproxy_lab::{tcp_probe, Lab, LabApiServer, LabSpec, Outcome, Probe};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const TEST: &str = "api_server_outage";
/// How long the API server stays away.
const OUTAGE: Duration = Duration::from_secs(12);

fn node_and_web(extra_endpoint: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Node
metadata: {{name: node-0}}
status: {{addresses: [{{type: InternalIP, address: 192.168.50.10}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: e2e}}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  ports: [{{name: p, port: 80, protocol: TCP, targetPort: 8080, nodePort: 30080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-v4, namespace: e2e, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: p, port: 8080, protocol: TCP}}]
endpoints:
- {{addresses: ["10.244.0.2"], conditions: {{ready: true}}, nodeName: node-0}}
- {{addresses: ["10.244.0.3"], conditions: {{ready: true}}, nodeName: node-0}}
{extra_endpoint}"#
    )
}

/// What changes while the API server is away: a third endpoint, and a new service.
const LATE: &str = r#"
---
apiVersion: v1
kind: Service
metadata: {name: late, namespace: e2e}
spec:
  clusterIP: 10.96.0.11
  ports: [{name: p, port: 80, protocol: TCP, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: late-v4, namespace: e2e, labels: {kubernetes.io/service-name: late}}
addressType: IPv4
ports: [{name: p, port: 8080, protocol: TCP}]
endpoints:
- {addresses: ["10.244.0.4"], conditions: {ready: true}, nodeName: node-0}
"#;

#[test]
fn rules_stay_while_the_api_server_is_gone_and_converge_after_410() {
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    let lab = Lab::build(LabSpec { pods: 3 }).expect("lab");
    let api = LabApiServer::start(&lab.node).expect("API server");
    api.apply_manifest(&node_and_web("")).expect("cluster");
    let kubeconfig = lab.work_dir().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let mut args = base_args(
        &["--proxy-mode", "iptables", "--iptables-backend", "nft"],
        "30s",
    );
    args.extend(["--kubeconfig".into(), kubeconfig.display().to_string()]);
    let mut agent = AgentProcess::start(
        &binary,
        &lab.node,
        &[],
        &args,
        &[],
        &lab.work_dir().join("agent.log"),
    );
    agent.wait_count(FULL_SYNCS, 1, Duration::from_secs(30));
    let web: SocketAddr = "10.96.0.10:80".parse().expect("addr");
    let late: SocketAddr = "10.96.0.11:80".parse().expect("addr");
    assert!(tcp_probe(&lab.outside, Probe::to(web))
        .expect("probe")
        .landing()
        .is_some());
    let nat = || {
        let dump = run_in(&lab.node, "iptables-nft-save", &["-t", "nat"]);
        // Without the dump's timestamped comment lines.
        dump.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let converged =
        |rules: &str| rules.contains("10.244.0.4:8080") && rules.contains("10.96.0.11/32");
    let before = nat();

    let stop = AtomicBool::new(false);
    let (landed, failures, measured) = std::thread::scope(|scope| {
        let traffic = scope.spawn(|| {
            let (mut landed, mut failures) = (0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match tcp_probe(&lab.outside, Probe::to(web)) {
                    Ok(Outcome::Landed(_)) => landed += 1,
                    Ok(other) => failures.push(other.to_string()),
                    Err(e) => failures.push(e.to_string()),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (landed, failures)
        });
        let measured = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            outage(&api, &mut agent, &before, &nat, &converged)
        }));
        stop.store(true, Ordering::Relaxed);
        let (landed, failures) = traffic.join().expect("traffic thread");
        (landed, failures, measured)
    });
    let (reconnect, converge, relisted) =
        measured.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    assert!(
        failures.is_empty(),
        "connections failed during the outage: {failures:?}"
    );
    assert!(landed >= 50, "only {landed} connections were made");
    assert!(relisted, "the agent did not list again after 410 Gone");
    assert!(
        tcp_probe(&lab.outside, Probe::to(late))
            .expect("probe")
            .landing()
            .is_some(),
        "the service added during the outage is not reachable"
    );
    assert!(
        converge <= Duration::from_secs(1),
        "converged {converge:?} after reconnecting"
    );
    report(
        TEST,
        format!(
            "API server away {OUTAGE:?} (history compacted: 410 Gone on resume): {landed} \
             connections through the node, none failed, rules unchanged meanwhile; all \
             three watches back {reconnect:.2?} after the restart (each on its own backoff, \
             0.8 s doubling to 30 s); kernel converged {converge:.2?} after the last one \
             reconnected"
        ),
    );
}

/// Stops the server, changes the cluster and compacts, waits out the outage, restarts;
/// returns (restart → first request, first request → kernel converged, relisted).
fn outage(
    api: &LabApiServer,
    agent: &mut AgentProcess,
    before: &str,
    nat: &dyn Fn() -> String,
    converged: &dyn Fn(&str) -> bool,
) -> (Duration, Duration, bool) {
    std::thread::sleep(Duration::from_millis(500));
    api.stop().expect("stop");
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let changed = node_and_web(
        "- {addresses: [\"10.244.0.4\"], conditions: {ready: true}, nodeName: node-0}\n",
    ) + LATE;
    api.apply_manifest(&changed).expect("changes while away");
    api.call(|server| server.compact()).expect("compact");
    while down.elapsed() < OUTAGE {
        assert_eq!(nat(), before, "rules changed while the API server was away");
        std::thread::sleep(Duration::from_millis(500));
    }
    let seen = api
        .call(|server| server.requests().len())
        .expect("requests");
    api.restart().expect("restart");
    // Each kind (Services, EndpointSlices, the Node) retries on its own backoff; the
    // agent is back once all three have asked again.
    let reconnect = agent.wait_until("the agent to reconnect", Duration::from_secs(40), |_| {
        let kinds = api.call(move |server| {
            let mut kinds: Vec<String> = server.requests()[seen..]
                .iter()
                .filter_map(|r| r.resource.map(|k| format!("{k:?}")))
                .collect();
            kinds.sort();
            kinds.dedup();
            kinds.len()
        });
        kinds.unwrap_or(0) >= 3
    });
    let reconnected = Instant::now();
    agent.wait_until("the kernel to converge", Duration::from_secs(20), |_| {
        converged(&nat())
    });
    let converge = reconnected.elapsed();
    let relisted = api
        .call(move |server| server.requests()[seen..].iter().any(|r| !r.watch))
        .expect("requests");
    (reconnect, converge, relisted)
}
