//! The whole agent with `--proxy-mode nftables` in a throwaway network namespace, against
//! a `--cluster-file` and against the fake API server: the `kube-proxy` table programmed
//! after the initial list, `/healthz` and `/metrics`, a change reaching the kernel, a
//! deleted table rebuilt, the iptables mode's leftovers removed at start (and the nftables
//! table removed when the iptables mode starts), and `--cleanup`. Needs root, `nft` and
//! iptables-nft; under `CI=true` a missing requirement fails the test.

mod support;

use kproxy_node::config::{AgentConfig, HostDefaults};
use kproxy_node::AgentArgs;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::netns::Netns;
use support::{cluster, free_port, get, wait_for, wait_for_metric};

const TOOLS: [&str; 4] = ["ip", "nft", "iptables-nft", "iptables-nft-restore"];

fn agent_args(healthz: SocketAddr, metrics: SocketAddr) -> AgentArgs {
    AgentArgs {
        proxy_mode: Some("nftables".into()),
        hostname_override: Some("node-0".into()),
        cluster_cidr: Some("10.244.0.0/16".into()),
        healthz_bind_address: Some(healthz.to_string()),
        metrics_bind_address: Some(metrics.to_string()),
        iptables_backend: Some("nft".into()),
        iptables_min_sync_period: Some(Duration::from_millis(100)),
        iptables_sync_period: Some(Duration::from_secs(1)),
        conntrack_max_per_core: Some(0),
        conntrack_tcp_timeout_established: Some(Duration::ZERO),
        conntrack_tcp_timeout_close_wait: Some(Duration::ZERO),
        ..AgentArgs::default()
    }
}

fn nft(args: &[&str]) -> String {
    let output = Command::new("nft").args(args).output().expect("nft");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn table() -> String {
    nft(&["list", "table", "ip", "kube-proxy"])
}

fn nat_rules() -> String {
    let output = Command::new("iptables-nft-save")
        .args(["-t", "nat"])
        .output()
        .expect("iptables-nft-save");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What an earlier iptables-mode kube-proxy would have left in the nat table.
fn leave_iptables_mode_rules() {
    let mut restore = Command::new("iptables-nft-restore")
        .arg("--noflush")
        .stdin(Stdio::piped())
        .spawn()
        .expect("iptables-nft-restore");
    restore
        .stdin
        .take()
        .expect("stdin")
        .write_all(
            b"*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-OLD - [0:0]\n\
              -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
              -A KUBE-SERVICES -d 10.96.9.9/32 -j KUBE-SVC-OLD\nCOMMIT\n",
        )
        .expect("write");
    assert!(restore.wait().expect("wait").success());
    assert!(nat_rules().contains("KUBE-SVC-OLD"));
}

fn config(args: &AgentArgs) -> AgentConfig {
    AgentConfig::resolve(args, None, &HostDefaults::default())
        .expect("config")
        .0
}

/// Waits for the agent's first full sync; an agent that stops before it fails the test
/// with the agent's own error.
async fn first_full_sync<T: std::fmt::Debug>(
    metrics: SocketAddr,
    agent: &mut tokio::task::JoinHandle<T>,
) {
    tokio::select! {
        () = wait_for_metric(
            metrics,
            "kubeproxy_sync_full_proxy_rules_duration_seconds_count 1",
        ) => {}
        ended = agent => panic!("the agent stopped before its first full sync: {ended:?}"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn cleanup_all() {
    let cleanup = AgentArgs {
        cleanup: Some(true),
        ..AgentArgs::default()
    };
    kproxy_node::cleanup(cleanup).expect("cleanup");
    assert!(!nft(&["list", "tables"]).contains("kube-proxy"));
}

#[test]
fn nftables_agent_programs_a_cluster_file_repairs_and_cleans_up() {
    let Some(_netns) = Netns::enter(&TOOLS) else {
        return;
    };
    leave_iptables_mode_rules();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("cluster.yaml");
    let manifest = cluster(free_port());
    std::fs::write(&file, &manifest).expect("write cluster");
    let healthz: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let args = AgentArgs {
        cluster_file: Some(file.clone()),
        ..agent_args(healthz, metrics)
    };
    runtime().block_on(async {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut agent = tokio::spawn(kproxy_node::serve(config(&args), async {
            let _ = stopped.await;
        }));
        first_full_sync(metrics, &mut agent).await;
        let programmed = table();
        assert!(
            programmed.contains("dnat to 10.244.1.5:8080"),
            "{programmed}"
        );
        assert!(programmed.contains("10.96.0.20 . tcp . 80 : goto service-"));
        assert!(nft(&["list", "tables"]).contains("table ip6 kube-proxy"));
        assert!(
            !nat_rules().contains("KUBE-"),
            "the iptables mode's rules are removed at start:\n{}",
            nat_rules()
        );
        let (status, body) = get(healthz, "/healthz").await;
        assert_eq!(status, 200, "{body}");
        let (_, text) = get(metrics, "/metrics").await;
        assert!(text.contains("kubeproxy_sync_proxy_rules_nftables_sync_failures_total 0"));
        assert!(!text.contains("iptables_total"), "{text}");

        std::fs::write(&file, manifest.replace("10.244.1.5", "10.244.1.77")).expect("edit");
        wait_for("the edit to reach the kernel", || {
            let programmed = table();
            programmed.contains("10.244.1.77:8080") && !programmed.contains("10.244.1.5:8080")
        })
        .await;
        wait_for_metric(
            metrics,
            "kubeproxy_sync_partial_proxy_rules_duration_seconds_count 1",
        )
        .await;

        nft(&["delete", "table", "ip", "kube-proxy"]);
        wait_for("the deleted table to be rebuilt", || {
            table().contains("10.244.1.77:8080")
        })
        .await;

        let _ = stop.send(());
        agent.await.expect("join").expect("agent stops cleanly");
    });
    assert!(
        table().contains("10.244.1.77:8080"),
        "rules stay after a stop"
    );
    cleanup_all();
}

#[test]
fn nftables_agent_follows_the_fake_api_server_and_iptables_mode_removes_its_table() {
    let Some(_netns) = Netns::enter(&TOOLS) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let healthz: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let manifest = cluster(free_port());
    runtime().block_on(async {
        let api = kproxy_testapi::FakeApiServer::start()
            .await
            .expect("fake API server");
        api.apply_manifest(&manifest).expect("cluster applied");
        api.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        let args = AgentArgs {
            kubeconfig: Some(kubeconfig.clone()),
            ..agent_args(healthz, metrics)
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut agent = tokio::spawn(kproxy_node::serve(config(&args), async {
            let _ = stopped.await;
        }));
        first_full_sync(metrics, &mut agent).await;
        assert!(table().contains("dnat to 10.244.1.5:8080"));
        api.apply_manifest(&manifest.replace("10.244.2.6", "10.244.2.66"))
            .expect("endpoint change");
        wait_for("the API change to reach the kernel", || {
            table().contains("10.244.2.66:8080")
        })
        .await;
        let _ = stop.send(());
        agent.await.expect("join").expect("agent stops cleanly");

        // Ports of its own: the stopped agent's listeners may not be gone yet.
        let iptables = AgentArgs {
            proxy_mode: Some("iptables".into()),
            kubeconfig: Some(kubeconfig.clone()),
            ..agent_args(
                ([127, 0, 0, 1], free_port()).into(),
                ([127, 0, 0, 1], free_port()).into(),
            )
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let agent = tokio::spawn(kproxy_node::serve(config(&iptables), async {
            let _ = stopped.await;
        }));
        wait_for("the iptables mode to program the cluster", || {
            assert!(
                !agent.is_finished(),
                "the iptables-mode agent stopped early"
            );
            nat_rules().contains("10.244.2.66:8080")
        })
        .await;
        assert!(
            !nft(&["list", "tables"]).contains("kube-proxy"),
            "the nftables tables are removed when the iptables mode starts"
        );
        let _ = stop.send(());
        agent.await.expect("join").expect("agent stops cleanly");
    });
    cleanup_all();
    assert!(!nat_rules().contains("KUBE-SVC"));
}

/// The periodic check's probe (a netlink dump of one chain's rules) against the kernel:
/// rules, a flushed chain, a missing chain, a missing table, and the other family.
#[test]
fn the_table_probe_sees_rules_flushes_and_deletions() {
    use kproxy_nftables::nft::Family;
    use kproxy_node::kernel::nft::{ExecNft, NftKernel};
    let Some(_netns) = Netns::enter(&TOOLS) else {
        return;
    };
    let mut probe = ExecNft::find(Duration::from_secs(10)).expect("nft");
    let mut has_rules = |family, chain| {
        probe
            .chain_has_rules(family, "kube-proxy", chain)
            .expect("probe answers")
    };
    assert!(!has_rules(Family::Ip, "nat-prerouting"), "no table yet");
    let mut load = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft -f");
    load.stdin
        .take()
        .expect("stdin")
        .write_all(
            b"add table ip kube-proxy\n\
              add chain ip kube-proxy services\n\
              add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }\n\
              add rule ip kube-proxy nat-prerouting jump services\n\
              add rule ip kube-proxy nat-prerouting counter\n",
        )
        .expect("write batch");
    assert!(load.wait().expect("nft -f").success());
    assert!(has_rules(Family::Ip, "nat-prerouting"));
    assert!(!has_rules(Family::Ip, "services"), "an empty chain");
    assert!(!has_rules(Family::Ip, "no-such-chain"));
    assert!(
        !has_rules(Family::Ip6, "nat-prerouting"),
        "the other family"
    );
    nft(&["flush", "chain", "ip", "kube-proxy", "nat-prerouting"]);
    assert!(!has_rules(Family::Ip, "nat-prerouting"), "flushed");
    nft(&["delete", "table", "ip", "kube-proxy"]);
    assert!(!has_rules(Family::Ip, "nat-prerouting"), "deleted");
}
