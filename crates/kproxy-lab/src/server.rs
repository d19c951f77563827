//! The servers a pod runs: TCP and UDP on one port, both families, answering every
//! connection or datagram with one line that names the pod and the client address it saw
//! (`pod=pod-1 client=10.244.0.1`), so a test knows where a connection landed and whether
//! it was masqueraded.

use crate::error::LabError;
use crate::netns::Netns;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::Write;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a server looks at its stop flag.
const POLL: Duration = Duration::from_millis(20);

/// The reply line for a client.
pub fn reply_line(pod: &str, client: IpAddr) -> String {
    format!("pod={pod} client={}\n", client.to_canonical())
}

/// Reads a reply line back: the pod's name and the client address it saw.
pub fn parse_reply(text: &str) -> Option<(String, IpAddr)> {
    let mut pod = None;
    let mut client = None;
    for word in text.split_whitespace() {
        if let Some(name) = word.strip_prefix("pod=") {
            pod = Some(name.to_string());
        } else if let Some(ip) = word.strip_prefix("client=") {
            client = ip.parse().ok();
        }
    }
    Some((pod?, client?))
}

/// A pod's TCP and UDP servers; stopped (threads joined) on drop.
pub struct PodServers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl PodServers {
    /// Binds `[::]:port` (dual-stack) for TCP and UDP inside `netns` and serves as `pod`.
    pub fn start(netns: &Netns, pod: &str, port: u16) -> Result<PodServers, LabError> {
        let (tcp, udp) = netns.enter(|| bind_both(port))??;
        let stop = Arc::new(AtomicBool::new(false));
        let threads = vec![
            spawn_named(format!("{pod}-tcp"), {
                let (stop, pod) = (Arc::clone(&stop), pod.to_string());
                move || serve_tcp(&tcp, &pod, &stop)
            })?,
            spawn_named(format!("{pod}-udp"), {
                let (stop, pod) = (Arc::clone(&stop), pod.to_string());
                move || serve_udp(&udp, &pod, &stop)
            })?,
        ];
        Ok(PodServers { stop, threads })
    }
}

impl Drop for PodServers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            // A server thread that panicked has nothing left to clean up.
            let _ = thread.join();
        }
    }
}

fn spawn_named(
    name: String,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, LabError> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|e| LabError::io(format!("starting server thread {name}"), e))
}

fn bind_both(port: u16) -> Result<(TcpListener, UdpSocket), LabError> {
    let addr = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
    let bind = |kind: Type, protocol: Protocol| -> std::io::Result<Socket> {
        let socket = Socket::new(Domain::IPV6, kind, Some(protocol))?;
        socket.set_only_v6(false)?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        Ok(socket)
    };
    let what = |proto: &str| format!("binding {proto} [::]:{port}");
    let tcp = bind(Type::STREAM, Protocol::TCP).map_err(|e| LabError::io(what("tcp"), e))?;
    tcp.listen(128).map_err(|e| LabError::io(what("tcp"), e))?;
    tcp.set_nonblocking(true)
        .map_err(|e| LabError::io(what("tcp"), e))?;
    let udp = bind(Type::DGRAM, Protocol::UDP).map_err(|e| LabError::io(what("udp"), e))?;
    udp.set_read_timeout(Some(POLL))
        .map_err(|e| LabError::io(what("udp"), e))?;
    Ok((tcp.into(), udp.into()))
}

fn serve_tcp(listener: &TcpListener, pod: &str, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, peer)) => {
                // A client that already left does not need its answer.
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = stream.write_all(reply_line(pod, peer.ip()).as_bytes());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            // Aborted handshakes and the like: wait for the next client.
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

fn serve_udp(socket: &UdpSocket, pod: &str, stop: &AtomicBool) {
    let mut buffer = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((_, peer)) = socket.recv_from(&mut buffer) {
            // A datagram reply that cannot be sent is a lost datagram, as on a network.
            let _ = socket.send_to(reply_line(pod, peer.ip()).as_bytes(), peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_read_back() {
        let mapped: IpAddr = "::ffff:10.244.0.1".parse().expect("address");
        let line = reply_line("pod-2", mapped);
        assert_eq!(line, "pod=pod-2 client=10.244.0.1\n");
        let plain: IpAddr = "10.244.0.1".parse().expect("address");
        assert_eq!(parse_reply(&line), Some(("pod-2".to_string(), plain)));
        assert_eq!(parse_reply("garbage"), None);
    }
}
