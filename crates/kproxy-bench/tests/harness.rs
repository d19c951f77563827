//! The benchmark's harness end to end, small: 50 services, 200 connections per target, in
//! iptables (nft backend) and nftables mode. Needs root and the lab's tools; under
//! `CI=true` a machine that cannot run it fails it, elsewhere it is skipped loudly.

use kproxy_bench::kernel::Placement;
use kproxy_bench::program::Programming;
use kproxy_bench::{run_case, CaseReport, CaseSpec};
use kproxy_lab::require::{check_machine, skip_or_fail};
use kproxy_lab::{AgentBinary, ProxyMode};
use std::time::Duration;

const TEST: &str = "kproxy-bench harness";

fn binary() -> Option<AgentBinary> {
    match check_machine().and_then(|()| AgentBinary::locate()) {
        Ok(binary) => Some(binary),
        Err(e) => {
            skip_or_fail(TEST, &e);
            None
        }
    }
}

fn assert_measured(report: &CaseReport, placement: Placement) {
    let Programming::Programmed { dispatch, .. } = &report.programming else {
        panic!("[{}] not programmed: {:?}", report.mode, report.programming);
    };
    assert_eq!(dispatch.services, 50, "[{}]", report.mode);
    assert_eq!(dispatch.placement, placement, "[{}]", report.mode);
    let measured = report.measured.as_ref().expect("figures once programmed");
    for (what, series) in [
        ("no rules", &report.no_rules),
        ("pod IP", &measured.pod_ip),
        ("ClusterIP", &measured.cluster_ip),
    ] {
        assert_eq!(
            (series.summary.ok, series.summary.failed),
            (200, 0),
            "[{}] {what}: {:?}",
            report.mode,
            series.first_failure
        );
        assert!(
            series.summary.connect_p50_us > 0.0,
            "[{}] {what}",
            report.mode
        );
        assert!(
            series.summary.connect_p99_us >= series.summary.connect_p50_us,
            "[{}] {what}",
            report.mode
        );
    }
}

#[test]
fn fifty_services_in_both_modes_are_measured_through_the_cluster_ip() {
    let Some(binary) = binary() else {
        return;
    };
    for (mode, placement) in [
        (ProxyMode::IptablesNft, Placement::LastOfWalk),
        (ProxyMode::Nftables, Placement::InVerdictMap),
    ] {
        let spec = CaseSpec {
            services: 50,
            mode,
            connections: 200,
            sync_cap: Duration::from_secs(20),
            agent_args: Vec::new(),
        };
        let report = run_case(&binary, &spec).unwrap_or_else(|e| panic!("[{mode}] {e}"));
        assert_measured(&report, placement);
    }
}
