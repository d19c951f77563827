//! `/healthz`, `/livez` and `/metrics` over real HTTP on 127.0.0.1.

mod support;

use kproxy_model::IpFamily;
use kproxy_node::agent::metrics_handler;
use kproxy_node::healthz::{health_handler, ProxierHealth};
use kproxy_node::http::spawn_server;
use kproxy_node::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use support::http;

async fn server(handler: kproxy_node::http::Handler) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    spawn_server(listener, handler);
    addr
}

async fn get(addr: SocketAddr, method: &'static str, path: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || http(addr, method, path))
        .await
        .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_livez() {
    let health = Arc::new(ProxierHealth::new(Duration::from_secs(60)));
    let metrics = Arc::new(Metrics::new());
    let addr = server(health_handler(Arc::clone(&health), Arc::clone(&metrics))).await;

    let (status, body) = get(addr, "GET", "/healthz").await;
    assert_eq!(status, 200);
    assert!(body.starts_with("{\"lastUpdated\": \""), "{body}");
    assert!(body.ends_with("\"nodeEligible\": true}"), "{body}");

    health.queued(IpFamily::V4, SystemTime::now() - Duration::from_secs(61));
    let (status, body) = get(addr, "GET", "/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("\"lastUpdated\": \"0001-01-01 00:00:00 +0000 UTC\""),
        "{body}"
    );
    assert_eq!(get(addr, "GET", "/livez").await.0, 503);

    health.updated(IpFamily::V4, SystemTime::now());
    health.set_node_eligible(false);
    assert_eq!(get(addr, "GET", "/healthz").await.0, 503);
    let (status, body) = get(addr, "GET", "/livez").await;
    assert_eq!(status, 200);
    assert!(!body.contains("nodeEligible"), "{body}");

    assert_eq!(get(addr, "POST", "/healthz").await.0, 405);
    assert_eq!(get(addr, "GET", "/other").await.0, 404);
    let counted = metrics.values();
    assert_eq!(counted.healthz, [1, 2]);
    assert_eq!(counted.livez, [1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_only_on_get() {
    let metrics = Arc::new(Metrics::new());
    metrics.update(|v| v.service_changes_total = 3);
    let addr = server(metrics_handler(metrics)).await;
    let (status, body) = get(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(body
        .lines()
        .any(|l| l == "kubeproxy_sync_proxy_rules_service_changes_total 3"));
    assert_eq!(get(addr, "PUT", "/metrics").await.0, 405);
    assert_eq!(get(addr, "GET", "/").await.0, 404);
}
