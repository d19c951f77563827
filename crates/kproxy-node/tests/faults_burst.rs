//! 10,000 services created through the fake API server in one burst, then all 10,000
//! changed in a second burst: the agent coalesces the changes into a handful of syncs and
//! its peak memory stays bounded (the second burst, as large as the first, adds little).
//! Prints (`MEASURED`) the syncs, the time to program each burst, the agent's VmHWM and
//! what one `iptables-save -t nat` of the result costs (the agent's per-sync-period chain
//! check). iptables-legacy, one endpoint per service.

mod fault_support;

use fault_support::{
    base_args, namespace, prerequisites, report, run_in, without_flag, AgentProcess, SYNCS,
};
use kproxy_lab::LabApiServer;
use std::fmt::Write;
use std::time::{Duration, Instant};

const TEST: &str = "ten_thousand_service_changes";
const SERVICES: usize = 10_000;
const SERVICE_CHANGES: &str = "kubeproxy_sync_proxy_rules_service_changes_total";
/// The agent's peak memory may not exceed this (KiB).
const MEMORY_BOUND_KIB: u64 = 400 * 1024;

/// `SERVICES` services (10.96.x.y) with one endpoint each, on port `port`.
fn services(port: u16) -> String {
    let mut text = String::with_capacity(SERVICES * 700);
    for i in 0..SERVICES {
        let (hi, lo) = (i / 250, i % 250 + 1);
        let _ = write!(
            text,
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: burst}}\n\
             spec: {{clusterIP: 10.96.{}.{lo}, ports: [{{name: p, port: {port}, protocol: TCP, targetPort: 8080}}]}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: s{i}-1, namespace: burst, labels: {{kubernetes.io/service-name: s{i}}}}}\n\
             addressType: IPv4\nports: [{{name: p, port: 8080, protocol: TCP}}]\n\
             endpoints: [{{addresses: [\"10.244.{hi}.{lo}\"], conditions: {{ready: true}}}}]\n",
            hi + 1
        );
    }
    text
}

const NODE: &str = "apiVersion: v1\nkind: Node\nmetadata: {name: node-0}\n\
    status: {addresses: [{type: InternalIP, address: 192.168.50.10}]}\n";

#[test]
fn a_burst_of_ten_thousand_service_changes_is_coalesced_in_bounded_memory() {
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    let netns = namespace("burst");
    let api = LabApiServer::start(&netns).expect("API server");
    api.apply_manifest(NODE).expect("node");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let mut args = without_flag(
        &base_args(
            &["--proxy-mode", "iptables", "--iptables-backend", "legacy"],
            "30s",
        ),
        "--iptables-min-sync-period",
    );
    args.extend([
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        // kube-proxy's default: changes within a second are coalesced.
        "--iptables-min-sync-period".into(),
        "1s".into(),
    ]);
    let mut agent = AgentProcess::start(
        &binary,
        &netns,
        &[],
        &args,
        &[],
        &dir.path().join("agent.log"),
    );
    agent.wait_count(SYNCS, 1, Duration::from_secs(30));
    let idle_kib = agent.vm_hwm_kib();
    let dnat_count = |needle: &str| {
        run_in(&netns, "iptables-legacy-save", &["-t", "nat"])
            .lines()
            .filter(|l| l.starts_with("-A KUBE-SERVICES ") && l.contains(needle))
            .count()
    };

    let mut figures = vec![format!("idle VmHWM {} MiB", idle_kib / 1024)];
    let mut peaks = Vec::new();
    for (burst, port) in [("create", 80u16), ("change every port", 81)] {
        let syncs = agent.count(SYNCS);
        let changes = agent.count(SERVICE_CHANGES);
        let manifest = services(port);
        api.apply_manifest(&manifest).expect("burst");
        let needle = format!("--dport {port} ");
        let programmed = agent.wait_until(
            &format!("{SERVICES} services on port {port}"),
            Duration::from_secs(120),
            |_| {
                std::thread::sleep(Duration::from_millis(400));
                dnat_count(&needle) >= SERVICES
            },
        );
        let synced = agent.count(SYNCS) - syncs;
        let changed = agent.count(SERVICE_CHANGES) - changes;
        let peak = agent.vm_hwm_kib();
        peaks.push(peak);
        assert!(changed >= SERVICES as u64, "{changed} service changes seen");
        // At most one sync per --iptables-min-sync-period (1 s) plus kube-proxy's burst
        // of two, however many changes arrive.
        let bound = programmed.as_secs_f64().ceil() as u64 + 3;
        assert!(
            synced <= bound && changed / synced.max(1) >= 100,
            "{changed} changes took {synced} syncs in {programmed:?}: not coalesced"
        );
        assert!(
            peak <= MEMORY_BOUND_KIB,
            "VmHWM {peak} KiB after the {burst} burst"
        );
        figures.push(format!(
            "{burst} burst: {changed} service changes in {synced} syncs, programmed in \
             {programmed:.1?}, VmHWM {} MiB",
            peak / 1024
        ));
    }
    assert!(
        peaks[1] <= peaks[0] + peaks[0] / 2,
        "a second burst as large as the first grew the peak from {} to {} KiB",
        peaks[0],
        peaks[1]
    );
    let dump = Instant::now();
    let nat = run_in(&netns, "iptables-legacy-save", &["-t", "nat"]);
    let dump_took = dump.elapsed();
    figures.push(format!(
        "one iptables-legacy-save -t nat of the result ({} lines): {dump_took:.0?}",
        nat.lines().count()
    ));
    report(TEST, figures.join("; "));
}
