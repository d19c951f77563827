//! The server handle a test holds: start, stop and restart on the same port, and the
//! controls that change the cluster or disturb the clients.

use crate::history::{ApplyError, ObjectKey};
use crate::http::handle;
use crate::kubeconfig::kubeconfig_yaml;
use crate::resource::ResourceType;
use crate::shared::{LiveMessage, RecordedRequest, Shared};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kproxy_model::{ManifestError, ObjectRef};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// What went wrong changing the fake cluster.
#[derive(Debug, thiserror::Error)]
pub enum FakeApiError {
    /// An object could not be stored.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// A manifest did not parse.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// A fake kube-apiserver on `127.0.0.1`, serving Services, EndpointSlices and Nodes with
/// the real list/watch protocol. The cluster state outlives [`stop`](Self::stop), so a test
/// can change it while the server is away and [`restart`](Self::restart) it on the same port.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    serving: Option<JoinHandle<()>>,
}

impl FakeApiServer {
    /// Starts a server on an ephemeral port of 127.0.0.1.
    pub async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Shared::new();
        let serving = Some(tokio::spawn(serve(listener, shared.clone())));
        Ok(FakeApiServer {
            shared,
            addr,
            serving,
        })
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the server listens on (kept across restarts).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Writes a kubeconfig file that points a client at this server.
    pub fn write_kubeconfig(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, kubeconfig_yaml(&self.url()))
    }

    /// Stops serving: closes the listener and cuts every open connection, as an API server
    /// that went away. Clients get connection errors until [`restart`](Self::restart).
    pub async fn stop(&mut self) {
        if let Some(serving) = self.serving.take() {
            serving.abort();
            // The task was aborted on purpose; its result says only that.
            let _ = serving.await;
        }
    }

    /// Serves again on the same port, with the same cluster state.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await?;
        self.serving = Some(tokio::spawn(serve(listener, self.shared.clone())));
        Ok(())
    }

    /// Creates or updates an object given as JSON (with `kind` and `metadata`); returns its
    /// new resourceVersion.
    pub fn apply_json(&self, object: serde_json::Value) -> Result<u64, FakeApiError> {
        let change = self.shared.mutate(|history| match history.apply(object) {
            Ok(change) => (Ok(change.clone()), vec![LiveMessage::Change(change)]),
            Err(error) => (Err(error), Vec::new()),
        })?;
        Ok(change.resource_version)
    }

    /// Applies every Service, EndpointSlice and Node of a manifest; returns the last
    /// resourceVersion.
    pub fn apply_manifest(&self, text: &str) -> Result<u64, FakeApiError> {
        let documents = kproxy_model::manifest_documents(text)?;
        let mut version = self.resource_version();
        for document in documents {
            version = self.apply_json(document)?;
        }
        Ok(version)
    }

    /// Deletes an object; returns the deletion's resourceVersion, `None` if it did not exist.
    pub fn delete(&self, object: &ObjectRef) -> Option<u64> {
        let key = ObjectKey {
            resource: ResourceType::of_kind(object.kind),
            namespace: object.namespace.clone(),
            name: object.name.clone(),
        };
        self.shared.mutate(|history| match history.delete(&key) {
            Some(change) => (
                Some(change.resource_version),
                vec![LiveMessage::Change(change)],
            ),
            None => (None, Vec::new()),
        })
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.read(|history| history.resource_version())
    }

    /// Forgets all history up to now: a watch resuming from an older resourceVersion gets
    /// an `ERROR` event with a `410 Gone` Status, and has to relist.
    pub fn compact(&self) {
        self.shared
            .mutate(|history| (history.compact(), Vec::new()))
    }

    /// Sends a `BOOKMARK` at the latest resourceVersion on every open watch that allows
    /// bookmarks.
    pub fn send_bookmarks(&self) {
        self.shared
            .mutate(|history| ((), vec![LiveMessage::Bookmark(history.resource_version())]))
    }

    /// Ends every open watch response once it has sent what was published before (the
    /// connection stays usable); clients resume from the last resourceVersion they saw.
    pub fn drop_watches(&self) {
        self.shared.mutate(|_| ((), vec![LiveMessage::HangUp]))
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// How many watch responses are streaming right now.
    pub fn open_watches(&self) -> usize {
        self.shared.open_watches()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(serving) = self.serving.take() {
            serving.abort();
        }
    }
}

/// Accepts connections until aborted; aborting drops every connection with it.
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, shared.clone()));
                }
                // Out of descriptors or a reset before accept: try again shortly.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let service = service_fn(move |request| handle(shared.clone(), request));
    // A client that hangs up mid-response is an ordinary end of a connection.
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
