//! The fake server as a kube-rs client sees it.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kproxy_model::{ObjectKind, ObjectRef};
use kproxy_testapi::{FakeApiServer, ResourceType};
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::{Api, Client, Config};
use serde_json::json;
use std::time::Duration;

const KUBE_PROXY_SELECTOR: &str =
    "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name";

fn client(server: &FakeApiServer) -> Client {
    let url = server.url().parse().expect("server URL");
    Client::try_from(Config::new(url)).expect("client")
}

fn service(namespace: &str, name: &str, labels: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 80}]},
    })
}

fn names<K: kube::Resource>(items: &[K]) -> Vec<String> {
    items
        .iter()
        .map(|i| i.meta().name.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn lists_honour_selectors_and_namespaces() {
    let server = FakeApiServer::start().await.expect("server");
    server
        .apply_json(service("a", "web", json!({})))
        .expect("apply");
    server
        .apply_json(service("b", "db", json!({})))
        .expect("apply");
    server
        .apply_json(service(
            "a",
            "headless",
            json!({"service.kubernetes.io/headless": ""}),
        ))
        .expect("apply");
    let client = client(&server);

    let selected = Api::<Service>::all(client.clone())
        .list(&ListParams::default().labels(KUBE_PROXY_SELECTOR))
        .await
        .expect("list");
    assert_eq!(names(&selected.items), ["web", "db"]);
    assert_eq!(
        selected.metadata.resource_version,
        Some(server.resource_version().to_string())
    );
    let in_a = Api::<Service>::namespaced(client, "a")
        .list(&ListParams::default())
        .await
        .expect("list");
    assert_eq!(names(&in_a.items), ["headless", "web"]);
}

#[tokio::test]
async fn lists_come_in_pages_at_one_version() {
    let server = FakeApiServer::start().await.expect("server");
    for name in ["s1", "s2", "s3", "s4", "s5"] {
        server
            .apply_json(service("ns", name, json!({})))
            .expect("apply");
    }
    let version = server.resource_version().to_string();
    let api = Api::<Service>::all(client(&server));
    let mut params = ListParams::default().limit(2);
    let mut pages = Vec::new();
    loop {
        let page = api.list(&params).await.expect("page");
        pages.push(names(&page.items));
        assert_eq!(page.metadata.resource_version.as_deref(), Some(&*version));
        server
            .apply_json(service("ns", "s0-late", json!({})))
            .expect("apply between pages");
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(pages, [vec!["s1", "s2"], vec!["s3", "s4"], vec!["s5"]]);
}

#[tokio::test]
async fn nodes_by_field_selector_and_by_name() {
    let server = FakeApiServer::start().await.expect("server");
    for name in ["node-a", "node-b"] {
        server
            .apply_json(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}))
            .expect("apply");
    }
    let nodes = Api::<Node>::all(client(&server));
    let listed = nodes
        .list(&ListParams::default().fields("metadata.name=node-b"))
        .await
        .expect("list");
    assert_eq!(names(&listed.items), ["node-b"]);
    assert_eq!(
        nodes
            .get("node-a")
            .await
            .expect("get")
            .metadata
            .name
            .as_deref(),
        Some("node-a")
    );
    let missing = nodes.get("node-z").await.expect_err("no such node");
    assert!(missing.to_string().contains("not found"), "{missing}");
}

#[tokio::test]
async fn watch_streams_changes_after_the_version_and_ends_at_its_timeout() {
    let server = FakeApiServer::start().await.expect("server");
    let from = server
        .apply_json(service("a", "web", json!({})))
        .expect("apply");
    server
        .apply_json(service("a", "web", json!({"v": "2"})))
        .expect("apply");
    server.delete(&ObjectRef {
        kind: ObjectKind::Service,
        namespace: "a".into(),
        name: "web".into(),
    });
    let services = Api::<Service>::all(client(&server));
    let events: Vec<WatchEvent<Service>> = services
        .watch(&WatchParams::default().timeout(1), &from.to_string())
        .await
        .expect("watch")
        .try_collect()
        .await
        .expect("events");
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            WatchEvent::Bookmark(_) => "BOOKMARK",
            WatchEvent::Error(_) => "ERROR",
        })
        .collect();
    assert_eq!(kinds, ["MODIFIED", "DELETED"]);
}

#[tokio::test]
async fn live_events_bookmarks_and_hangups() {
    let server = FakeApiServer::start().await.expect("server");
    let slices = Api::<EndpointSlice>::all(client(&server));
    let from = server.resource_version().to_string();
    let mut stream = slices
        .watch(&WatchParams::default().timeout(10), &from)
        .await
        .expect("watch")
        .boxed();
    server
        .apply_json(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                           "metadata": {"name": "web-1", "namespace": "a"}, "addressType": "IPv4", "endpoints": []}))
        .expect("apply");
    let added = stream.next().await.expect("an event").expect("ok");
    assert!(
        matches!(added, WatchEvent::Added(ref s) if s.metadata.name.as_deref() == Some("web-1"))
    );
    server.send_bookmarks();
    match stream.next().await.expect("an event").expect("ok") {
        WatchEvent::Bookmark(bookmark) => {
            assert_eq!(
                bookmark.metadata.resource_version,
                server.resource_version().to_string()
            )
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }
    assert_eq!(server.open_watches(), 1);
    server.drop_watches();
    assert!(stream.next().await.is_none(), "a dropped watch ends");
    assert!(server
        .requests()
        .iter()
        .any(|r| r.is_watch_of(ResourceType::EndpointSlices)));
}

#[tokio::test]
async fn compacted_history_answers_410_in_an_error_event() {
    let server = FakeApiServer::start().await.expect("server");
    let old = server
        .apply_json(service("a", "web", json!({})))
        .expect("apply");
    server
        .apply_json(service("a", "db", json!({})))
        .expect("apply");
    server.compact();
    let services = Api::<Service>::all(client(&server));
    let mut stream = services
        .watch(&WatchParams::default().timeout(5), &old.to_string())
        .await
        .expect("the watch itself is accepted")
        .boxed();
    match stream.next().await.expect("an event").expect("ok") {
        WatchEvent::Error(status) => assert_eq!(status.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn stop_and_restart_on_the_same_port_keeps_the_cluster() {
    let mut server = FakeApiServer::start().await.expect("server");
    server
        .apply_json(service("a", "web", json!({})))
        .expect("apply");
    let client = client(&server);
    let services = Api::<Service>::all(client.clone());
    server.stop().await;
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        services.list(&ListParams::default()),
    )
    .await
    .expect("refused promptly");
    assert!(refused.is_err());
    server.restart().await.expect("restart");
    let listed = services.list(&ListParams::default()).await.expect("list");
    assert_eq!(names(&listed.items), ["web"]);
    let version = client.apiserver_version().await.expect("version");
    assert_eq!(version.major, "1");
}
