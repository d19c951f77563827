//! 10,000 Services with 10 endpoints each programmed through the proxier and the real
//! kernel facade, then one endpoint change. Prints the time of each part (no assertions
//! on time). Runs in its own network namespace: IPVS keeps deleted real servers in a
//! per-namespace trash list for a minute and scans it on every add, so 100,000 deleted
//! real servers would slow the next test's adds a hundredfold.

use std::time::{Duration, Instant};

use serde_json::json;

use super::cluster::slice;
use super::net::{enter, sh};
use super::node::{Node, SyncTimes};
use crate::gate::in_guest;

const SERVICES: u32 = 10_000;
const ENDPOINTS: u32 = 10;

fn report(what: &str, t: &SyncTimes) {
    println!(
        "mode scale: {what}: total {:.2?} (snapshot {:.2?}, observe {:.2?}, plan {:.2?}, apply {:.2?})",
        t.total(),
        t.refresh,
        t.observe,
        t.plan,
        t.apply
    );
}

fn endpoint_ips(i: u32, first: u32) -> Vec<String> {
    let [_, _, hi, lo] = i.to_be_bytes();
    (first..first + ENDPOINTS)
        .map(|e| format!("10.{}.{hi}.{lo}", 200 + e))
        .collect()
}

fn apply_slice(node: &mut Node, i: u32, first: u32) {
    let ips = endpoint_ips(i, first);
    let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    node.apply(slice(&format!("s{i}"), &refs));
}

#[test]
#[ignore = "needs the IPVS guest kernel: tools/ipvs-vm/test"]
fn ten_thousand_services_through_the_ipvs_mode() {
    if !in_guest("ten_thousand_services_through_the_ipvs_mode") {
        return;
    }
    sh("ip netns add mscale; ip -n mscale link set lo up");
    let run = std::thread::spawn(|| {
        enter("mscale");
        program_ten_thousand_services();
    })
    .join();
    sh("ip netns del mscale");
    if let Err(panic) = run {
        std::panic::resume_unwind(panic);
    }
}

fn program_ten_thousand_services() {
    let mut node = Node::start("scale-node", Duration::from_secs(600));
    let start = Instant::now();
    for i in 0..SERVICES {
        let [_, _, hi, lo] = i.to_be_bytes();
        node.apply(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("s{i}"), "namespace": "ns1"},
            "spec": {"clusterIP": format!("10.100.{hi}.{lo}"),
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
        }));
        apply_slice(&mut node, i, 0);
    }
    println!(
        "mode scale: {SERVICES} Services + slices into the store: {:.2?}",
        start.elapsed()
    );

    let full = node.sync();
    let plan = node.last.as_ref().expect("plan");
    assert_eq!(plan.desired.services.len() as u32, SERVICES);
    assert_eq!(plan.ipvs_ops.len() as u32, SERVICES * (ENDPOINTS + 1));
    report(
        &format!("first sync, {SERVICES} services x {ENDPOINTS} endpoints"),
        &full,
    );

    apply_slice(&mut node, SERVICES / 2, 1);
    let one = node.sync();
    let plan = node.last.as_ref().expect("plan");
    assert_eq!(plan.ipvs_ops.len(), 2, "{:?}", plan.ipvs_ops);
    report("one endpoint change", &one);

    let again = node.sync();
    assert!(node.last.as_ref().expect("plan").ipvs_ops.is_empty());
    report("no change", &again);

    let start = Instant::now();
    node.cleanup();
    println!("mode scale: cleanup {:.2?}", start.elapsed());
}
