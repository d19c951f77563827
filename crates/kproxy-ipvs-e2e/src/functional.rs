//! The agent in ipvs mode on a small cluster: pods `pod-1` and `pod-2` and a `client` in
//! network namespaces routed through the guest's root namespace (the node), which runs
//! `kproxy --proxy-mode ipvs` over a cluster file. Every behaviour is checked with real
//! TCP connections and read back with `ipvsadm`, `ipset` and `ip`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::agent::Agent;
use crate::checks::{ensure, eventually, Checks, Failure};
use crate::cluster::{cluster_yaml, write_atomically, Service, POD_PORT};
use crate::kernel::Node;
use crate::net::{connect_from, namespace, reset, serve, sh, spread};

/// The Node object's name.
pub const NODE_NAME: &str = "node-0";
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
const CLIENT: &str = "client";
const POD_1: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const POD_2: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 2);
const WEB: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const NODEPORT_SVC: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);
const NODE_PORT: u16 = 30080;
const STICKY: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 12);
/// How long the agent may take to bring a cluster file change to the kernel.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

fn vip(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(ip), port)
}

fn pod(ip: Ipv4Addr) -> SocketAddr {
    vip(ip, POD_PORT)
}

fn pod_name(ip: Ipv4Addr) -> &'static str {
    if ip == POD_1 {
        "pod-1"
    } else {
        "pod-2"
    }
}

fn services(web: &[Ipv4Addr], with_node_port: bool) -> Vec<Service> {
    let both = [POD_1, POD_2];
    let mut list = vec![Service::cluster_ip("web", WEB, web)];
    if with_node_port {
        list.push(Service {
            node_port: Some(NODE_PORT),
            ..Service::cluster_ip("nodeport", NODEPORT_SVC, &both)
        });
    }
    list.push(Service {
        client_ip_affinity: true,
        ..Service::cluster_ip("sticky", STICKY, &both)
    });
    list
}

/// The network: pods behind `kpod1`/`kpod2`, the client behind `kclient` with the node's
/// address `192.168.50.1` on the node's side; forwarding on.
fn set_up_network() -> Result<(), Failure> {
    sh("sysctl -qw net.ipv4.ip_forward=1")?;
    namespace("pod-1", "kpod1", "10.244.1")?;
    namespace("pod-2", "kpod2", "10.244.2")?;
    namespace(CLIENT, "kclient", "192.168.50")?;
    serve("pod-1")?;
    serve("pod-2")
}

/// Runs every check with the agent at `kproxy`, working in `dir`.
pub fn run(kproxy: &Path, dir: &Path, checks: &mut Checks) {
    if !checks.record(
        "network namespaces for two pods and a client",
        set_up_network(),
    ) {
        return;
    }
    let file = dir.join("cluster.yaml");
    let written = write_atomically(
        &file,
        &cluster_yaml(NODE_NAME, NODE_IP, &services(&[POD_1, POD_2], true)),
    );
    if !checks.record("cluster file written", written) {
        return;
    }
    let node = Node::root();
    let args: Vec<String> = [
        "--proxy-mode",
        "ipvs",
        "--iptables-backend",
        "legacy",
        "--cluster-file",
        &file.to_string_lossy(),
        "--hostname-override",
        NODE_NAME,
        "--cluster-cidr",
        "10.244.0.0/16",
        "--ipvs-sync-period",
        "5s",
        "--v",
        "2",
    ]
    .map(String::from)
    .to_vec();
    let mut agent = match Agent::start(kproxy, &node, None, &args, &dir.join("agent.log")) {
        Ok(agent) => agent,
        Err(e) => {
            checks.record("agent starts", Err(e));
            return;
        }
    };
    let synced = agent.wait_synced(Duration::from_secs(60)).map(|took| {
        println!("     first sync reported after {took:.2?}");
    });
    if !checks.record("agent starts in ipvs mode and syncs", synced) {
        return;
    }
    checks.record("kernel state after the first sync", first_sync_state(&node));
    checks.record("ClusterIP balances over both pods", balanced(vip(WEB, 80)));
    checks.record(
        "NodePort on the node's address balances over both pods",
        balanced(vip(NODE_IP, NODE_PORT)),
    );
    checks.record("ClientIP affinity keeps the client on one pod", sticky());
    checks.record(
        "an endpoint removed under traffic drains, then is deleted",
        drain(&node, &file),
    );
    checks.record(
        "a removed Service leaves no virtual server, address or ipset entry",
        remove_service(&node, &file),
    );
    checks.record("agent still running", agent.running());
    let stopped = agent
        .stop(Duration::from_secs(10))
        .and_then(|status| ensure(status.success(), || format!("exit status {status}")));
    checks.record("agent stops on SIGTERM", stopped);
    checks.record(
        "kproxy --cleanup --proxy-mode ipvs empties IPVS",
        cleanup(kproxy, &node),
    );
    println!("---- agent log (end) ----\n{}\n----", agent.log_tail(15));
}

fn first_sync_state(node: &Node) -> Result<(), Failure> {
    let servers = node.ipvs()?;
    let find = |addr: SocketAddr| {
        servers
            .iter()
            .find(|s| s.addr == addr && s.protocol == "TCP")
            .ok_or_else(|| format!("no virtual server {addr}: {servers:?}"))
    };
    for addr in [vip(WEB, 80), vip(NODEPORT_SVC, 80), vip(NODE_IP, NODE_PORT)] {
        let vs = find(addr)?;
        let reals: Vec<SocketAddr> = vs.real_servers.iter().map(|r| r.addr).collect();
        ensure(
            reals.len() == 2 && reals.contains(&pod(POD_1)) && reals.contains(&pod(POD_2)),
            || format!("{addr} has real servers {reals:?}"),
        )?;
        ensure(vs.scheduler == "rr", || {
            format!("{addr} scheduler {}", vs.scheduler)
        })?;
    }
    let sticky = find(vip(STICKY, 80))?;
    ensure(sticky.persistent == Some(10800), || {
        format!("ClientIP affinity without 10800 s persistence: {sticky:?}")
    })?;
    let bound = node.kube_ipvs0_addresses()?.ok_or("no kube-ipvs0")?;
    for ip in [WEB, NODEPORT_SVC, STICKY] {
        ensure(bound.contains(&IpAddr::V4(ip)), || {
            format!("{ip} not on kube-ipvs0: {bound:?}")
        })?;
    }
    let cluster_ips = node.ipset_entries("KUBE-CLUSTER-IP")?;
    ensure(cluster_ips.len() == 3, || {
        format!("KUBE-CLUSTER-IP: {cluster_ips:?}")
    })?;
    let node_ports = node.ipset_entries("KUBE-NODE-PORT-TCP")?;
    ensure(node_ports == ["30080"], || {
        format!("KUBE-NODE-PORT-TCP: {node_ports:?}")
    })
}

fn balanced(to: SocketAddr) -> Result<(), Failure> {
    let seen = spread(CLIENT, to, 10)?;
    let want = BTreeMap::from([("pod-1".to_string(), 5), ("pod-2".to_string(), 5)]);
    ensure(seen == want, || {
        format!("10 connections to {to} landed {seen:?}")
    })
}

fn sticky() -> Result<(), Failure> {
    let seen = spread(CLIENT, vip(STICKY, 80), 8)?;
    ensure(seen.len() == 1, || format!("8 connections landed {seen:?}"))
}

/// Holds a connection to one pod of `web`, removes that pod from `web` in the file: the
/// real server stays with weight 0 while the connection is open, new connections go to
/// the other pod, and once the connection is reset the real server is deleted.
fn drain(node: &Node, file: &Path) -> Result<(), Failure> {
    let web = vip(WEB, 80);
    let (held_on, held) = connect_from(CLIENT, web)?;
    let (gone, kept) = if held_on == "pod-1" {
        (POD_1, POD_2)
    } else {
        (POD_2, POD_1)
    };
    write_atomically(
        file,
        &cluster_yaml(NODE_NAME, NODE_IP, &services(&[kept], true)),
    )?;
    let (vs, took) = eventually(CHANGE_TIMEOUT, Duration::from_millis(100), || {
        let vs = node
            .tcp_virtual_server(web)?
            .ok_or("web's virtual server is gone")?;
        match vs.real_server(pod(gone)) {
            Some(r) if r.weight == 0 => Ok(vs),
            other => Err(format!("{gone} is {other:?}")),
        }
    })?;
    println!("     removed endpoint at weight 0 {took:.2?} after the file changed");
    let old = vs
        .real_server(pod(gone))
        .ok_or("drained real server vanished")?;
    ensure(old.active >= 1, || {
        format!("the held connection is not counted: {old:?}")
    })?;
    let seen = spread(CLIENT, web, 4)?;
    ensure(seen.keys().eq([pod_name(kept)]), || {
        format!(
            "new connections went to {seen:?} while {} drains",
            pod_name(gone)
        )
    })?;
    reset(held);
    let ((), took) = eventually(Duration::from_secs(45), Duration::from_millis(250), || {
        let vs = node
            .tcp_virtual_server(web)?
            .ok_or("web's virtual server is gone")?;
        ensure(vs.real_server(pod(gone)).is_none(), || {
            format!("still draining: {vs:?}")
        })
    })?;
    println!("     drained real server deleted {took:.2?} after its connection was reset");
    let (name, conn) = connect_from(CLIENT, web)?;
    reset(conn);
    ensure(name == pod_name(kept), || {
        format!("a new connection landed on {name}")
    })
}

/// Removes the NodePort Service from the file: its virtual servers, kube-ipvs0 address
/// and ipset entries go; the other Services stay.
fn remove_service(node: &Node, file: &Path) -> Result<(), Failure> {
    let web_left: Vec<Ipv4Addr> = node
        .tcp_virtual_server(vip(WEB, 80))?
        .map(|vs| {
            vs.real_servers
                .iter()
                .filter_map(|r| match r.addr.ip() {
                    IpAddr::V4(ip) => Some(ip),
                    IpAddr::V6(_) => None,
                })
                .collect()
        })
        .unwrap_or_default();
    write_atomically(
        file,
        &cluster_yaml(NODE_NAME, NODE_IP, &services(&web_left, false)),
    )?;
    let ((), took) = eventually(CHANGE_TIMEOUT, Duration::from_millis(100), || {
        let servers = node.ipvs()?;
        let left: Vec<_> = servers
            .iter()
            .filter(|s| s.addr.ip() == IpAddr::V4(NODEPORT_SVC) || s.addr.port() == NODE_PORT)
            .collect();
        ensure(left.is_empty(), || {
            format!("virtual servers left: {left:?}")
        })
    })?;
    println!("     virtual servers gone {took:.2?} after the file changed");
    let bound = node.kube_ipvs0_addresses()?.ok_or("no kube-ipvs0")?;
    ensure(!bound.contains(&IpAddr::V4(NODEPORT_SVC)), || {
        format!("{NODEPORT_SVC} still on kube-ipvs0: {bound:?}")
    })?;
    ensure(bound.contains(&IpAddr::V4(WEB)), || {
        format!("web's address went too: {bound:?}")
    })?;
    let cluster_ips = node.ipset_entries("KUBE-CLUSTER-IP")?;
    ensure(
        !cluster_ips
            .iter()
            .any(|e| e.starts_with(&format!("{NODEPORT_SVC},"))),
        || format!("KUBE-CLUSTER-IP: {cluster_ips:?}"),
    )?;
    ensure(cluster_ips.len() == 2, || {
        format!("KUBE-CLUSTER-IP: {cluster_ips:?}")
    })?;
    let node_ports = node.ipset_entries("KUBE-NODE-PORT-TCP")?;
    ensure(node_ports.is_empty(), || {
        format!("KUBE-NODE-PORT-TCP: {node_ports:?}")
    })?;
    let refused =
        std::net::TcpStream::connect_timeout(&vip(NODEPORT_SVC, 80), Duration::from_secs(2));
    ensure(refused.is_err(), || {
        "the removed ClusterIP still answers".to_string()
    })?;
    ensure(node.tcp_virtual_server(vip(WEB, 80))?.is_some(), || {
        "web's virtual server went too".to_string()
    })
}

fn cleanup(kproxy: &Path, node: &Node) -> Result<(), Failure> {
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
    let servers = node.ipvs()?;
    ensure(servers.is_empty(), || {
        format!("virtual servers left: {servers:?}")
    })?;
    let link = node.kube_ipvs0_addresses()?;
    ensure(link.is_none(), || format!("kube-ipvs0 left with {link:?}"))?;
    let sets: Vec<String> = node
        .ipset_names()?
        .into_iter()
        .filter(|s| s.starts_with("KUBE-"))
        .collect();
    ensure(sets.is_empty(), || format!("ipsets left: {sets:?}"))?;
    let chains = node.kube_chains()?;
    ensure(chains.is_empty(), || {
        format!("iptables chains left: {chains:?}")
    })
}

/// A work directory under `/tmp` (the guest's tmpfs).
pub fn work_dir(name: &str) -> Result<PathBuf, Failure> {
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}
