//! IPVS over netlink against the guest's kernel: create, list, update, delete,
//! and compare with what `ipvsadm -Ln` sees.

use std::process::Command;

use kproxy_ipvs::{
    ForwardMethod, IpvsHandle, IpvsOp, NetlinkIpvs, Persistence, Protocol, RealServer, SchedFlags,
    Scheduler, ServiceKey, Timeouts, VirtualServer,
};

use crate::gate::in_guest;

fn key(addr: &str, port: u16, protocol: Protocol) -> ServiceKey {
    ServiceKey {
        addr: addr.parse().expect("test address"),
        port,
        protocol,
    }
}

fn ipvsadm_list() -> String {
    let out = Command::new("ipvsadm")
        .args(["-Ln"])
        .output()
        .expect("run ipvsadm");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Virtual servers covering every scheduler, flag, persistence and family.
fn services() -> Vec<VirtualServer> {
    let mut tcp = VirtualServer::new(key("10.96.0.1", 443, Protocol::Tcp));
    tcp.persistence = Some(Persistence {
        timeout_secs: 10800,
        prefix_len: 32,
    });
    let mut udp = VirtualServer::new(key("10.96.0.10", 53, Protocol::Udp));
    udp.scheduler = Scheduler::WeightedRoundRobin;
    udp.persistence = Some(Persistence {
        timeout_secs: 60,
        prefix_len: 24,
    });
    let mut sctp = VirtualServer::new(key("fd00::10", 9999, Protocol::Sctp));
    sctp.scheduler = Scheduler::MaglevHashing;
    sctp.sched_flags = SchedFlags {
        fallback: true,
        port: true,
    };
    let mut sh = VirtualServer::new(key("fd00::11", 80, Protocol::Tcp));
    sh.scheduler = Scheduler::SourceHashing;
    sh.sched_flags.port = true;
    sh.persistence = Some(Persistence {
        timeout_secs: 30,
        prefix_len: 64,
    });
    let mut lc = VirtualServer::new(key("10.96.0.2", 8080, Protocol::Tcp));
    lc.scheduler = Scheduler::LeastConnection;
    vec![tcp, udp, sctp, sh, lc]
}

#[test]
#[ignore = "needs the IPVS guest kernel: tools/ipvs-vm/test"]
fn services_and_destinations_round_trip_through_the_kernel() {
    if !in_guest("services_and_destinations_round_trip_through_the_kernel") {
        return;
    }
    let mut k = NetlinkIpvs::connect().expect("resolve the IPVS family");
    k.flush().expect("flush");
    let want = services();
    let ops: Vec<IpvsOp> = want.iter().cloned().map(IpvsOp::AddService).collect();
    let failures = k.apply(&ops).expect("apply");
    assert!(failures.is_empty(), "{failures:?}");
    let mut got = k.services().expect("list");
    got.sort();
    let mut sorted = want.clone();
    sorted.sort();
    assert_eq!(got, sorted);

    let cip = want[0].key;
    let mut a = RealServer::new("10.244.1.2".parse().expect("ip"), 8443);
    a.weight = 3;
    let mut b = RealServer::new("10.244.2.2".parse().expect("ip"), 8443);
    b.forward = ForwardMethod::DirectRoute;
    let v6 = RealServer::new("fd01::2".parse().expect("ip"), 9999);
    let ops = [
        IpvsOp::AddDestination(cip, a),
        IpvsOp::AddDestination(cip, b),
        IpvsOp::AddDestination(want[2].key, v6),
    ];
    assert!(k.apply(&ops).expect("apply").is_empty());
    let mut dests: Vec<RealServer> = k
        .destinations(&cip)
        .expect("dests")
        .iter()
        .map(|d| d.server)
        .collect();
    dests.sort();
    assert_eq!(dests, vec![a, b]);
    assert_eq!(k.destinations(&want[2].key).expect("dests")[0].server, v6);

    let listing = ipvsadm_list();
    println!("{listing}");
    for line in [
        "TCP  10.96.0.1:443 rr persistent 10800",
        "  -> 10.244.1.2:8443              Masq    3      0          0",
        "  -> 10.244.2.2:8443              Route   1      0          0",
        "UDP  10.96.0.10:53 wrr persistent 60 mask 255.255.255.0",
        "SCTP [fd00::10]:9999 mh (mh-fallback,mh-port)",
        "TCP  [fd00::11]:80 sh (sh-port) persistent 30 mask 64",
        "TCP  10.96.0.2:8080 lc",
    ] {
        assert!(
            listing.lines().any(|l| l.trim_end() == line),
            "ipvsadm lacks {line:?}"
        );
    }

    let mut changed = want[0].clone();
    changed.scheduler = Scheduler::RoundRobin;
    changed.persistence = None;
    k.apply_one(IpvsOp::UpdateService(changed.clone()))
        .expect("update service");
    k.apply_one(IpvsOp::UpdateDestination(
        cip,
        RealServer { weight: 0, ..a },
    ))
    .expect("update destination");
    k.apply_one(IpvsOp::DeleteDestination(cip, b.key))
        .expect("delete destination");
    let state = k.state().expect("state");
    let now = state
        .iter()
        .find(|s| s.service.key == cip)
        .expect("service still there");
    assert_eq!(now.service, changed);
    assert_eq!(now.destinations.len(), 1);
    assert_eq!(now.destinations[0].server.weight, 0);

    let again = k
        .apply_one(IpvsOp::AddService(changed))
        .expect_err("duplicate");
    assert!(again.is_exists(), "{again}");
    k.apply_one(IpvsOp::DeleteService(cip))
        .expect("delete service");
    let gone = k
        .apply_one(IpvsOp::DeleteService(cip))
        .expect_err("already gone");
    assert!(gone.is_not_found(), "{gone}");
    let missing = k
        .apply_one(IpvsOp::DeleteDestination(want[1].key, b.key))
        .expect_err("no such destination");
    assert!(missing.is_not_found(), "{missing}");
    let duplicates: Vec<IpvsOp> = (0..600)
        .map(|i| {
            let rs = RealServer::new("10.244.9.9".parse().expect("ip"), 1000 + (i % 2));
            IpvsOp::AddDestination(want[1].key, rs)
        })
        .collect();
    let failures = k
        .apply(&duplicates)
        .expect("a batch with failures still completes");
    assert_eq!(failures.len(), 598, "all but the first two are duplicates");
    assert!(failures.iter().all(|f| f.error.is_exists()));
    assert_eq!(failures[0].op, duplicates[2]);
    let mut bogus = VirtualServer::new(key("10.96.0.3", 1, Protocol::Tcp));
    bogus.scheduler = Scheduler::Other("no-such-scheduler".into());
    assert!(k.apply_one(IpvsOp::AddService(bogus)).is_err());
    k.flush().expect("flush");
    assert!(k.services().expect("list").is_empty());
}

#[test]
#[ignore = "needs the IPVS guest kernel: tools/ipvs-vm/test"]
fn timeouts_are_set_and_zero_keeps_the_current_value() {
    if !in_guest("timeouts_are_set_and_zero_keeps_the_current_value") {
        return;
    }
    let mut k = NetlinkIpvs::connect().expect("resolve the IPVS family");
    let set = |tcp_secs, tcp_fin_secs, udp_secs| Timeouts {
        tcp_secs,
        tcp_fin_secs,
        udp_secs,
    };
    k.set_timeouts(set(901, 121, 301)).expect("set timeouts");
    k.set_timeouts(set(0, 0, 77)).expect("set udp only");
    let out = Command::new("ipvsadm")
        .args(["-Ln", "--timeout"])
        .output()
        .expect("ipvsadm");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), "Timeout (tcp tcpfin udp): 901 121 77");
    k.set_timeouts(set(900, 120, 300))
        .expect("restore defaults");
}
