//! Plain values for IPVS virtual servers and real servers, independent of how
//! they reach the kernel.

use std::fmt;
use std::net::IpAddr;

/// A transport protocol IPVS balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (IPPROTO_TCP, 6).
    Tcp,
    /// UDP (IPPROTO_UDP, 17).
    Udp,
    /// SCTP (IPPROTO_SCTP, 132).
    Sctp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u16 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// The protocol with IP protocol number `n`, if IPVS mode uses it.
    pub fn from_number(n: u16) -> Option<Protocol> {
        match n {
            6 => Some(Protocol::Tcp),
            17 => Some(Protocol::Udp),
            132 => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// Lower-case name as ipset and ipvsadm write it (`tcp`, `udp`, `sctp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// An IPVS scheduling algorithm.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Scheduler {
    /// Round robin, kube-proxy's default.
    #[default]
    RoundRobin,
    /// Weighted round robin.
    WeightedRoundRobin,
    /// Least connection.
    LeastConnection,
    /// Source hashing (see [`SchedFlags`]).
    SourceHashing,
    /// Maglev hashing (see [`SchedFlags`]).
    MaglevHashing,
    /// Any other scheduler module, by its kernel name.
    Other(String),
}

impl Scheduler {
    /// The kernel's name for the scheduler (`rr`, `wrr`, ...).
    pub fn name(&self) -> &str {
        match self {
            Scheduler::RoundRobin => "rr",
            Scheduler::WeightedRoundRobin => "wrr",
            Scheduler::LeastConnection => "lc",
            Scheduler::SourceHashing => "sh",
            Scheduler::MaglevHashing => "mh",
            Scheduler::Other(name) => name,
        }
    }

    /// The scheduler the kernel calls `name`.
    pub fn from_name(name: &str) -> Scheduler {
        match name {
            "rr" => Scheduler::RoundRobin,
            "wrr" => Scheduler::WeightedRoundRobin,
            "lc" => Scheduler::LeastConnection,
            "sh" => Scheduler::SourceHashing,
            "mh" => Scheduler::MaglevHashing,
            other => Scheduler::Other(other.to_string()),
        }
    }
}

/// Flags of the hashing schedulers `sh` and `mh` (ipvsadm's `sh-fallback`,
/// `sh-port`, `mh-fallback`, `mh-port`); the kernel ignores them for others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SchedFlags {
    /// Pick another real server when the hashed one is unavailable (weight 0 or overloaded).
    pub fallback: bool,
    /// Hash the source port too, not only the source address.
    pub port: bool,
}

/// Session affinity: connections from one client (network) stick to one real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Persistence {
    /// How long a client stays on its real server after its last connection, in seconds.
    pub timeout_secs: u32,
    /// Client addresses sharing this prefix length count as one client (32 or 128 for one address).
    pub prefix_len: u8,
}

/// How IPVS forwards packets to a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum ForwardMethod {
    /// NAT (masquerading), the only method kube-proxy uses.
    #[default]
    Masquerade,
    /// Deliver to a local socket.
    Local,
    /// IP-in-IP tunnelling.
    Tunnel,
    /// Direct routing (gatewaying).
    DirectRoute,
}

impl ForwardMethod {
    /// The kernel's `IP_VS_CONN_F_*` forwarding value.
    pub fn code(self) -> u32 {
        match self {
            ForwardMethod::Masquerade => 0,
            ForwardMethod::Local => 1,
            ForwardMethod::Tunnel => 2,
            ForwardMethod::DirectRoute => 3,
        }
    }

    /// The method for the forwarding bits of a kernel connection-flags value.
    pub fn from_code(code: u32) -> Option<ForwardMethod> {
        match code & 0x7 {
            0 => Some(ForwardMethod::Masquerade),
            1 => Some(ForwardMethod::Local),
            2 => Some(ForwardMethod::Tunnel),
            3 => Some(ForwardMethod::DirectRoute),
            _ => None,
        }
    }
}

/// Identity of a virtual server: address, port and protocol (kube-proxy's
/// `10.0.0.1:80/TCP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// Virtual IP address; its family is the service's address family.
    pub addr: IpAddr,
    /// Virtual port.
    pub port: u16,
    /// Transport protocol.
    pub protocol: Protocol,
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = self.protocol.as_str().to_ascii_uppercase();
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}/{proto}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}/{proto}", self.port),
        }
    }
}

/// An IPVS virtual server (an IPVS "service").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VirtualServer {
    /// Address, port and protocol.
    pub key: ServiceKey,
    /// Scheduling algorithm.
    pub scheduler: Scheduler,
    /// Flags of the `sh`/`mh` schedulers.
    pub sched_flags: SchedFlags,
    /// Session affinity, if any.
    pub persistence: Option<Persistence>,
}

impl VirtualServer {
    /// A round-robin virtual server without session affinity.
    pub fn new(key: ServiceKey) -> VirtualServer {
        VirtualServer {
            key,
            scheduler: Scheduler::RoundRobin,
            sched_flags: SchedFlags::default(),
            persistence: None,
        }
    }
}

/// Identity of a real server within its virtual server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RealServerKey {
    /// Real server address.
    pub addr: IpAddr,
    /// Real server port.
    pub port: u16,
}

impl fmt::Display for RealServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

/// An IPVS real server (an IPVS "destination") as the caller configures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RealServer {
    /// Address and port.
    pub key: RealServerKey,
    /// Scheduling weight; 0 sends no new connections.
    pub weight: u32,
    /// Forwarding method.
    pub forward: ForwardMethod,
}

impl RealServer {
    /// A masqueraded real server with weight 1, as kube-proxy adds them.
    pub fn new(addr: IpAddr, port: u16) -> RealServer {
        RealServer {
            key: RealServerKey { addr, port },
            weight: 1,
            forward: ForwardMethod::Masquerade,
        }
    }
}

/// Connection counters the kernel keeps for a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionCounts {
    /// Established connections.
    pub active: u32,
    /// Connections in other states (closing, SYN received, UDP).
    pub inactive: u32,
}

impl ConnectionCounts {
    /// Whether no connection of any kind uses the real server.
    pub fn is_idle(&self) -> bool {
        self.active == 0 && self.inactive == 0
    }
}

/// A real server as read back from the kernel: its configuration and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    /// Configuration.
    pub server: RealServer,
    /// Connection counters.
    pub connections: ConnectionCounts,
}

/// IPVS connection timeouts in seconds (`ipvsadm --set`); 0 keeps the current value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeouts {
    /// Established TCP connections.
    pub tcp_secs: u32,
    /// TCP connections after a FIN.
    pub tcp_fin_secs: u32,
    /// UDP.
    pub udp_secs: u32,
}

/// A virtual server with its real servers, as read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    /// The virtual server.
    pub service: VirtualServer,
    /// Its real servers.
    pub destinations: Vec<Destination>,
}
