//! The whole agent in a throwaway network namespace, against a `--cluster-file` and
//! against the project's fake API server: rules programmed after the initial list,
//! `/healthz` and `/metrics` served, a change reaching the kernel, then a clean stop and
//! `--cleanup`. Needs root and iptables-nft; under `CI=true` a missing requirement fails
//! the test.

mod support;

use kproxy_node::config::{AgentConfig, HostDefaults};
use kproxy_node::AgentArgs;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use support::netns::Netns;
use support::{cluster, free_port, get, wait_for, wait_for_metric};

fn agent_args(healthz: SocketAddr, metrics: SocketAddr) -> AgentArgs {
    AgentArgs {
        hostname_override: Some("node-0".into()),
        cluster_cidr: Some("10.244.0.0/16".into()),
        healthz_bind_address: Some(healthz.to_string()),
        metrics_bind_address: Some(metrics.to_string()),
        iptables_backend: Some("nft".into()),
        iptables_min_sync_period: Some(Duration::from_millis(100)),
        conntrack_max_per_core: Some(0),
        conntrack_tcp_timeout_established: Some(Duration::ZERO),
        conntrack_tcp_timeout_close_wait: Some(Duration::ZERO),
        ..AgentArgs::default()
    }
}

fn cleanup_all() {
    let cleanup = AgentArgs {
        cleanup: Some(true),
        ..AgentArgs::default()
    };
    kproxy_node::cleanup(cleanup).expect("cleanup");
    assert!(!nat_rules().contains("KUBE-"));
}

fn nat_rules() -> String {
    let output = Command::new("iptables-nft-save")
        .args(["-t", "nat"])
        .output()
        .expect("iptables-nft-save");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn agent_programs_a_cluster_file_and_follows_edits() {
    let Some(_netns) = Netns::enter(&["ip", "iptables-nft", "iptables-nft-restore"]) else {
        return;
    };
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
    let (config, _) = AgentConfig::resolve(&args, None, &HostDefaults::default()).expect("config");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let agent = tokio::spawn(kproxy_node::serve(config, async {
            let _ = stopped.await;
        }));
        wait_for_metric(
            metrics,
            "kubeproxy_sync_full_proxy_rules_duration_seconds_count 1",
        )
        .await;
        assert!(nat_rules().contains("10.244.1.5:8080"));
        let (status, body) = get(healthz, "/healthz").await;
        assert_eq!(status, 200, "{body}");

        std::fs::write(&file, manifest.replace("10.244.1.5", "10.244.1.77")).expect("edit");
        wait_for("the edit to reach the kernel", || {
            let rules = nat_rules();
            rules.contains("10.244.1.77:8080") && !rules.contains("10.244.1.5:8080")
        })
        .await;
        wait_for_metric(
            metrics,
            "kubeproxy_sync_partial_proxy_rules_duration_seconds_count 1",
        )
        .await;

        let _ = stop.send(());
        agent.await.expect("join").expect("agent stops cleanly");
    });
    assert!(
        nat_rules().contains("10.244.1.77:8080"),
        "rules stay after a stop"
    );
    cleanup_all();
}

#[test]
fn agent_follows_the_fake_api_server() {
    let Some(_netns) = Netns::enter(&["ip", "iptables-nft", "iptables-nft-restore"]) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let healthz: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let manifest = cluster(free_port());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let api = kproxy_testapi::FakeApiServer::start()
            .await
            .expect("fake API server");
        api.apply_manifest(&manifest).expect("cluster applied");
        api.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        let args = AgentArgs {
            kubeconfig: Some(kubeconfig.clone()),
            ..agent_args(healthz, metrics)
        };
        let (config, _) =
            AgentConfig::resolve(&args, None, &HostDefaults::default()).expect("config");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let agent = tokio::spawn(kproxy_node::serve(config, async {
            let _ = stopped.await;
        }));
        wait_for_metric(
            metrics,
            "kubeproxy_sync_full_proxy_rules_duration_seconds_count 1",
        )
        .await;
        assert!(nat_rules().contains("10.244.1.5:8080"));

        api.apply_manifest(&manifest.replace("10.244.2.6", "10.244.2.66"))
            .expect("endpoint change");
        wait_for("the API change to reach the kernel", || {
            nat_rules().contains("10.244.2.66:8080")
        })
        .await;
        let (status, body) = get(healthz, "/healthz").await;
        assert_eq!(status, 200, "{body}");

        let _ = stop.send(());
        agent.await.expect("join").expect("agent stops cleanly");
    });
    cleanup_all();
}
