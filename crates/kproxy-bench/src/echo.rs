//! The echo server the measured connections end at: one per backend pod on
//! [`BENCH_PORT`](crate::cluster::BENCH_PORT), answering each connection's request at once
//! and closing. (The lab's own pod servers poll for new connections every 20 ms, which
//! would swamp the figures.) Stopped and joined on drop.

use crate::error::BenchError;
use kproxy_lab::Netns;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What a client sends.
pub const REQUEST: &[u8] = b"ping\n";
/// What the server answers.
pub const RESPONSE: &[u8] = b"pong\n";
/// How long a blocked `accept` waits before looking at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);
/// How long the server waits for a connected client's request.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);

/// A running echo server in one pod.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Binds `0.0.0.0:port` inside `pod` and serves on a thread of its own.
    pub fn start(pod: &Netns, port: u16) -> Result<EchoServer, BenchError> {
        let listener = pod.enter(|| bind(port))??;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name(format!("echo-{}", pod.name()))
            .spawn({
                let stop = Arc::clone(&stop);
                move || serve(&listener, &stop)
            })
            .map_err(|e| BenchError::io("starting an echo server thread", e))?;
        Ok(EchoServer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // A server thread that panicked has nothing left to clean up.
            let _ = thread.join();
        }
    }
}

fn bind(port: u16) -> Result<TcpListener, BenchError> {
    let what = || format!("binding the echo server to port {port}");
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| BenchError::io(what(), e))?;
    socket
        .set_reuse_address(true)
        .map_err(|e| BenchError::io(what(), e))?;
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    socket
        .bind(&addr.into())
        .map_err(|e| BenchError::io(what(), e))?;
    socket.listen(1024).map_err(|e| BenchError::io(what(), e))?;
    // On Linux a receive timeout bounds `accept` too: the loop sees the stop flag.
    socket
        .set_read_timeout(Some(STOP_POLL))
        .map_err(|e| BenchError::io(what(), e))?;
    Ok(socket.into())
}

fn serve(listener: &TcpListener, stop: &AtomicBool) {
    let mut request = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        // Timeouts wake the loop; a client that left early needs no answer.
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
            if matches!(stream.read(&mut request), Ok(n) if n > 0) {
                let _ = stream.write_all(RESPONSE);
            }
        }
    }
}
