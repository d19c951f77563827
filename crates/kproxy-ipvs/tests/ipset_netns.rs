//! `ipset restore` for real, inside a throwaway network namespace (ipsets are
//! per namespace). Needs root and the ipset and ip tools; `#[ignore]`d so a
//! plain `cargo test` does not need them. `tools/ipvs-vm/test` runs it.

use std::io::Write;
use std::net::IpAddr;
use std::process::Command;

use kproxy_ipvs::ipset::{
    render_destroy, render_sync, Cidr, Entry, Family, IpsetCommand, IpsetRunner, KubeSet,
};
use kproxy_ipvs::Protocol;

/// A network namespace deleted again when dropped.
struct Netns(String);

impl Netns {
    fn create() -> Option<Netns> {
        let name = format!("kproxy-ipset-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .ok()?
            .success();
        ok.then_some(Netns(name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A namespace to test in, or `None` (skip) where that is allowed.
fn netns_or_skip() -> Option<Netns> {
    let has_ipset = Command::new("ipset")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    let ns = if has_ipset { Netns::create() } else { None };
    if ns.is_none() {
        let message =
            "ipset_netns: needs root, ipset and ip netns (tools/ipvs-vm/setup installs them)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
        // Straight to stderr: the test harness captures eprintln! of passing tests.
        let _ = writeln!(std::io::stderr(), "SKIPPED {message}");
    }
    ns
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn saved_entries(runner: &mut IpsetCommand, set: &str) -> Vec<String> {
    let prefix = format!("add {set} ");
    let mut out: Vec<String> = runner
        .save()
        .expect("ipset save")
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .collect();
    out.sort();
    out
}

#[test]
#[ignore = "needs root and ipset: tools/ipvs-vm/test"]
fn sets_are_created_refilled_and_destroyed_in_a_namespace() {
    let Some(ns) = netns_or_skip() else { return };
    let mut runner = IpsetCommand::in_netns(&ns.0);

    let mut cluster = KubeSet::ClusterIp.new_set(Family::Inet);
    cluster
        .add(Entry::IpPort(ip("10.96.0.1"), Protocol::Tcp, 443), None)
        .expect("entry");
    cluster
        .add(
            Entry::IpPort(ip("10.96.0.10"), Protocol::Udp, 53),
            Some("kube-system/kube-dns:\"dns\""),
        )
        .expect("entry");
    let mut loopback = KubeSet::LoopBack.new_set(Family::Inet6);
    loopback
        .add(
            Entry::IpPortIp(ip("fd00::5"), Protocol::Sctp, 80, ip("fd00::5")),
            None,
        )
        .expect("entry");
    let mut cidrs = KubeSet::LoadBalancerSourceCidr.new_set(Family::Inet);
    let net = Cidr {
        addr: ip("192.0.2.0"),
        prefix_len: 24,
    };
    cidrs
        .add(
            Entry::IpPortNet(ip("203.0.113.1"), Protocol::Tcp, 80, net),
            None,
        )
        .expect("entry");
    let mut ports = KubeSet::NodePortTcp.new_set(Family::Inet);
    ports.add(Entry::Port(30080), None).expect("entry");
    let mut ips = KubeSet::IpvsIps.new_set(Family::Inet);
    ips.add(Entry::Ip(ip("10.96.0.1")), None).expect("entry");

    runner
        .restore(&render_sync(&[
            cluster.clone(),
            loopback,
            cidrs,
            ports,
            ips,
        ]))
        .expect("restore");
    assert_eq!(
        saved_entries(&mut runner, "KUBE-CLUSTER-IP"),
        [
            "10.96.0.1,tcp:443",
            "10.96.0.10,udp:53 comment \"kube-system/kube-dns:dns\""
        ]
    );
    assert_eq!(
        saved_entries(&mut runner, "KUBE-6-LOOP-BACK"),
        ["fd00::5,sctp:80,fd00::5"]
    );
    assert_eq!(
        saved_entries(&mut runner, "KUBE-LOAD-BALANCER-SOURCE-CIDR"),
        ["203.0.113.1,tcp:80,192.0.2.0/24"]
    );
    assert_eq!(saved_entries(&mut runner, "KUBE-NODE-PORT-TCP"), ["30080"]);
    let save = runner.save().expect("ipset save");
    assert!(
        save.contains("create KUBE-6-LOOP-BACK hash:ip,port,ip family inet6"),
        "{save}"
    );
    assert!(
        save.contains("create KUBE-NODE-PORT-TCP bitmap:port range 0-65535"),
        "{save}"
    );

    let mut next = KubeSet::ClusterIp.new_set(Family::Inet);
    next.add(Entry::IpPort(ip("10.96.0.2"), Protocol::Tcp, 80), None)
        .expect("entry");
    runner
        .restore(&render_sync(&[next]))
        .expect("second restore");
    assert_eq!(
        saved_entries(&mut runner, "KUBE-CLUSTER-IP"),
        ["10.96.0.2,tcp:80"]
    );
    assert!(
        !runner.save().expect("save").contains("KPROXY-SWAP"),
        "scratch set left behind"
    );

    let names: Vec<String> = KubeSet::ALL
        .iter()
        .flat_map(|s| [s.name(Family::Inet), s.name(Family::Inet6)])
        .collect();
    runner.restore(&render_destroy(&names)).expect("destroy");
    assert_eq!(runner.save().expect("save").trim(), "");

    let mut wrong = KubeSet::ClusterIp.new_set(Family::Inet);
    wrong.set_type = kproxy_ipvs::ipset::SetType::HashIp;
    runner.restore(&render_sync(&[cluster])).expect("restore");
    let err = runner
        .restore(&render_sync(&[wrong]))
        .expect_err("type clash");
    assert!(err.to_string().contains("ipset restore"), "{err}");
}
