use std::time::{Duration, Instant};

use super::*;
use crate::fake::FakeIpvs;
use crate::handle::IpvsHandle;
use crate::types::{ConnectionCounts, Persistence, Protocol, Scheduler};

fn svc(addr: &str, port: u16, protocol: Protocol) -> ServiceKey {
    ServiceKey {
        addr: addr.parse().unwrap(),
        port,
        protocol,
    }
}

fn rs(addr: &str, port: u16) -> RealServer {
    RealServer::new(addr.parse().unwrap(), port)
}

fn desired(key: ServiceKey, servers: &[RealServer]) -> DesiredService {
    DesiredService {
        service: VirtualServer::new(key),
        real_servers: servers.to_vec(),
    }
}

fn keep_none(_: &ServiceKey) -> bool {
    false
}

/// One sync against the fake kernel: read, plan, apply; the new drains.
fn sync(k: &mut FakeIpvs, want: &[DesiredService], draining: &Draining, now: Instant) -> Draining {
    let current = k.state().unwrap();
    let options = PlanOptions {
        drain: DrainPolicy {
            now,
            timeout: Duration::from_secs(60),
        },
        keep_unlisted: &keep_none,
    };
    let p = plan(&current, want, draining, &options);
    let failures = k.apply(&p.ops).unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    p.draining
}

/// The fake kernel's table as ipvsadm-like lines.
fn table(k: &mut FakeIpvs) -> Vec<String> {
    let mut out = Vec::new();
    for s in k.state().unwrap() {
        out.push(format!("{} {}", s.service.key, s.service.scheduler.name()));
        for d in s.destinations {
            out.push(format!("  -> {} w{}", d.server.key, d.server.weight));
        }
    }
    out
}

#[test]
fn an_empty_table_gets_services_then_their_real_servers() {
    let cip = svc("10.96.0.10", 53, Protocol::Udp);
    let current = [];
    let want = [desired(cip, &[rs("10.244.1.2", 53), rs("10.244.2.2", 53)])];
    let options = PlanOptions {
        drain: DrainPolicy {
            now: Instant::now(),
            timeout: Duration::from_secs(60),
        },
        keep_unlisted: &keep_none,
    };
    let p = plan(&current, &want, &Draining::default(), &options);
    let lines: Vec<String> = p.ops.iter().map(|o| o.to_string()).collect();
    assert_eq!(
        lines,
        [
            "add service 10.96.0.10:53/UDP rr",
            "add destination 10.244.1.2:53 to 10.96.0.10:53/UDP weight 1",
            "add destination 10.244.2.2:53 to 10.96.0.10:53/UDP weight 1",
        ]
    );
}

#[test]
fn a_second_plan_of_the_same_state_is_empty() {
    let mut k = FakeIpvs::new();
    let want = [
        desired(
            svc("10.96.0.1", 443, Protocol::Tcp),
            &[rs("192.168.0.1", 6443)],
        ),
        desired(svc("fd00::1", 80, Protocol::Sctp), &[rs("fd01::5", 8080)]),
    ];
    let now = Instant::now();
    sync(&mut k, &want, &Draining::default(), now);
    let applied = k.applied.len();
    sync(&mut k, &want, &Draining::default(), now);
    assert_eq!(
        k.applied.len(),
        applied,
        "nothing applied on the second sync"
    );
}

#[test]
fn session_affinity_and_scheduler_changes_update_the_service_in_place() {
    let mut k = FakeIpvs::new();
    let key = svc("10.96.0.1", 80, Protocol::Tcp);
    let mut want = [desired(key, &[rs("10.244.0.1", 80)])];
    sync(&mut k, &want, &Draining::default(), Instant::now());
    want[0].service.persistence = Some(Persistence {
        timeout_secs: 10800,
        prefix_len: 32,
    });
    want[0].service.scheduler = Scheduler::MaglevHashing;
    want[0].service.sched_flags.port = true;
    let current = k.state().unwrap();
    let options = PlanOptions {
        drain: DrainPolicy {
            now: Instant::now(),
            timeout: Duration::from_secs(60),
        },
        keep_unlisted: &keep_none,
    };
    let p = plan(&current, &want, &Draining::default(), &options);
    assert_eq!(p.ops, vec![IpvsOp::UpdateService(want[0].service.clone())]);
}

#[test]
fn a_removed_busy_tcp_endpoint_drains_at_weight_zero_then_goes() {
    let mut k = FakeIpvs::new();
    let key = svc("10.96.0.1", 80, Protocol::Tcp);
    let (a, b) = (rs("10.244.0.1", 80), rs("10.244.0.2", 80));
    let t0 = Instant::now();
    sync(&mut k, &[desired(key, &[a, b])], &Draining::default(), t0);
    k.set_connections(
        &key,
        &b.key,
        ConnectionCounts {
            active: 1,
            inactive: 1,
        },
    );

    let only_a = [desired(key, &[a])];
    let draining = sync(&mut k, &only_a, &Draining::default(), t0);
    assert_eq!(
        table(&mut k),
        [
            "10.96.0.1:80/TCP rr",
            "  -> 10.244.0.1:80 w1",
            "  -> 10.244.0.2:80 w0"
        ]
    );
    assert_eq!(draining.len(), 1);

    let draining = sync(&mut k, &only_a, &draining, t0 + Duration::from_secs(10));
    assert_eq!(draining.len(), 1, "still busy, not timed out");
    k.set_connections(&key, &b.key, ConnectionCounts::default());
    let draining = sync(&mut k, &only_a, &draining, t0 + Duration::from_secs(20));
    assert!(draining.is_empty());
    assert_eq!(
        table(&mut k),
        ["10.96.0.1:80/TCP rr", "  -> 10.244.0.1:80 w1"]
    );
}

#[test]
fn a_drain_times_out() {
    let mut k = FakeIpvs::new();
    let key = svc("10.96.0.1", 80, Protocol::Tcp);
    let (a, b) = (rs("10.244.0.1", 80), rs("10.244.0.2", 80));
    let t0 = Instant::now();
    sync(&mut k, &[desired(key, &[a, b])], &Draining::default(), t0);
    k.set_connections(
        &key,
        &b.key,
        ConnectionCounts {
            active: 7,
            inactive: 0,
        },
    );
    let draining = sync(&mut k, &[desired(key, &[a])], &Draining::default(), t0);
    let draining = sync(
        &mut k,
        &[desired(key, &[a])],
        &draining,
        t0 + Duration::from_secs(61),
    );
    assert!(draining.is_empty());
    assert_eq!(table(&mut k).len(), 2);
}

#[test]
fn an_endpoint_that_comes_back_while_draining_is_deleted_and_re_added() {
    let mut k = FakeIpvs::new();
    let key = svc("10.96.0.1", 80, Protocol::Tcp);
    let (a, b) = (rs("10.244.0.1", 80), rs("10.244.0.2", 80));
    let t0 = Instant::now();
    sync(&mut k, &[desired(key, &[a, b])], &Draining::default(), t0);
    k.set_connections(
        &key,
        &b.key,
        ConnectionCounts {
            active: 1,
            inactive: 0,
        },
    );
    let draining = sync(&mut k, &[desired(key, &[a])], &Draining::default(), t0);
    k.applied.clear();
    let draining = sync(&mut k, &[desired(key, &[a, b])], &draining, t0);
    assert!(draining.is_empty());
    assert_eq!(
        k.applied,
        vec![
            IpvsOp::DeleteDestination(key, b.key),
            IpvsOp::AddDestination(key, b)
        ]
    );
    assert_eq!(
        table(&mut k),
        [
            "10.96.0.1:80/TCP rr",
            "  -> 10.244.0.1:80 w1",
            "  -> 10.244.0.2:80 w1"
        ]
    );
}

#[test]
fn udp_endpoints_go_at_once_and_stale_services_go_last_unless_kept() {
    let mut k = FakeIpvs::new();
    let dns = svc("10.96.0.10", 53, Protocol::Udp);
    let old = svc("10.96.0.99", 80, Protocol::Tcp);
    let excluded = svc("172.16.0.1", 80, Protocol::Tcp);
    let all = [
        desired(dns, &[rs("10.244.0.1", 53), rs("10.244.0.2", 53)]),
        desired(old, &[rs("10.244.0.3", 80)]),
        desired(excluded, &[]),
    ];
    sync(&mut k, &all, &Draining::default(), Instant::now());
    k.set_connections(
        &dns,
        &rs("10.244.0.2", 53).key,
        ConnectionCounts {
            active: 0,
            inactive: 9,
        },
    );
    let current = k.state().unwrap();
    let keep = |key: &ServiceKey| key.addr.to_string().starts_with("172.16.");
    let options = PlanOptions {
        drain: DrainPolicy {
            now: Instant::now(),
            timeout: Duration::from_secs(60),
        },
        keep_unlisted: &keep,
    };
    let p = plan(
        &current,
        &[desired(dns, &[rs("10.244.0.1", 53)])],
        &Draining::default(),
        &options,
    );
    assert_eq!(
        p.ops,
        vec![
            IpvsOp::DeleteDestination(dns, rs("10.244.0.2", 53).key),
            IpvsOp::DeleteService(old),
        ]
    );
}

#[test]
fn weights_that_drifted_are_put_back() {
    let mut k = FakeIpvs::new();
    let key = svc("10.96.0.1", 80, Protocol::Tcp);
    let a = rs("10.244.0.1", 80);
    sync(
        &mut k,
        &[desired(key, &[a])],
        &Draining::default(),
        Instant::now(),
    );
    k.apply_one(IpvsOp::UpdateDestination(
        key,
        RealServer { weight: 0, ..a },
    ))
    .unwrap();
    sync(
        &mut k,
        &[desired(key, &[a])],
        &Draining::default(),
        Instant::now(),
    );
    assert_eq!(
        table(&mut k),
        ["10.96.0.1:80/TCP rr", "  -> 10.244.0.1:80 w1"]
    );
}

#[test]
fn the_fake_refuses_like_the_kernel() {
    let mut k = FakeIpvs::new();
    let key = svc("10.96.0.1", 80, Protocol::Tcp);
    let vs = VirtualServer::new(key);
    k.apply_one(IpvsOp::AddService(vs.clone())).unwrap();
    assert!(k.apply_one(IpvsOp::AddService(vs)).unwrap_err().is_exists());
    let missing = svc("10.96.0.2", 80, Protocol::Tcp);
    assert!(k
        .apply_one(IpvsOp::DeleteService(missing))
        .unwrap_err()
        .is_not_found());
    let gone = rs("10.244.0.9", 80).key;
    assert!(k
        .apply_one(IpvsOp::DeleteDestination(key, gone))
        .unwrap_err()
        .is_not_found());
    let mut odd = VirtualServer::new(missing);
    odd.scheduler = Scheduler::Other("nope".into());
    assert_eq!(
        k.apply_one(IpvsOp::AddService(odd)).unwrap_err().errno(),
        Some(libc::ENOENT)
    );
}
