//! 10,000 virtual servers with 10 real servers each, programmed over netlink,
//! then one endpoint change: prints how long each step takes in the guest.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use kproxy_ipvs::{
    plan, DesiredService, DrainPolicy, Draining, IpvsHandle, NetlinkIpvs, PlanOptions, Protocol,
    RealServer, ServiceKey, VirtualServer,
};

use crate::gate::in_guest;

const SERVICES: u32 = 10_000;
const ENDPOINTS: u32 = 10;

fn desired() -> Vec<DesiredService> {
    (0..SERVICES)
        .map(|i| {
            let [_, _, hi, lo] = i.to_be_bytes();
            let key = ServiceKey {
                addr: IpAddr::from([10, 100, hi, lo]),
                port: 80,
                protocol: Protocol::Tcp,
            };
            let real_servers = (0..ENDPOINTS)
                .map(|e| RealServer::new(IpAddr::from([10, 200, hi, lo]), 8000 + e as u16))
                .collect();
            DesiredService {
                service: VirtualServer::new(key),
                real_servers,
            }
        })
        .collect()
}

fn keep_none(_: &ServiceKey) -> bool {
    false
}

/// One full sync: read the table, plan, apply. Returns (ops, read time, total time).
fn sync(k: &mut NetlinkIpvs, want: &[DesiredService]) -> (usize, Duration, Duration) {
    let start = Instant::now();
    let current = k.state().expect("read IPVS");
    let read = start.elapsed();
    let options = PlanOptions {
        drain: DrainPolicy {
            now: Instant::now(),
            timeout: Duration::from_secs(60),
        },
        keep_unlisted: &keep_none,
    };
    let p = plan(&current, want, &Draining::default(), &options);
    let failures = k.apply(&p.ops).expect("apply");
    assert!(
        failures.is_empty(),
        "{} failures, first {:?}",
        failures.len(),
        failures.first()
    );
    (p.ops.len(), read, start.elapsed())
}

#[test]
#[ignore = "needs the IPVS guest kernel: tools/ipvs-vm/test"]
fn ten_thousand_services_then_one_endpoint_change() {
    if !in_guest("ten_thousand_services_then_one_endpoint_change") {
        return;
    }
    let mut k = NetlinkIpvs::connect().expect("netlink");
    k.flush().expect("flush");
    let mut want = desired();
    let (ops, _, full) = sync(&mut k, &want);
    assert_eq!(ops as u32, SERVICES * (ENDPOINTS + 1));
    println!("scale: {SERVICES} services x {ENDPOINTS} endpoints: {ops} ops in {full:.2?}");

    want[4321].real_servers[3] = RealServer::new(IpAddr::from([10, 201, 0, 1]), 9000);
    let (ops, read, total) = sync(&mut k, &want);
    assert_eq!(ops, 2, "one add, one delete (idle TCP real server)");
    println!("scale: one endpoint change: read {read:.2?}, read+plan+apply {total:.2?}");

    let (ops, _, _) = sync(&mut k, &want);
    assert_eq!(ops, 0);
    let start = Instant::now();
    k.flush().expect("flush");
    println!("scale: flush {:.2?}", start.elapsed());
}
