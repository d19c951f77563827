//! Someone else damages the iptables rules of a running agent: flushes the nat table,
//! deletes one service's `KUBE-SVC-…` chain (with the rule that jumps to it), flushes one
//! endpoint's `KUBE-SEP-…` chain, deletes a jump from a built-in chain. Each is found by the
//! check the agent runs every sync period and repaired by the full sync it triggers; the
//! test measures how long each repair took and prints it (`MEASURED` lines). Both iptables
//! backends.

mod fault_support;

use fault_support::{
    base_args, namespace, prerequisites, report, run_in, AgentProcess, CLUSTER, FULL_SYNCS,
};
use kproxy_lab::Netns;
use std::time::{Duration, Instant};

/// `--iptables-sync-period`: the check interval.
const SYNC_PERIOD: Duration = Duration::from_secs(2);
/// What a repair may take beyond one sync period (the full sync itself, a loaded machine).
const SLACK: Duration = Duration::from_millis(2500);

#[test]
fn nft_backend_damage_is_repaired_within_a_sync_period() {
    damage_and_repair("nft");
}

#[test]
fn legacy_backend_damage_is_repaired_within_a_sync_period() {
    damage_and_repair("legacy");
}

struct Node<'a> {
    netns: &'a Netns,
    backend: &'static str,
    /// The agent's private xtables lock file.
    lock: String,
}

impl Node<'_> {
    fn nat(&self) -> String {
        run_in(
            self.netns,
            &format!("iptables-{}-save", self.backend),
            &["-t", "nat"],
        )
    }

    /// Runs iptables commands (shell syntax, `IPT` standing for the backend's iptables).
    fn damage(&self, commands: &str) {
        let script = commands.replace("IPT", &format!("iptables-{} -w 5", self.backend));
        let script = format!("export XTABLES_LOCKFILE='{}'; {script}", self.lock);
        self.netns
            .exec("sh", &["-c", &script])
            .unwrap_or_else(|e| panic!("damaging the rules: {e}"));
    }

    /// The first `-A` line of the nat table that contains every needle.
    fn rule_with(&self, needles: &[&str]) -> String {
        let nat = self.nat();
        nat.lines()
            .find(|l| l.starts_with("-A ") && needles.iter().all(|n| l.contains(n)))
            .unwrap_or_else(|| panic!("no rule with {needles:?} in\n{nat}"))
            .to_string()
    }
}

/// Whether the nat table is the complete ruleset of [`CLUSTER`].
fn intact(nat: &str) -> bool {
    [
        ":KUBE-PROXY-CANARY",
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        "default/web:http cluster IP",
        "-j DNAT --to-destination 10.244.1.5:8080",
        "-j DNAT --to-destination 10.244.2.6:8080",
        "-j DNAT --to-destination 10.244.1.7:5353",
        "--dport 30053",
    ]
    .iter()
    .all(|needle| nat.contains(needle))
}

fn damage_and_repair(backend: &'static str) {
    let test = format!("damage_repaired_{backend}");
    let Some(binary) = prerequisites(&test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, CLUSTER).expect("cluster");
    let netns = namespace("repair");
    let mut args = base_args(
        &["--proxy-mode", "iptables", "--iptables-backend", backend],
        "2s",
    );
    args.extend(["--cluster-file".into(), file.display().to_string()]);
    let mut agent = AgentProcess::start(
        &binary,
        &netns,
        &[],
        &args,
        &[],
        &dir.path().join("agent.log"),
    );
    agent.wait_count(FULL_SYNCS, 1, Duration::from_secs(30));
    let node = Node {
        netns: &netns,
        backend,
        lock: fault_support::private_lock(&dir.path().join("agent.log"))
            .display()
            .to_string(),
    };
    assert!(intact(&node.nat()), "{}", node.nat());
    // Let the agent's own periodic check see the intact ruleset first: no false alarm.
    std::thread::sleep(SYNC_PERIOD + Duration::from_millis(300));
    let fulls = agent.count(FULL_SYNCS);
    assert_eq!(fulls, 1, "an intact ruleset caused full syncs");
    assert!(
        !agent.log().contains("kernel state damaged"),
        "{}",
        agent.log()
    );

    let svc_jump = node.rule_with(&["-A KUBE-SERVICES", "default/web:http cluster IP"]);
    let svc_chain = svc_jump
        .rsplit(' ')
        .next()
        .expect("jump target")
        .to_string();
    let sep_chain = node
        .rule_with(&["--to-destination 10.244.2.6:8080"])
        .split_whitespace()
        .nth(1)
        .expect("chain")
        .to_string();
    let damages = [
        ("nat table flushed", "IPT -t nat -F".to_string()),
        (
            "one KUBE-SVC chain deleted",
            format!(
                "IPT -t nat {} && IPT -t nat -F {svc_chain} && IPT -t nat -X {svc_chain}",
                svc_jump.replacen("-A ", "-D ", 1)
            ),
        ),
        (
            "one KUBE-SEP chain flushed",
            format!("IPT -t nat -F {sep_chain}"),
        ),
        (
            "the PREROUTING jump deleted",
            "IPT -t nat -D PREROUTING -m comment --comment 'kubernetes service portals' -j KUBE-SERVICES"
                .to_string(),
        ),
    ];
    let mut figures = Vec::new();
    for (what, commands) in damages {
        node.damage(&commands);
        let damaged = Instant::now();
        assert!(!intact(&node.nat()), "{what}: the damage did not take");
        agent.wait_until(
            &format!("repair after {what}"),
            Duration::from_secs(20),
            |_| intact(&node.nat()),
        );
        let took = damaged.elapsed();
        assert!(
            took <= SYNC_PERIOD + SLACK,
            "{what}: repaired after {took:?}, more than one sync period ({SYNC_PERIOD:?})"
        );
        figures.push(format!("{what}: repaired in {took:.2?}"));
    }
    let log = agent.log();
    assert!(log.contains("nat service chains missing"), "{log}");
    assert!(log.contains("nat service chains flushed"), "{log}");
    report(
        &test,
        format!(
            "sync period {SYNC_PERIOD:?}; {}; {} full syncs in all",
            figures.join("; "),
            agent.count(FULL_SYNCS)
        ),
    );
}
