//! Real TCP connections through a virtual server on kube-ipvs0 to two
//! backends in network namespaces, programmed with the crate's own pieces:
//! link, sysctls, planner and netlink handle. Then one backend is retired
//! gracefully while a connection to it is open.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kproxy_ipvs::link::{IpCommandLink, VipInterface, KUBE_IPVS0};
use kproxy_ipvs::sysctl::{apply_settings, ipvs_settings, KernelVersion, ProcSys, Sysctl};
use kproxy_ipvs::{
    plan, DesiredService, DrainPolicy, Draining, IpvsHandle, NetlinkIpvs, PlanOptions, Protocol,
    RealServer, ServiceKey, VirtualServer,
};

use crate::gate::in_guest;

const VIP: &str = "10.96.50.1";

fn sh(script: &str) {
    let status = Command::new("sh")
        .args(["-ec", script])
        .status()
        .expect("run sh");
    assert!(status.success(), "failed: {script}");
}

/// Backend `i`: namespace `kb{i}` at 10.250.{i}.2 behind veth `kveth{i}`.
fn backend_namespace(i: u8) {
    sh(&format!(
        "ip netns add kb{i}
         ip link add kveth{i} type veth peer name eth0 netns kb{i}
         ip addr add 10.250.{i}.1/24 dev kveth{i}; ip link set kveth{i} up
         ip -n kb{i} addr add 10.250.{i}.2/24 dev eth0
         ip -n kb{i} link set lo up; ip -n kb{i} link set eth0 up
         ip -n kb{i} route add default via 10.250.{i}.1"
    ));
}

/// A TCP server on port 8080 inside namespace `kb{i}`, on its own thread
/// (setns changes only the calling thread): it writes its name, then waits
/// for the client to close.
fn serve(i: u8) {
    let (ready, bound) = mpsc::channel();
    std::thread::spawn(move || {
        let ns = File::open(format!("/run/netns/kb{i}")).expect("open netns");
        // SAFETY: setns on a valid namespace fd; affects only this thread.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns kb{i}");
        let listener = TcpListener::bind("0.0.0.0:8080").expect("bind 8080");
        ready.send(()).expect("signal ready");
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let _ = writeln!(conn, "kb{i}");
                let _ = conn.read(&mut [0u8; 1]);
            });
        }
    });
    bound.recv().expect("backend bound");
}

fn connect() -> (String, TcpStream) {
    let addr = SocketAddr::new(VIP.parse().expect("vip"), 80);
    let conn =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the VIP");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut line = String::new();
    BufReader::new(conn.try_clone().expect("clone"))
        .read_line(&mut line)
        .expect("read");
    (line.trim().to_string(), conn)
}

fn backend(i: u8) -> RealServer {
    RealServer::new(IpAddr::from([10, 250, i, 2]), 8080)
}

fn keep_none(_: &ServiceKey) -> bool {
    false
}

/// Reads the table, plans towards `want`, applies; returns the drains left.
fn sync(
    k: &mut NetlinkIpvs,
    want: &[DesiredService],
    draining: &Draining,
    timeout: Duration,
) -> Draining {
    let current = k.state().expect("read IPVS");
    let options = PlanOptions {
        drain: DrainPolicy {
            now: Instant::now(),
            timeout,
        },
        keep_unlisted: &keep_none,
    };
    let p = plan(&current, want, draining, &options);
    let failures = k.apply(&p.ops).expect("apply");
    assert!(failures.is_empty(), "{failures:?}");
    p.draining
}

#[test]
#[ignore = "needs the IPVS guest kernel: tools/ipvs-vm/test"]
fn connections_are_balanced_and_a_removed_backend_drains() {
    if !in_guest("connections_are_balanced_and_a_removed_backend_drains") {
        return;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let kernel = KernelVersion::parse(&release).expect("kernel version");
    let mut sys = ProcSys::new();
    apply_settings(&mut sys, &ipvs_settings(kernel, true)).expect("sysctls");
    assert_eq!(sys.read("net/ipv4/vs/conntrack").expect("read"), "1");

    let mut link = IpCommandLink::new(KUBE_IPVS0);
    link.ensure().expect("create kube-ipvs0");
    link.ensure().expect("kube-ipvs0 again");
    let vip: IpAddr = VIP.parse().expect("vip");
    link.add_address(vip).expect("bind VIP");
    link.add_address(vip).expect("bind VIP again");
    link.add_address("fd00:96::1".parse().expect("v6"))
        .expect("bind v6 VIP");
    let bound = link.addresses().expect("addresses");
    assert!(bound.contains(&vip), "{bound:?}");

    for i in 1..=2 {
        backend_namespace(i);
        serve(i);
    }
    let mut k = NetlinkIpvs::connect().expect("netlink");
    k.flush().expect("flush");
    let key = ServiceKey {
        addr: vip,
        port: 80,
        protocol: Protocol::Tcp,
    };
    let both = [DesiredService {
        service: VirtualServer::new(key),
        real_servers: vec![backend(1), backend(2)],
    }];
    let timeout = Duration::from_secs(600);
    sync(&mut k, &both, &Draining::default(), timeout);

    let seen: Vec<String> = (0..10).map(|_| connect().0).collect();
    let on = |name: &str| seen.iter().filter(|s| *s == name).count();
    assert_eq!((on("kb1"), on("kb2")), (5, 5), "{seen:?}");

    let (held_on, held) = connect();
    let retired = if held_on == "kb1" { 1 } else { 2 };
    let kept = 3 - retired;
    let only_kept = [DesiredService {
        service: VirtualServer::new(key),
        real_servers: vec![backend(kept)],
    }];
    let draining = sync(&mut k, &only_kept, &Draining::default(), timeout);
    assert_eq!(draining.len(), 1);
    let dests = k.destinations(&key).expect("dests");
    let old = dests
        .iter()
        .find(|d| d.server.key == backend(retired).key)
        .expect("still there");
    assert_eq!(old.server.weight, 0);
    assert!(old.connections.active >= 1, "{old:?}");
    let seen: Vec<String> = (0..4).map(|_| connect().0).collect();
    assert!(
        seen.iter().all(|s| *s == format!("kb{kept}")),
        "weight 0 took new connections: {seen:?}"
    );

    let draining = sync(&mut k, &only_kept, &draining, timeout);
    assert_eq!(draining.len(), 1, "the held connection keeps it draining");
    drop(held);
    let draining = sync(&mut k, &only_kept, &draining, Duration::ZERO);
    assert!(draining.is_empty());
    let left: Vec<_> = k
        .destinations(&key)
        .expect("dests")
        .iter()
        .map(|d| d.server)
        .collect();
    assert_eq!(left, vec![backend(kept)]);
    assert_eq!(connect().0, format!("kb{kept}"));

    k.flush().expect("flush");
    link.remove_address(vip).expect("unbind");
    link.remove_address(vip).expect("unbind again");
    link.delete().expect("delete kube-ipvs0");
    link.delete().expect("delete kube-ipvs0 again");
    sh("ip netns del kb1; ip netns del kb2");
}
