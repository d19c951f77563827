//! The kernel tool failing or hanging under a running agent: a wrapper script (written by
//! the test, put in place through `KPROXY_IPTABLES_RESTORE` or in front of `nft` on the
//! agent's `PATH`) fails every call, hangs past `--iptables-restore-timeout`, or fails
//! every third call. The old rules stay in force, the failure is logged and counted, the
//! failed partial sync is retried as a full one, the next sync succeeds, and no hung tool
//! outlives its deadline. Each phase prints what it measured (`MEASURED` lines).

mod fault_support;

use fault_support::{
    base_args, cluster_with_endpoint, namespace, prerequisites, processes_with, replace_file,
    report, run_in, write_script, AgentProcess, FULL_SYNCS, NFT_FAILURES, PARTIAL_FAILURES,
    RESTORE_FAILURES,
};
use kproxy_lab::Netns;
use kproxy_node::kernel::exec::find_tool;
use std::path::Path;
use std::time::{Duration, Instant};

/// `--iptables-sync-period`: a failed sync is retried after this.
const SYNC_PERIOD: Duration = Duration::from_secs(2);
/// `--iptables-restore-timeout`.
const RESTORE_TIMEOUT: &str = "1s";
/// How long a fault may take to show, or the agent to recover (a retry is due after one
/// sync period; the rest is slack for a loaded 2-core CI machine).
const PATIENCE: Duration = Duration::from_secs(15);

/// The tool under test and how to read the kernel back.
struct Tool {
    /// Test name for reports.
    test: &'static str,
    /// Proxy-mode flags.
    mode: &'static [&'static str],
    /// The failure counter this mode publishes.
    failures: &'static str,
    /// Dumps the mode's IPv4 rules.
    dump: fn(&Netns) -> String,
}

/// The wrapper: reads its fault from `DIR/fault` on every call (`ok`, `fail`, `hang`,
/// `every N`), counts calls in `DIR/calls`, and otherwise execs the real tool. `applies`
/// is a shell `case` pattern over the arguments for the calls that write rules.
fn wrapper(dir: &Path, real: &Path, applies: &str, marker: &str) -> String {
    format!(
        r#"#!/bin/sh
# Fault-injecting wrapper written by kproxy-node's faults_restore test.
dir='{dir}'
case "$*" in
{applies})
  n=$(( $(cat "$dir/calls" 2>/dev/null || echo 0) + 1 ))
  echo "$n" > "$dir/calls"
  fault=$(cat "$dir/fault" 2>/dev/null)
  case "$fault" in
  fail) cat > /dev/null; echo "injected failure (call $n)" >&2; exit 1 ;;
  hang) sleep {marker} & exec sleep {marker} ;;
  every*)
    every=${{fault#every }}
    if [ $((n % every)) -eq 0 ]; then
      cat > /dev/null; echo "injected failure (call $n)" >&2; exit 1
    fi ;;
  esac ;;
esac
exec '{real}' "$@"
"#,
        dir = dir.display(),
        real = real.display(),
    )
}

fn set_fault(dir: &Path, fault: &str) {
    std::fs::write(dir.join("fault"), fault).expect("write fault");
}

fn iptables_nat(netns: &Netns) -> String {
    run_in(netns, "iptables-nft-save", &["-t", "nat"])
}

fn nft_table(netns: &Netns) -> String {
    run_in(netns, "nft", &["list", "table", "ip", "kube-proxy"])
}

/// Whether the kernel sends web's first endpoint to `ip` (and to no other first endpoint).
fn programs(tool: &Tool, netns: &Netns, ip: &str, old: &[&str]) -> bool {
    let rules = (tool.dump)(netns);
    rules.contains(&format!("{ip}:8080"))
        && old.iter().all(|o| !rules.contains(&format!("{o}:8080")))
}

#[test]
fn iptables_restore_failing_or_hanging_keeps_old_rules_and_recovers() {
    const TEST: &str = "iptables_restore_failing_or_hanging";
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = format!("4321.{}", std::process::id());
    let real = find_tool("iptables-nft-restore").expect("iptables-nft-restore");
    let script = dir.path().join("iptables-restore");
    write_script(&script, &wrapper(dir.path(), &real, "*", &marker));
    let tool = Tool {
        test: TEST,
        mode: &["--proxy-mode", "iptables", "--iptables-backend", "nft"],
        failures: RESTORE_FAILURES,
        dump: iptables_nat,
    };
    let env = [(
        "KPROXY_IPTABLES_RESTORE",
        script.to_str().expect("utf-8 path"),
    )];
    run_faults(&binary, &tool, dir.path(), &env, &marker);
}

#[test]
fn nft_failing_or_hanging_keeps_old_rules_and_recovers() {
    const TEST: &str = "nft_failing_or_hanging";
    let Some(binary) = prerequisites(TEST) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = format!("4322.{}", std::process::id());
    let real = find_tool("nft").expect("nft");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin dir");
    // Only transactions (`-f -`, also `-c -f -`) are faulted; listings pass through.
    write_script(
        &bin.join("nft"),
        &wrapper(dir.path(), &real, "*-f*", &marker),
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let tool = Tool {
        test: TEST,
        mode: &["--proxy-mode", "nftables"],
        failures: NFT_FAILURES,
        dump: nft_table,
    };
    // Every batch through the faulted `nft`, none over netlink.
    let env = [("PATH", path.as_str()), ("KPROXY_NFT_WRITER", "nft")];
    run_faults(&binary, &tool, dir.path(), &env, &marker);
}

/// The phases, in one agent: a failing tool, a hanging tool, a tool failing every 3rd call.
fn run_faults(
    binary: &kproxy_lab::AgentBinary,
    tool: &Tool,
    dir: &Path,
    env: &[(&str, &str)],
    marker: &str,
) {
    set_fault(dir, "ok");
    let netns = namespace("restore");
    let file = dir.join("cluster.yaml");
    std::fs::write(&file, cluster_with_endpoint("10.244.1.5")).expect("cluster");
    let mut args = base_args(tool.mode, "2s");
    args.extend(cluster_file_args(&file));
    args.extend(["--iptables-restore-timeout".into(), RESTORE_TIMEOUT.into()]);
    let mut agent = AgentProcess::start(binary, &netns, &[], &args, env, &dir.join("agent.log"));
    agent.wait_count(FULL_SYNCS, 1, Duration::from_secs(30));
    assert!(programs(tool, &netns, "10.244.1.5", &[]));

    failing_phase(&mut agent, tool, &netns, dir, &file);
    hanging_phase(&mut agent, tool, &netns, dir, &file, marker);
    flaky_phase(&mut agent, tool, &netns, dir, &file);
}

fn cluster_file_args(file: &Path) -> [String; 2] {
    ["--cluster-file".into(), file.display().to_string()]
}

/// Every write fails: the old rules stay, the failure is counted (as a partial failure in
/// iptables mode) and logged; once the tool works, a full sync brings the change.
fn failing_phase(agent: &mut AgentProcess, tool: &Tool, netns: &Netns, dir: &Path, file: &Path) {
    let fulls = agent.count(FULL_SYNCS);
    set_fault(dir, "fail");
    replace_file(file, &cluster_with_endpoint("10.244.1.55"));
    agent.wait_count(tool.failures, 1, PATIENCE);
    assert!(
        programs(tool, netns, "10.244.1.5", &["10.244.1.55"]),
        "the old rules must stay in force:\n{}",
        (tool.dump)(netns)
    );
    let log = agent.log();
    assert!(log.contains("sync failed"), "failure not logged:\n{log}");
    assert!(
        log.contains("injected failure"),
        "tool's error not logged:\n{log}"
    );
    if tool.failures == RESTORE_FAILURES {
        assert!(
            agent.count(PARTIAL_FAILURES) >= 1,
            "partial failure not counted"
        );
    }
    let retried = agent.wait_count(tool.failures, 2, PATIENCE);
    let failed = agent.count(tool.failures);
    assert!(programs(tool, netns, "10.244.1.5", &["10.244.1.55"]));

    set_fault(dir, "ok");
    let fixed = Instant::now();
    agent.wait_until("the change after the tool recovered", PATIENCE, |_| {
        programs(tool, netns, "10.244.1.55", &["10.244.1.5"])
    });
    let recovered = fixed.elapsed();
    let fulls_after = agent.count(FULL_SYNCS);
    assert!(
        fulls_after > fulls,
        "the retry after a failure must be a full sync"
    );
    assert!(
        recovered <= SYNC_PERIOD + Duration::from_secs(3),
        "recovery took {recovered:?}"
    );
    report(
        tool.test,
        format!(
            "failing tool: {failed} failed syncs counted ({} partial), retried after \
             {retried:.2?}, old rules kept; recovered {recovered:.2?} after the tool worked again (sync period {SYNC_PERIOD:?}), \
             with a full sync ({fulls} -> {fulls_after} full syncs)",
            agent.count(PARTIAL_FAILURES)
        ),
    );
}

/// The tool hangs: it is killed (with its child) after the timeout, the old rules stay, and
/// at most one hung invocation exists at any time.
fn hanging_phase(
    agent: &mut AgentProcess,
    tool: &Tool,
    netns: &Netns,
    dir: &Path,
    file: &Path,
    marker: &str,
) {
    let failures = agent.count(tool.failures);
    set_fault(dir, "hang");
    replace_file(file, &cluster_with_endpoint("10.244.1.56"));
    let started = Instant::now();
    let mut most_hung = 0;
    let mut most_children = 0;
    while started.elapsed() < SYNC_PERIOD * 2 + Duration::from_millis(500) {
        most_hung = most_hung.max(processes_with(marker).len());
        most_children = most_children.max(agent.descendants().len());
        std::thread::sleep(Duration::from_millis(25));
    }
    let timed_out = agent.count(tool.failures) - failures;
    assert!(
        timed_out >= 2,
        "hung calls are killed and counted: {timed_out}"
    );
    assert!(
        agent.log().contains("did not finish within"),
        "timeout not logged"
    );
    assert!(
        most_hung <= 2,
        "one hung call is a shell and its sleep; saw {most_hung} marker processes"
    );
    assert!(programs(tool, netns, "10.244.1.55", &["10.244.1.56"]));

    set_fault(dir, "ok");
    let fixed = Instant::now();
    agent.wait_until("the change after the hang ended", PATIENCE, |_| {
        programs(tool, netns, "10.244.1.56", &["10.244.1.55"])
    });
    let recovered = fixed.elapsed();
    agent.wait_until("no hung tool left", Duration::from_secs(5), |_| {
        processes_with(marker).is_empty()
    });
    report(
        tool.test,
        format!(
            "hanging tool: {timed_out} calls killed after {RESTORE_TIMEOUT} in {:.1?}, at most \
             {most_hung} hung processes and {most_children} agent children at once, none left; \
             old rules kept; recovered {recovered:.2?} after the hang ended",
            SYNC_PERIOD * 2 + Duration::from_millis(500)
        ),
    );
}

/// Every third write fails while the cluster changes five times: every change lands.
fn flaky_phase(agent: &mut AgentProcess, tool: &Tool, netns: &Netns, dir: &Path, file: &Path) {
    let failures = agent.count(tool.failures);
    let calls_before = read_calls(dir);
    set_fault(dir, "every 3");
    let started = Instant::now();
    let mut previous = "10.244.1.56".to_string();
    for n in 60..65 {
        let ip = format!("10.244.1.{n}");
        replace_file(file, &cluster_with_endpoint(&ip));
        agent.wait_until(&format!("{ip} to be programmed"), PATIENCE, |_| {
            programs(tool, netns, &ip, &[&previous])
        });
        previous = ip;
    }
    let elapsed = started.elapsed();
    set_fault(dir, "ok");
    report(
        tool.test,
        format!(
            "every 3rd call failing: 5 changes all programmed in {elapsed:.2?} over {} tool \
             calls, {} failed syncs counted",
            read_calls(dir) - calls_before,
            agent.count(tool.failures) - failures
        ),
    );
}

fn read_calls(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("calls"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}
