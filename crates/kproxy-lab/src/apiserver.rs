//! The project's fake kube-apiserver, listening on 127.0.0.1 *inside the node namespace*
//! (where the agent can reach it): it runs on a thread of its own that entered the
//! namespace before starting the server, so its listening socket (also after a
//! [`restart`](LabApiServer::restart)) is created there. Tests drive it through this
//! handle from any thread.

use crate::error::LabError;
use crate::netns::{open_named, setns, Netns};
use kproxy_testapi::FakeApiServer;
use std::net::SocketAddr;
use std::path::Path;
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

type Call = Box<dyn FnOnce(&mut FakeApiServer) + Send>;

enum Request {
    Call(Call),
    Stop(oneshot::Sender<()>),
    Restart(oneshot::Sender<std::io::Result<()>>),
}

/// A [`FakeApiServer`] serving inside a lab namespace; stopped on drop.
pub struct LabApiServer {
    requests: Option<mpsc::UnboundedSender<Request>>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl LabApiServer {
    /// Starts the server on an ephemeral port of 127.0.0.1 inside `netns`.
    pub fn start(netns: &Netns) -> Result<LabApiServer, LabError> {
        let namespace = open_named(netns.name())?;
        let name = netns.name().to_string();
        let (requests, receiver) = mpsc::unbounded_channel();
        let (started, addr) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("apiserver-{name}"))
            .spawn(move || {
                let setup = setns(&namespace)
                    .map_err(|e| format!("entering {name}: {e}"))
                    .and_then(|()| runtime().map_err(|e| format!("runtime: {e}")));
                match setup {
                    Ok(runtime) => runtime.block_on(serve(receiver, started)),
                    Err(message) => {
                        // The receiver waits for exactly this message.
                        let _ = started.send(Err(message));
                    }
                }
            })
            .map_err(|e| LabError::io("starting the API server thread", e))?;
        let addr = addr
            .recv()
            .map_err(|_| LabError::Api("the server thread ended while starting".into()))?
            .map_err(LabError::Api)?;
        Ok(LabApiServer {
            requests: Some(requests),
            addr,
            thread: Some(thread),
        })
    }

    /// The server's address (inside the namespace).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Writes a kubeconfig pointing at the server, for the agent's `--kubeconfig`.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), LabError> {
        std::fs::write(
            path,
            kproxy_testapi::kubeconfig_yaml(&format!("http://{}", self.addr)),
        )
        .map_err(|source| LabError::File {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Runs `f` on the server (apply, delete, compact, drop watches, ...) and returns what
    /// it returns.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut FakeApiServer) -> R + Send + 'static,
    ) -> Result<R, LabError> {
        let (reply, result) = std::sync::mpsc::channel();
        self.send(Request::Call(Box::new(move |server| {
            // The caller waits on this channel; it only goes away with the caller.
            let _ = reply.send(f(server));
        })))?;
        result.recv().map_err(|_| gone())
    }

    /// Applies every object of a manifest; returns the last resourceVersion.
    pub fn apply_manifest(&self, text: &str) -> Result<u64, LabError> {
        let text = text.to_string();
        self.call(move |server| server.apply_manifest(&text))?
            .map_err(|e| LabError::Api(e.to_string()))
    }

    /// Stops serving (connections cut), as an API server that went away.
    pub fn stop(&self) -> Result<(), LabError> {
        let (done, wait) = oneshot::channel();
        self.send(Request::Stop(done))?;
        wait.blocking_recv().map_err(|_| gone())
    }

    /// Serves again on the same port, with the same cluster state.
    pub fn restart(&self) -> Result<(), LabError> {
        let (done, wait) = oneshot::channel();
        self.send(Request::Restart(done))?;
        wait.blocking_recv()
            .map_err(|_| gone())?
            .map_err(|e| LabError::io("restarting the API server", e))
    }

    fn send(&self, request: Request) -> Result<(), LabError> {
        self.requests
            .as_ref()
            .ok_or_else(gone)?
            .send(request)
            .map_err(|_| gone())
    }
}

impl Drop for LabApiServer {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(thread) = self.thread.take() {
            // The thread ends when its request channel closes; a panic there is reported
            // by the test that caused it.
            let _ = thread.join();
        }
    }
}

fn gone() -> LabError {
    LabError::Api("the server thread is gone".into())
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

async fn serve(
    mut requests: mpsc::UnboundedReceiver<Request>,
    started: std::sync::mpsc::Sender<Result<SocketAddr, String>>,
) {
    let mut server = match FakeApiServer::start().await {
        Ok(server) => server,
        Err(e) => {
            // The starter waits for exactly this message.
            let _ = started.send(Err(format!("starting: {e}")));
            return;
        }
    };
    // As above.
    let _ = started.send(Ok(server.addr()));
    while let Some(request) = requests.recv().await {
        match request {
            Request::Call(call) => call(&mut server),
            Request::Stop(done) => {
                server.stop().await;
                let _ = done.send(());
            }
            Request::Restart(done) => {
                let _ = done.send(server.restart().await);
            }
        }
    }
    server.stop().await;
}
