//! Throwaway network namespaces: the node (lo, and an `eth0` veth whose peer lives in a
//! second namespace standing in for the network), and an empty one for the kernel floor.
//! Every interface is created inside a namespace, never in the root one; each namespace is
//! deleted when its guard drops, after what still runs in it is killed.

use crate::cluster::NODE_IP;
use crate::exec::{run_cleanup, run_ok};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::Duration;

const IP_TIMEOUT: Duration = Duration::from_secs(10);
/// The peer's address on the node's subnet, the node's default gateway.
const GATEWAY: &str = "192.168.77.1";

/// A named network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `name` with `lo` up.
    pub fn create(name: &str) -> Result<Netns, String> {
        run_ok("ip", &["netns", "add", name], IP_TIMEOUT)?;
        let netns = Netns {
            name: name.to_string(),
        };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// Runs `ip -n NAME args…`.
    fn ip(&self, args: &[&str]) -> Result<(), String> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run_ok("ip", &full, IP_TIMEOUT).map(|_| ())
    }

    /// Moves the calling thread into the namespace. Called before the process starts any
    /// other thread, it moves the whole process: threads and children inherit it.
    pub fn enter(&self) -> Result<(), String> {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        // SAFETY: setns on a valid namespace descriptor changes only this thread's namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc == 0 {
            Ok(())
        } else {
            Err(format!("setns {path}: {}", std::io::Error::last_os_error()))
        }
    }
}

impl Netns {
    /// Runs `work` on a thread inside the namespace; the tools it starts run there too.
    pub fn run_inside<T: Send>(&self, work: impl FnOnce() -> T + Send) -> Result<T, String> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| self.enter().map(|()| work()))
                .join()
                .map_err(|_| format!("work in namespace {} panicked", self.name))?
        })
    }

    /// Kills whatever still runs in the namespace (an iptables-restore the stopped agent
    /// left behind), except this process.
    pub fn kill_leftovers(&self) {
        let Ok(listed) = run_cleanup("ip", &["netns", "pids", &self.name], IP_TIMEOUT) else {
            return;
        };
        let own = std::process::id();
        for pid in String::from_utf8_lossy(&listed.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .filter(|p| *p != own)
        {
            if let Ok(pid) = libc::pid_t::try_from(pid) {
                // SAFETY: kill has no memory-safety preconditions; these processes were
                // started inside this run's own namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.kill_leftovers();
        if let Err(e) = run_cleanup("ip", &["netns", "del", &self.name], IP_TIMEOUT) {
            eprintln!(
                "kproxy-scale: warning: deleting namespace {}: {e}",
                self.name
            );
        }
    }
}

/// The node's namespace and the network at the other end of its `eth0`.
#[derive(Debug)]
pub struct NodeNetwork {
    /// The prefix of the namespaces' names.
    pub prefix: String,
    /// Where the agent runs.
    pub node: Netns,
    /// Holds the veth peer.
    _peer: Netns,
}

impl NodeNetwork {
    /// Creates `PREFIX-node` and `PREFIX-net`, joined by a veth pair: `eth0` with
    /// [`NODE_IP`]/24 and a default route in the node, its peer with the gateway address.
    pub fn create(prefix: &str) -> Result<NodeNetwork, String> {
        let node = Netns::create(&format!("{prefix}-node"))?;
        let peer = Netns::create(&format!("{prefix}-net"))?;
        node.ip(&[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", &peer.name,
        ])?;
        let node_cidr = format!("{NODE_IP}/24");
        node.ip(&["addr", "add", &node_cidr, "dev", "eth0"])?;
        node.ip(&["link", "set", "eth0", "up"])?;
        peer.ip(&["addr", "add", &format!("{GATEWAY}/24"), "dev", "eth0"])?;
        peer.ip(&["link", "set", "eth0", "up"])?;
        node.ip(&["route", "add", "default", "via", GATEWAY])?;
        Ok(NodeNetwork {
            prefix: prefix.to_string(),
            node,
            _peer: peer,
        })
    }
}
