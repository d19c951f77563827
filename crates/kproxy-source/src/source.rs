//! One way to start either source, and the handle the agent's sync loop reads from.

use crate::api::{self, ApiSourceConfig};
use crate::event::{SourceEvent, SourceWarning};
use crate::file::{self, FileSourceConfig};
use std::path::PathBuf;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How many events may wait for the consumer before a source pauses.
const EVENT_BUFFER: usize = 256;

/// Where the cluster state comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The Kubernetes API server.
    Api(ApiSourceConfig),
    /// Manifest files (`--cluster-file`).
    File(FileSourceConfig),
}

/// Why a source could not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The kubeconfig file could not be read or used.
    #[error("kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What kube-rs said.
        source: kube::config::KubeconfigError,
    },
    /// `--master` is not a URL.
    #[error("--master {master:?}: {message}")]
    Master {
        /// The value given.
        master: String,
        /// Why it does not parse.
        message: String,
    },
    /// Neither `--kubeconfig` nor `--master` was given, and this is not a pod.
    #[error("no --kubeconfig or --master given, and no in-cluster configuration: {0}")]
    InCluster(#[source] kube::config::InClusterError),
    /// The client could not be built from the configuration (TLS material, proxy).
    #[error("creating the API client: {0}")]
    Client(#[source] kube::Error),
    /// The cluster file could not be read or has an error.
    #[error("--cluster-file: {0}")]
    ClusterFile(#[source] SourceWarning),
}

impl Source {
    /// Starts the source. The API source connects (reads the kubeconfig, builds the
    /// client) before returning; the file source reads its manifests once, so a bad file
    /// fails here. Events then arrive on the returned handle.
    pub async fn start(self) -> Result<RunningSource, SourceError> {
        let (sender, events) = mpsc::channel(EVENT_BUFFER);
        let tasks = match self {
            Source::Api(config) => api::start(config, sender).await?,
            Source::File(config) => vec![file::start(config, sender)?],
        };
        Ok(RunningSource { events, tasks })
    }
}

/// A started source: read its events with [`RunningSource::recv`]. Dropping it stops the
/// source.
#[derive(Debug)]
pub struct RunningSource {
    events: mpsc::Receiver<SourceEvent>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningSource {
    /// The next event; `None` once the source has stopped. Cancel-safe, so it can sit in a
    /// `tokio::select!` beside the sync timer.
    pub async fn recv(&mut self) -> Option<SourceEvent> {
        self.events.recv().await
    }
}

impl Drop for RunningSource {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
