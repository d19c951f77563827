//! Shared test helpers: a small cluster, raw HTTP GETs, store events from manifests, and
//! throwaway network namespaces.

#![allow(dead_code)]

pub mod held_lock;
pub mod netns;

use kproxy_model::{parse_manifest, StoreEvent};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A node, a ClusterIP service with two endpoints, a UDP NodePort service, and a
/// LoadBalancer with externalTrafficPolicy Local and a health check node port.
pub const CLUSTER: &str = concat!(
    include_str!("../fixtures/cluster-base.yaml"),
    r#"---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: default}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.30
  externalTrafficPolicy: Local
  healthCheckNodePort: HC_PORT
  ports: [{name: http, port: 80, protocol: TCP, nodePort: 30080}]
status: {loadBalancer: {ingress: [{ip: 203.0.113.7}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: lb-1, namespace: default, labels: {kubernetes.io/service-name: lb}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: ["10.244.1.9"], conditions: {ready: true}, nodeName: node-0}
"#
);

/// The cluster with the health check node port filled in.
pub fn cluster(hc_port: u16) -> String {
    CLUSTER.replace("HC_PORT", &hc_port.to_string())
}

/// An EndpointSlice `NAME-1` of service `name` (port `http` 8080/TCP) with one ready
/// endpoint `ip` on `node`.
pub fn one_endpoint_slice(name: &str, ip: &str, node: &str) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\n\
         endpoints:\n- {{addresses: [\"{ip}\"], conditions: {{ready: true}}, nodeName: {node}}}\n"
    )
}

/// Store events for every object of a manifest.
pub fn events(manifest: &str) -> Vec<StoreEvent> {
    parse_manifest(manifest)
        .expect("test manifest parses")
        .objects
        .into_iter()
        .map(StoreEvent::Apply)
        .collect()
}

/// An HTTP/1.1 request; returns the status code and body.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    try_http(addr, method, path).expect("connect")
}

/// An HTTP/1.1 request; `None` when nothing listens yet.
pub fn try_http(addr: SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("ephemeral port")
}

/// Polls `check` every 100 ms for up to 90 s (generous: CI machines are slow and other
/// tests may hold the xtables lock for a while).
pub async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `/metrics` has this line (the sync that wrote the kernel has finished).
pub async fn wait_for_metric(addr: SocketAddr, line: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let body = tokio::task::spawn_blocking(move || try_http(addr, "GET", "/metrics"))
            .await
            .expect("join")
            .map(|(_, body)| body)
            .unwrap_or_default();
        if body.lines().any(|l| l == line) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {line:?}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A GET from a blocking thread.
pub async fn get(addr: SocketAddr, path: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || http(addr, "GET", path))
        .await
        .expect("join")
}
