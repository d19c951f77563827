//! The lab: a node namespace between an outside client and pods, wired as a real node is.
//!
//! ```text
//!  outside (eth0: 192.168.50.100, .101)          pods (eth0: 10.244.0.2.., default via .1)
//!        |                                          |
//!  node  eth0: 192.168.50.10     cbr0: 10.244.0.1 --+-- vethN ... client pod (10.244.0.200)
//! ```
//! IPv6 beside it (fd00:50::/64, fd00:10:244::/64). Every link is created straight inside
//! its namespaces, so the root namespace's interfaces, routes and firewall are never
//! touched; dropping the [`Lab`] stops the pod servers and deletes every namespace, also
//! when a test panics.

use crate::agent::{Agent, AgentOptions};
use crate::binary::AgentBinary;
use crate::error::LabError;
use crate::netns::Netns;
use crate::plan::{self, FAMILIES};
use crate::server::PodServers;
use crate::sweep::remove_stale_labs;
use kproxy_model::IpFamily;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// What to build.
#[derive(Debug, Clone, Copy)]
pub struct LabSpec {
    /// How many server pods (`pod-0`, `pod-1`, ...), at most 100.
    pub pods: u8,
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec { pods: 3 }
    }
}

/// A built lab. Fields drop in order: servers stop before their namespaces go.
pub struct Lab {
    servers: Vec<PodServers>,
    /// The server pods, `pod-0` first.
    pub pods: Vec<Netns>,
    /// A pod that only makes connections.
    pub client_pod: Netns,
    /// The outside client on the external network.
    pub outside: Netns,
    /// The node, where kproxy runs.
    pub node: Netns,
    work_dir: WorkDir,
    agents_started: AtomicU32,
}

impl Lab {
    /// Builds the lab: namespaces, links, addresses, routes, sysctls, pod servers. Labs
    /// of killed test processes are removed first.
    pub fn build(spec: LabSpec) -> Result<Lab, LabError> {
        for name in remove_stale_labs() {
            eprintln!("kproxy-lab: removed namespace {name} left by a killed process");
        }
        let prefix = format!(
            "kpl-{}-{}-",
            std::process::id(),
            LAB_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let work_dir = WorkDir::create(&prefix)?;
        let node = Netns::create(&format!("{prefix}node"))?;
        let outside = Netns::create(&format!("{prefix}out"))?;
        let client_pod = Netns::create(&format!("{prefix}cli"))?;
        let mut pods = Vec::new();
        for index in 0..spec.pods.min(100) {
            pods.push(Netns::create(&format!("{prefix}pod{index}"))?);
        }
        let mut lab = Lab {
            servers: Vec::new(),
            pods,
            client_pod,
            outside,
            node,
            work_dir,
            agents_started: AtomicU32::new(0),
        };
        lab.wire()?;
        for (index, pod) in lab.pods.iter().enumerate() {
            let name = plan::pod_name(index as u8);
            lab.servers
                .push(PodServers::start(pod, &name, plan::POD_PORT)?);
        }
        Ok(lab)
    }

    /// A directory for this lab's files (cluster files, logs), removed on drop.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir.0
    }

    /// Writes a file (a cluster manifest, a kubeconfig) into [`work_dir`](Self::work_dir);
    /// returns its path.
    pub fn write_file(&self, name: &str, text: &str) -> Result<PathBuf, LabError> {
        let path = self.work_dir().join(name);
        std::fs::write(&path, text).map_err(|source| LabError::File {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// Starts the agent in the node namespace, logging to `agent-N.log` in the lab's
    /// directory (see [`Agent::start`]).
    pub fn start_agent(
        &self,
        binary: &AgentBinary,
        options: &AgentOptions,
    ) -> Result<Agent, LabError> {
        let number = self.agents_started.fetch_add(1, Ordering::Relaxed);
        let log = self.work_dir().join(format!("agent-{number}.log"));
        Agent::start(binary, &self.node, options, &log)
    }

    /// Server pod `index`'s namespace.
    pub fn pod(&self, index: u8) -> Option<&Netns> {
        self.pods.get(usize::from(index))
    }

    fn wire(&self) -> Result<(), LabError> {
        self.wire_node()?;
        self.wire_outside()?;
        for (index, pod) in self.pods.iter().enumerate() {
            let ips = FAMILIES.map(|f| plan::pod_ip(f, index as u8));
            self.wire_pod(pod, &format!("veth{index}"), ips)?;
        }
        let ips = FAMILIES.map(plan::client_pod_ip);
        self.wire_pod(&self.client_pod, "vethcli", ips)
    }

    fn wire_node(&self) -> Result<(), LabError> {
        let node = &self.node;
        node.ip(&["link", "add", "cbr0", "type", "bridge"])?;
        for family in FAMILIES {
            add_address(node, "cbr0", plan::bridge_ip(family), family)?;
        }
        node.ip(&["link", "set", "cbr0", "up"])?;
        for (key, value) in [
            ("net/ipv4/ip_forward", "1"),
            ("net/ipv6/conf/all/forwarding", "1"),
            ("net/ipv4/conf/all/route_localnet", "1"),
            ("net/bridge/bridge-nf-call-iptables", "1"),
            ("net/bridge/bridge-nf-call-ip6tables", "1"),
            // The per-host ICMP rate limit can swallow the first REJECT answers to a new
            // client; the lab wants every one of them.
            ("net/ipv4/icmp_ratelimit", "0"),
            ("net/ipv6/icmp/ratelimit", "0"),
        ] {
            node.sysctl(key, value)?;
        }
        Ok(())
    }

    fn wire_outside(&self) -> Result<(), LabError> {
        let (node, outside) = (&self.node, &self.outside);
        node.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            outside.name(),
        ])?;
        for family in FAMILIES {
            add_address(node, "eth0", plan::node_ip(family), family)?;
            // The first address is the one connections come from by default; the others
            // are there to be bound explicitly.
            add_address(outside, "eth0", plan::outside_ip(family, 0), family)?;
            for extra in [plan::outside_ip(family, 1), plan::gateway_ip(family)] {
                add_extra_address(outside, "eth0", extra, family)?;
            }
        }
        node.ip(&["link", "set", "eth0", "up"])?;
        outside.ip(&["link", "set", "eth0", "up"])?;
        for family in FAMILIES {
            let gateway = plan::gateway_ip(family).to_string();
            node.ip(&[
                family_flag(family),
                "route",
                "add",
                "default",
                "via",
                &gateway,
            ])?;
            let via = plan::node_ip(family).to_string();
            for cidr in plan::routed_to_node(family) {
                outside.ip(&[family_flag(family), "route", "add", cidr, "via", &via])?;
            }
        }
        Ok(())
    }

    fn wire_pod(
        &self,
        pod: &Netns,
        node_side: &str,
        ips: [std::net::IpAddr; 2],
    ) -> Result<(), LabError> {
        let node = &self.node;
        node.ip(&[
            "link",
            "add",
            node_side,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            pod.name(),
        ])?;
        node.ip(&["link", "set", node_side, "master", "cbr0"])?;
        node.ip(&[
            "link",
            "set",
            node_side,
            "type",
            "bridge_slave",
            "hairpin",
            "on",
        ])?;
        node.ip(&["link", "set", node_side, "up"])?;
        for (family, ip) in FAMILIES.into_iter().zip(ips) {
            add_address(pod, "eth0", ip, family)?;
        }
        pod.ip(&["link", "set", "eth0", "up"])?;
        for family in FAMILIES {
            let via = plan::bridge_ip(family).to_string();
            pod.ip(&[family_flag(family), "route", "add", "default", "via", &via])?;
        }
        Ok(())
    }
}

fn family_flag(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "-4",
        IpFamily::V6 => "-6",
    }
}

fn add_address(
    netns: &Netns,
    link: &str,
    ip: std::net::IpAddr,
    family: IpFamily,
) -> Result<(), LabError> {
    let address = plan::with_prefix(ip, family);
    let mut args = vec!["addr", "add", address.as_str(), "dev", link];
    if family == IpFamily::V6 {
        args.push("nodad");
    }
    netns.ip(&args).map(drop)
}

/// An address that is never picked as a source by itself (IPv4: a secondary address;
/// IPv6: deprecated at once), so the interface's first address stays the default.
fn add_extra_address(
    netns: &Netns,
    link: &str,
    ip: std::net::IpAddr,
    family: IpFamily,
) -> Result<(), LabError> {
    let address = plan::with_prefix(ip, family);
    let mut args = vec!["addr", "add", address.as_str(), "dev", link];
    if family == IpFamily::V6 {
        args.extend(["nodad", "preferred_lft", "0"]);
    }
    netns.ip(&args).map(drop)
}

/// A temporary directory, removed on drop.
struct WorkDir(PathBuf);

impl WorkDir {
    fn create(prefix: &str) -> Result<WorkDir, LabError> {
        let path = std::env::temp_dir().join(prefix.trim_end_matches('-'));
        std::fs::create_dir_all(&path).map_err(|source| LabError::File {
            path: path.clone(),
            source,
        })?;
        Ok(WorkDir(path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Leftovers in /tmp are harmless; a failure here must not hide a test's own.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
