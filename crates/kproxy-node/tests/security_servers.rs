//! The agent's HTTP servers as a neighbour sees them, with the default bind addresses
//! (no `--metrics-bind-address`, no `--healthz-bind-address`): metrics only on the node's
//! loopback, `/healthz` and `/livez` on every address but only for GET on those paths, and
//! a service's health check node port only for GET. Prints (`MEASURED`) each answer.

mod fault_support;

use fault_support::{
    base_args, http_status, prerequisites, report, without_flag, AgentProcess, FULL_SYNCS,
};
use kproxy_lab::{Lab, LabSpec};
use std::net::SocketAddr;
use std::time::Duration;

const TEST: &str = "servers_as_a_neighbour_sees_them";
const HC_PORT: u16 = 32000;

const CLUSTER: &str = r#"apiVersion: v1
kind: Node
metadata: {name: node-0}
status: {addresses: [{type: InternalIP, address: 192.168.50.10}]}
---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: e2e}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.30
  externalTrafficPolicy: Local
  healthCheckNodePort: 32000
  ports: [{name: p, port: 80, protocol: TCP, targetPort: 8080, nodePort: 30080}]
status: {loadBalancer: {ingress: [{ip: 203.0.113.7}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: lb-v4, namespace: e2e, labels: {kubernetes.io/service-name: lb}}
addressType: IPv4
ports: [{name: p, port: 8080, protocol: TCP}]
endpoints:
- {addresses: ["10.244.0.2"], conditions: {ready: true}, nodeName: node-0}
"#;

#[test]
fn metrics_stay_on_loopback_and_health_servers_answer_only_get() {
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    let lab = Lab::build(LabSpec { pods: 1 }).expect("lab");
    let file = lab.write_file("cluster.yaml", CLUSTER).expect("cluster");
    let args = base_args(
        &["--proxy-mode", "iptables", "--iptables-backend", "nft"],
        "30s",
    );
    let mut args = without_flag(
        &without_flag(&args, "--metrics-bind-address"),
        "--healthz-bind-address",
    );
    args.extend(["--cluster-file".into(), file.display().to_string()]);
    let mut agent = AgentProcess::start(
        &binary,
        &lab.node,
        &[],
        &args,
        &[],
        &lab.work_dir().join("agent.log"),
    );
    agent.wait_count(FULL_SYNCS, 1, Duration::from_secs(30));

    let node_ip = |port: u16| SocketAddr::from(([192, 168, 50, 10], port));
    let loopback: SocketAddr = ([127, 0, 0, 1], 10249).into();
    let mut seen = Vec::new();
    let mut expect = |netns: &kproxy_lab::Netns,
                      addr: SocketAddr,
                      method: &str,
                      path: &str,
                      want: Option<u16>| {
        let got = http_status(netns, addr, method, path).ok();
        // The health check server is started by the first sync; give it a moment.
        let got = if got.is_none() && want.is_some() {
            std::thread::sleep(Duration::from_millis(500));
            http_status(netns, addr, method, path).ok()
        } else {
            got
        };
        let shown = got.map_or("no connection".to_string(), |s| s.to_string());
        seen.push(format!(
            "{} {method} {addr}{path}: {shown}",
            netns.name().rsplit('-').next().unwrap_or("")
        ));
        assert_eq!(got, want, "{method} {addr}{path} from {}", netns.name());
    };
    expect(&lab.node, loopback, "GET", "/metrics", Some(200));
    expect(&lab.node, loopback, "POST", "/metrics", Some(405));
    expect(&lab.outside, node_ip(10249), "GET", "/metrics", None);
    expect(&lab.outside, node_ip(10256), "GET", "/healthz", Some(200));
    expect(&lab.outside, node_ip(10256), "GET", "/livez", Some(200));
    expect(&lab.outside, node_ip(10256), "POST", "/healthz", Some(405));
    expect(&lab.outside, node_ip(10256), "DELETE", "/livez", Some(405));
    expect(&lab.outside, node_ip(10256), "GET", "/metrics", Some(404));
    expect(&lab.outside, node_ip(10256), "GET", "/", Some(404));
    expect(&lab.outside, node_ip(HC_PORT), "GET", "/", Some(200));
    expect(&lab.outside, node_ip(HC_PORT), "POST", "/", Some(405));
    expect(&lab.outside, node_ip(HC_PORT), "PUT", "/healthz", Some(405));
    report(TEST, seen.join("; "));
}
