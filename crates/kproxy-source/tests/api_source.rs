//! The API source against the fake API server: initial list, watched changes, bookmarks,
//! dropped watches, 410 Gone and an API server that goes away and comes back.

mod support;

use kproxy_model::{ObjectKind, ObjectRef};
use kproxy_source::{ApiSourceConfig, BackoffPolicy, Source, SourceError};
use kproxy_testapi::{FakeApiServer, RecordedRequest, ResourceType};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;
use support::Consumer;
use tempfile::TempDir;

const NODE: &str = "node-a";

fn service(name: &str, labels: Value, port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "ns", "labels": labels},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": port, "protocol": "TCP"}]},
    })
}

fn slice(name: &str, service: &str, extra_labels: Value) -> Value {
    let mut labels = json!({"kubernetes.io/service-name": service});
    if let (Some(labels), Some(extra)) = (labels.as_object_mut(), extra_labels.as_object()) {
        labels.extend(extra.clone());
    }
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "ns", "labels": labels},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.1.5"], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    })
}

fn node(name: &str, zone: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}}})
}

fn service_ref(name: &str) -> ObjectRef {
    ObjectRef {
        kind: ObjectKind::Service,
        namespace: "ns".into(),
        name: name.into(),
    }
}

fn quick_backoff() -> BackoffPolicy {
    BackoffPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(500),
        reset_after: Duration::from_secs(60),
    }
}

/// A kubeconfig for the server in a temporary directory (kept alive by the returned guard).
fn kubeconfig_for(server: &FakeApiServer) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path).expect("write kubeconfig");
    (dir, path)
}

async fn start_consumer(kubeconfig: PathBuf, master: Option<String>) -> Consumer {
    let source = Source::Api(ApiSourceConfig {
        kubeconfig: Some(kubeconfig),
        master,
        node_name: NODE.into(),
        backoff: quick_backoff(),
    })
    .start()
    .await
    .expect("source starts");
    Consumer::new(source)
}

fn count(requests: &[RecordedRequest], test: impl Fn(&RecordedRequest) -> bool) -> usize {
    requests.iter().filter(|r| test(r)).count()
}

/// Waits until every kind's watch is open (the initial sync precedes the first watch).
async fn wait_for_watches(server: &FakeApiServer) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while server.open_watches() < ResourceType::ALL.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "watches did not open: {:#?}",
            server.requests()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn lists_of(server: &FakeApiServer, resource: ResourceType) -> usize {
    count(&server.requests(), |r| r.is_list_of(resource))
}

#[tokio::test]
async fn initial_list_then_watched_changes() {
    let server = FakeApiServer::start().await.expect("server");
    let (_dir, kubeconfig) = kubeconfig_for(&server);
    server
        .apply_json(service("web", json!({}), 80))
        .expect("apply");
    server
        .apply_json(service(
            "dns",
            json!({"service.kubernetes.io/headless": ""}),
            53,
        ))
        .expect("apply");
    server
        .apply_json(service(
            "mesh",
            json!({"service.kubernetes.io/service-proxy-name": "other"}),
            81,
        ))
        .expect("apply");
    server
        .apply_json(slice("web-1", "web", json!({})))
        .expect("apply");
    server
        .apply_json(slice(
            "dns-1",
            "dns",
            json!({"service.kubernetes.io/headless": ""}),
        ))
        .expect("apply");
    server.apply_json(node(NODE, "z1")).expect("apply");
    server.apply_json(node("node-b", "z2")).expect("apply");

    let mut consumer = start_consumer(kubeconfig, None).await;
    consumer.initial_sync().await;
    for line in [
        "replace Service [ns/web]",
        "replace EndpointSlice [ns/web-1]",
        "replace Node [node-a]",
    ] {
        assert!(
            consumer.logged(line),
            "{line} missing from {:#?}",
            consumer.log
        );
    }

    server
        .apply_json(service("api", json!({}), 443))
        .expect("apply");
    consumer
        .wait_for("the new service", |c| c.logged("apply Service ns/api"))
        .await;
    server
        .apply_json(service("web", json!({}), 8080))
        .expect("apply");
    consumer
        .wait_for("the updated port", |c| {
            let port = c
                .store
                .service(&kproxy_model::NamespacedName::new("ns", "web"))
                .and_then(|s| s.spec.as_ref()?.ports.first().map(|p| p.port));
            port == Some(8080)
        })
        .await;
    server.delete(&service_ref("api"));
    consumer
        .wait_for("the deletion", |c| c.logged("delete Service ns/api"))
        .await;
    server
        .apply_json(service(
            "web",
            json!({"service.kubernetes.io/service-proxy-name": "other"}),
            8080,
        ))
        .expect("apply");
    consumer
        .wait_for("the service leaving the selection", |c| {
            c.logged("delete Service ns/web")
        })
        .await;
    server.apply_json(node(NODE, "z9")).expect("apply");
    consumer
        .wait_for("the node update", |c| c.logged("apply Node node-a"))
        .await;
    assert_eq!(
        consumer.lines_starting("replace").len(),
        3,
        "{:#?}",
        consumer.log
    );
    assert!(consumer.services().is_empty());
}

#[tokio::test]
async fn a_list_longer_than_a_page_is_one_replace() {
    let server = FakeApiServer::start().await.expect("server");
    let (_dir, kubeconfig) = kubeconfig_for(&server);
    for i in 0..1201 {
        server
            .apply_json(service(&format!("s{i}"), json!({}), 80))
            .expect("apply");
    }
    server.apply_json(node(NODE, "z1")).expect("apply");
    let mut consumer = start_consumer(kubeconfig, None).await;
    consumer.initial_sync().await;
    assert_eq!(consumer.services().len(), 1201);
    assert_eq!(consumer.lines_starting("replace Service").len(), 1);
    let continued = count(&server.requests(), |r| {
        r.is_list_of(ResourceType::Services) && r.path_and_query.contains("continue=")
    });
    assert_eq!(continued, 2, "{:#?}", server.requests());
}

#[tokio::test]
async fn bookmarks_move_the_resume_point() {
    let server = FakeApiServer::start().await.expect("server");
    let (_dir, kubeconfig) = kubeconfig_for(&server);
    server
        .apply_json(service("web", json!({}), 80))
        .expect("apply");
    let mut consumer = start_consumer(kubeconfig, None).await;
    consumer.initial_sync().await;
    wait_for_watches(&server).await;

    // Changes no watch sees (another node) move the cluster's version past every watch's.
    for zone in ["z1", "z2", "z3"] {
        server.apply_json(node("node-b", zone)).expect("apply");
    }
    let bookmarked = server.resource_version();
    server.send_bookmarks();
    server.compact();
    server.drop_watches();
    server
        .apply_json(service("late", json!({}), 80))
        .expect("apply");
    consumer
        .wait_for("the change after the resume", |c| {
            c.logged("apply Service ns/late")
        })
        .await;

    let requests = server.requests();
    let resumed = requests
        .iter()
        .rfind(|r| r.is_watch_of(ResourceType::Services))
        .expect("a services watch");
    assert_eq!(resumed.resource_version, Some(bookmarked.to_string()));
    assert_eq!(
        lists_of(&server, ResourceType::Services),
        1,
        "{requests:#?}"
    );
    assert_eq!(
        consumer.lines_starting("replace").len(),
        3,
        "{:#?}",
        consumer.log
    );
    assert!(
        consumer.lines_starting("warning").is_empty(),
        "{:#?}",
        consumer.log
    );
}

#[tokio::test]
async fn a_dropped_watch_resumes_without_relisting() {
    let server = FakeApiServer::start().await.expect("server");
    let (_dir, kubeconfig) = kubeconfig_for(&server);
    server
        .apply_json(service("web", json!({}), 80))
        .expect("apply");
    let mut consumer = start_consumer(kubeconfig, None).await;
    consumer.initial_sync().await;
    wait_for_watches(&server).await;
    let listed_at = server.resource_version();

    server.drop_watches();
    server
        .apply_json(service("late", json!({}), 80))
        .expect("apply");
    server.delete(&service_ref("web"));
    consumer
        .wait_for("the changes after the drop", |c| {
            c.services() == ["ns/late"]
        })
        .await;

    let requests = server.requests();
    for resource in ResourceType::ALL {
        assert_eq!(
            lists_of(&server, resource),
            1,
            "{resource:?}: {requests:#?}"
        );
    }
    let services_watches: Vec<&RecordedRequest> = requests
        .iter()
        .filter(|r| r.is_watch_of(ResourceType::Services))
        .collect();
    assert_eq!(services_watches.len(), 2, "{requests:#?}");
    assert_eq!(
        services_watches[1].resource_version,
        Some(listed_at.to_string())
    );
    assert_eq!(
        consumer.lines_starting("replace").len(),
        3,
        "{:#?}",
        consumer.log
    );
}

#[tokio::test]
async fn an_expired_version_relists_and_converges() {
    let mut server = FakeApiServer::start().await.expect("server");
    let (_dir, kubeconfig) = kubeconfig_for(&server);
    server
        .apply_json(service("kept", json!({}), 80))
        .expect("apply");
    server
        .apply_json(service("gone", json!({}), 80))
        .expect("apply");
    let mut consumer = start_consumer(kubeconfig, None).await;
    consumer.initial_sync().await;
    assert_eq!(consumer.services(), ["ns/gone", "ns/kept"]);

    server.stop().await;
    server.delete(&service_ref("gone"));
    server
        .apply_json(service("kept", json!({}), 9090))
        .expect("apply");
    server
        .apply_json(service("new", json!({}), 80))
        .expect("apply");
    server.compact();
    server.restart().await.expect("restart");

    consumer
        .wait_for("the relist", |c| {
            c.logged("replace Service [ns/kept, ns/new]")
        })
        .await;
    assert_eq!(consumer.services(), ["ns/kept", "ns/new"]);
    let kept_port = consumer
        .store
        .service(&kproxy_model::NamespacedName::new("ns", "kept"))
        .and_then(|s| s.spec.as_ref()?.ports.first().map(|p| p.port));
    assert_eq!(kept_port, Some(9090));
    assert_eq!(lists_of(&server, ResourceType::Services), 2);
}

#[tokio::test]
async fn an_api_server_away_for_a_while_keeps_what_is_known() {
    let mut server = FakeApiServer::start().await.expect("server");
    let (_dir, kubeconfig) = kubeconfig_for(&server);
    server
        .apply_json(service("web", json!({}), 80))
        .expect("apply");
    let mut consumer = start_consumer(kubeconfig, None).await;
    consumer.initial_sync().await;

    server.stop().await;
    server
        .apply_json(service("late", json!({}), 80))
        .expect("apply");
    server.delete(&service_ref("web"));
    let during = consumer.read_for(Duration::from_secs(2)).await;
    assert!(
        during.iter().all(|line| line.starts_with("warning")),
        "only warnings while away: {during:#?}"
    );
    assert_eq!(consumer.services(), ["ns/web"], "what was known is kept");
    let service_delays: Vec<u64> = during
        .iter()
        .filter(|l| l.starts_with("warning watching Service objects"))
        .filter_map(|l| {
            l.rsplit("retrying in ")
                .next()?
                .strip_suffix(" ms")?
                .parse()
                .ok()
        })
        .collect();
    assert!(service_delays.len() >= 2, "{during:#?}");
    assert!(
        service_delays.windows(2).all(|w| w[0] <= w[1]),
        "{service_delays:?}"
    );
    assert!(
        service_delays.iter().all(|d| *d <= 500),
        "{service_delays:?}"
    );
    assert!(
        service_delays.last() > service_delays.first(),
        "{service_delays:?}"
    );

    server.restart().await.expect("restart");
    consumer
        .wait_for("the changes made while away", |c| {
            c.services() == ["ns/late"]
        })
        .await;
    assert!(
        consumer.logged("delete Service ns/web"),
        "{:#?}",
        consumer.log
    );
    assert_eq!(
        lists_of(&server, ResourceType::Services),
        1,
        "resumed, not relisted"
    );
}

#[tokio::test]
async fn master_overrides_the_kubeconfig_server() {
    let server = FakeApiServer::start().await.expect("server");
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        kproxy_testapi::kubeconfig_yaml(&format!("http://127.0.0.1:{dead_port}")),
    )
    .expect("write");
    server
        .apply_json(service("web", json!({}), 80))
        .expect("apply");
    let mut consumer = start_consumer(kubeconfig, Some(server.url())).await;
    consumer.initial_sync().await;
    assert_eq!(consumer.services(), ["ns/web"]);
}

#[tokio::test]
async fn a_missing_kubeconfig_fails_to_start() {
    let source = Source::Api(ApiSourceConfig {
        kubeconfig: Some("/nonexistent/kubeconfig".into()),
        node_name: NODE.into(),
        ..ApiSourceConfig::default()
    });
    let error = source.start().await.expect_err("no kubeconfig");
    assert!(matches!(error, SourceError::Kubeconfig { .. }), "{error}");
    assert!(
        error.to_string().contains("/nonexistent/kubeconfig"),
        "{error}"
    );
}
