//! The file source (`--cluster-file`, a kproxy extension): manifests in a file or a
//! directory, polled for changes; each change publishes a `Replace` per kind whose content
//! changed. A file with errors is reported and its previous good content kept.

mod catalog;
mod scan;

use crate::event::{SourceEvent, SourceWarning};
use crate::source::SourceError;
use catalog::Catalog;
use kproxy_model::{parse_manifest, ObjectKind};
use scan::{manifest_files, Fingerprint};
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Which manifests to read, and how often to look for changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSourceConfig {
    /// A manifest file, or a directory whose `.yaml`, `.yml` and `.json` files are read.
    pub path: PathBuf,
    /// How often file metadata is checked for changes.
    pub poll_interval: Duration,
}

impl FileSourceConfig {
    /// Reads `path`, checking for changes every second.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSourceConfig {
            path: path.into(),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// Reads the manifests once (any error fails the start, so a bad `--cluster-file` stops
/// the agent with the parser's message), then polls in a task.
pub(crate) fn start(
    config: FileSourceConfig,
    events: mpsc::Sender<SourceEvent>,
) -> Result<JoinHandle<()>, SourceError> {
    let mut catalog = Catalog::default();
    let first = scan(&config.path, &mut catalog)
        .map_err(|error| SourceError::ClusterFile(unreadable(&config.path, error)))?;
    let mut initial = Vec::new();
    for event in first {
        match event {
            SourceEvent::Warning(warning) => return Err(SourceError::ClusterFile(warning)),
            other => initial.push(other),
        }
    }
    initial.extend(
        [
            ObjectKind::Service,
            ObjectKind::EndpointSlice,
            ObjectKind::Node,
        ]
        .map(SourceEvent::Synced),
    );
    Ok(tokio::spawn(poll(config, catalog, initial, events)))
}

/// Sends the initial events, then rescans every poll interval until the consumer leaves.
async fn poll(
    config: FileSourceConfig,
    mut catalog: Catalog,
    initial: Vec<SourceEvent>,
    events: mpsc::Sender<SourceEvent>,
) {
    let mut pending = initial;
    let mut listing_failed = false;
    loop {
        for event in pending.drain(..) {
            if events.send(event).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(config.poll_interval).await;
        let root = config.path.clone();
        let scanned = tokio::task::spawn_blocking(move || {
            let result = scan(&root, &mut catalog);
            (catalog, result)
        })
        .await;
        let Ok((returned, result)) = scanned else {
            return;
        };
        catalog = returned;
        match result {
            Ok(found) => {
                listing_failed = false;
                pending = found;
            }
            // Reported once per outage; everything read before is kept meanwhile.
            Err(error) if !listing_failed => {
                listing_failed = true;
                pending = vec![SourceEvent::Warning(unreadable(&config.path, error))];
            }
            Err(_) => {}
        }
    }
}

/// Reads new and changed files; returns warnings for bad ones, then the `Replace` events.
/// Fails only when `root` itself cannot be listed.
fn scan(root: &Path, catalog: &mut Catalog) -> io::Result<Vec<SourceEvent>> {
    let files = manifest_files(root)?;
    let mut events = Vec::new();
    for file in &files {
        // A file that vanished since the listing is handled by the next scan.
        let Ok(fingerprint) = Fingerprint::of(file) else {
            continue;
        };
        if !catalog.is_stale(file, fingerprint) {
            continue;
        }
        match std::fs::read_to_string(file).map(|text| parse_manifest(&text)) {
            Ok(Ok(manifest)) => catalog.set_content(file, fingerprint, manifest.objects),
            Ok(Err(error)) => {
                catalog.keep_content(file, fingerprint);
                events.push(SourceEvent::Warning(SourceWarning::Manifest {
                    path: file.clone(),
                    error,
                }));
            }
            Err(error) => {
                catalog.keep_content(file, fingerprint);
                events.push(SourceEvent::Warning(unreadable(file, error)));
            }
        }
    }
    catalog.retain_files(&files.into_iter().collect::<BTreeSet<_>>());
    events.extend(catalog.publish().into_iter().map(SourceEvent::Store));
    Ok(events)
}

fn unreadable(path: &Path, error: io::Error) -> SourceWarning {
    SourceWarning::Unreadable {
        path: path.to_path_buf(),
        error,
    }
}
