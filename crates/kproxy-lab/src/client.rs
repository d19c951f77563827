//! Clients that run from a namespace: a TCP connection, or a UDP exchange on a socket
//! that keeps its source port, each ending in an [`Outcome`].

use crate::error::LabError;
use crate::netns::Netns;
use crate::server::parse_reply;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::fmt;
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

/// Where a connection landed: the pod that answered and the client address it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landing {
    /// The answering pod's name.
    pub pod: String,
    /// The client address the pod saw (the node's when masqueraded).
    pub seen_client_ip: IpAddr,
}

/// What became of one connection attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A pod answered.
    Landed(Landing),
    /// Refused at once (a TCP reset or ICMP port unreachable, as REJECT sends).
    Refused,
    /// Nothing came back in time (dropped).
    Timeout,
    /// Anything else: another error, or an answer that was not a pod's reply line.
    Failed(String),
}

impl Outcome {
    /// The landing, if a pod answered.
    pub fn landing(&self) -> Option<&Landing> {
        match self {
            Outcome::Landed(landing) => Some(landing),
            _ => None,
        }
    }

    /// The answering pod's name, if one answered.
    pub fn pod(&self) -> Option<&str> {
        self.landing().map(|l| l.pod.as_str())
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Landed(l) => {
                write!(f, "landed on {} (saw client {})", l.pod, l.seen_client_ip)
            }
            Outcome::Refused => f.write_str("refused"),
            Outcome::Timeout => f.write_str("timed out"),
            Outcome::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// One connection attempt: where to, from which source address (the namespace's choice
/// when `None`), and how long to wait for the connection and for the reply.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// The destination.
    pub target: SocketAddr,
    /// The source address to bind, if not the default.
    pub source: Option<IpAddr>,
    /// The deadline for connecting, and again for the reply.
    pub timeout: Duration,
}

impl Probe {
    /// A probe to `target` from the default source, with a 2 s deadline.
    pub fn to(target: SocketAddr) -> Probe {
        Probe {
            target,
            source: None,
            timeout: Duration::from_secs(2),
        }
    }

    /// The same probe from another source address.
    pub fn from_source(self, source: IpAddr) -> Probe {
        Probe {
            source: Some(source),
            ..self
        }
    }

    /// The same probe with another deadline.
    pub fn with_timeout(self, timeout: Duration) -> Probe {
        Probe { timeout, ..self }
    }
}

/// Connects over TCP from `netns` and reads the pod's reply.
pub fn tcp_probe(netns: &Netns, probe: Probe) -> Result<Outcome, LabError> {
    let socket = netns.enter(|| new_socket(probe, Type::STREAM, Protocol::TCP))??;
    if let Err(e) = socket.connect_timeout(&SockAddr::from(probe.target), probe.timeout) {
        return Ok(error_outcome(&e));
    }
    if let Err(e) = socket.set_read_timeout(Some(probe.timeout)) {
        return Ok(Outcome::Failed(e.to_string()));
    }
    let mut stream: std::net::TcpStream = socket.into();
    let mut text = String::new();
    Ok(match stream.read_to_string(&mut text) {
        Ok(_) => reply_outcome(&text),
        Err(e) => error_outcome(&e),
    })
}

/// A UDP socket in a namespace, connected to one target; its source port stays the same
/// across exchanges, so the kernel sees one conntrack flow.
pub struct UdpSession {
    socket: UdpSocket,
    timeout: Duration,
}

impl UdpSession {
    /// Opens the socket inside `netns` and connects it to the probe's target.
    pub fn open(netns: &Netns, probe: Probe) -> Result<UdpSession, LabError> {
        let socket = netns.enter(|| new_socket(probe, Type::DGRAM, Protocol::UDP))??;
        socket
            .connect(&SockAddr::from(probe.target))
            .map_err(|e| LabError::io(format!("connecting UDP to {}", probe.target), e))?;
        socket
            .set_read_timeout(Some(probe.timeout))
            .map_err(|e| LabError::io("UDP read timeout", e))?;
        Ok(UdpSession {
            socket: socket.into(),
            timeout: probe.timeout,
        })
    }

    /// The local address (source port included).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()
    }

    /// Sends one datagram and waits up to the probe's deadline for the answer.
    pub fn exchange(&self) -> Outcome {
        if let Err(e) = self.socket.send(b"ping\n") {
            return error_outcome(&e);
        }
        let mut buffer = [0u8; 512];
        match self.socket.recv(&mut buffer) {
            Ok(n) => reply_outcome(&String::from_utf8_lossy(&buffer[..n])),
            Err(e) => error_outcome(&e),
        }
    }

    /// The deadline of each exchange.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// A single UDP exchange from `netns` on a fresh socket.
pub fn udp_probe(netns: &Netns, probe: Probe) -> Result<Outcome, LabError> {
    Ok(UdpSession::open(netns, probe)?.exchange())
}

fn new_socket(probe: Probe, kind: Type, protocol: Protocol) -> Result<Socket, LabError> {
    let domain = Domain::for_address(probe.target);
    let what = || format!("socket for {}", probe.target);
    let socket = Socket::new(domain, kind, Some(protocol)).map_err(|e| LabError::io(what(), e))?;
    if let Some(source) = probe.source {
        socket
            .bind(&SockAddr::from(SocketAddr::new(source, 0)))
            .map_err(|e| LabError::io(format!("binding source {source}"), e))?;
    }
    Ok(socket)
}

fn reply_outcome(text: &str) -> Outcome {
    match parse_reply(text) {
        Some((pod, seen_client_ip)) => Outcome::Landed(Landing {
            pod,
            seen_client_ip,
        }),
        None => Outcome::Failed(format!("unexpected reply {text:?}")),
    }
}

fn error_outcome(error: &std::io::Error) -> Outcome {
    match error.kind() {
        ErrorKind::ConnectionRefused => Outcome::Refused,
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Outcome::Timeout,
        _ => Outcome::Failed(error.to_string()),
    }
}
