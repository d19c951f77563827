//! The file source: a directory of manifests, edited while the source runs.

mod support;

use kproxy_source::{FileSourceConfig, Source, SourceError};
use std::path::Path;
use std::time::Duration;
use support::Consumer;

const WEB: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: ns}\n\
                   spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}\n";
const WEB_SLICE: &str = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
                         metadata: {name: web-1, namespace: ns, labels: {kubernetes.io/service-name: web}}\n\
                         addressType: IPv4\nendpoints: [{addresses: [10.0.1.5]}]\n";
const API: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: ns}\n\
                   spec: {clusterIP: 10.96.0.11, ports: [{port: 443}]}\n";
const BAD_API: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: ns}\n\
                       spec: {ports: [{port: eighty}]}\n";
const NODE_JSON: &str = r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a"}}"#;

/// Writes a file the way a ConfigMap volume or a careful editor does: to a temporary name,
/// then renamed into place, so the poller never reads half a file.
fn write_atomically(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).expect("write");
    std::fs::rename(&temporary, path).expect("rename");
}

fn documents(parts: &[&str]) -> String {
    parts.join("---\n")
}

async fn start(path: &Path) -> Result<Consumer, SourceError> {
    let config = FileSourceConfig {
        path: path.to_path_buf(),
        poll_interval: Duration::from_millis(20),
    };
    Ok(Consumer::new(Source::File(config).start().await?))
}

#[tokio::test]
async fn a_directory_of_manifests_followed_through_edits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let services = dir.path().join("services.yaml");
    let node = dir.path().join("node.json");
    write_atomically(&services, &documents(&[WEB, WEB_SLICE]));
    write_atomically(&node, NODE_JSON);

    let mut consumer = start(dir.path()).await.expect("starts");
    consumer.initial_sync().await;
    assert_eq!(
        consumer.log,
        [
            "replace Service [ns/web]",
            "replace EndpointSlice [ns/web-1]",
            "replace Node [node-a]",
            "synced Service",
            "synced EndpointSlice",
            "synced Node",
        ]
    );

    write_atomically(&services, &documents(&[WEB, WEB_SLICE, API]));
    consumer
        .wait_for("the added service", |c| {
            c.logged("replace Service [ns/web, ns/api]")
        })
        .await;
    assert_eq!(
        consumer.lines_starting("replace").len(),
        4,
        "only the changed kind: {:#?}",
        consumer.log
    );

    write_atomically(&services, &documents(&[WEB, WEB_SLICE, BAD_API]));
    consumer
        .wait_for("the error report", |c| {
            !c.lines_starting("warning").is_empty()
        })
        .await;
    let warning = &consumer.lines_starting("warning")[0];
    assert!(warning.contains("services.yaml"), "{warning}");
    assert!(warning.contains("document 3 (Service api)"), "{warning}");
    assert!(warning.contains("\"eighty\""), "{warning}");
    assert_eq!(
        consumer.services(),
        ["ns/api", "ns/web"],
        "the last good content is kept"
    );

    write_atomically(&services, WEB);
    std::fs::remove_file(&node).expect("remove");
    consumer
        .wait_for("the fixed file and the removed node", |c| {
            c.services() == ["ns/web"] && c.store.node().is_none()
        })
        .await;
    assert!(
        consumer.logged("replace EndpointSlice []"),
        "{:#?}",
        consumer.log
    );
    assert_eq!(
        consumer.lines_starting("warning").len(),
        1,
        "{:#?}",
        consumer.log
    );
}

#[tokio::test]
async fn a_single_file_rewritten_and_vanishing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("cluster.yaml");
    write_atomically(&file, WEB);
    let mut consumer = start(&file).await.expect("starts");
    consumer.initial_sync().await;
    assert_eq!(consumer.services(), ["ns/web"]);

    write_atomically(&file, WEB);
    let after_identical_rewrite = consumer.read_for(Duration::from_millis(200)).await;
    assert!(
        after_identical_rewrite.is_empty(),
        "{after_identical_rewrite:#?}"
    );

    std::fs::remove_file(&file).expect("remove");
    consumer
        .wait_for("the missing-file report", |c| {
            !c.lines_starting("warning").is_empty()
        })
        .await;
    assert_eq!(
        consumer.services(),
        ["ns/web"],
        "kept while the file is away"
    );
    write_atomically(&file, API);
    consumer
        .wait_for("the file's return", |c| c.services() == ["ns/api"])
        .await;
    assert_eq!(
        consumer.lines_starting("warning").len(),
        1,
        "reported once: {:#?}",
        consumer.log
    );
}

#[tokio::test]
async fn a_bad_file_at_start_is_an_error_naming_the_document() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("cluster.yaml");
    write_atomically(&file, &documents(&[WEB, BAD_API]));
    let error = start(&file)
        .await
        .err()
        .expect("a bad manifest fails the start");
    let message = error.to_string();
    assert!(message.starts_with("--cluster-file: "), "{message}");
    assert!(message.contains("document 2 (Service api)"), "{message}");

    let missing = start(&dir.path().join("missing.yaml"))
        .await
        .err()
        .expect("no such file");
    assert!(matches!(missing, SourceError::ClusterFile(_)), "{missing}");
}
