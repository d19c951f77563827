//! The node's kernel state as the reference tools report it: `ipvsadm -Ln`, `ipset
//! save`, `ip addr` and `iptables-legacy-save`, run in the node's network namespace.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use crate::checks::Failure;

/// One real server of a virtual server, as `ipvsadm -Ln` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealServer {
    /// Its address and port.
    pub addr: SocketAddr,
    /// Its weight (0 while it drains).
    pub weight: u32,
    /// Established connections.
    pub active: u32,
    /// Other connections (closing, time-wait, ...).
    pub inactive: u32,
}

/// One virtual server, as `ipvsadm -Ln` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServer {
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// Its address and port.
    pub addr: SocketAddr,
    /// The scheduler (`rr`, ...).
    pub scheduler: String,
    /// The persistence timeout in seconds, for session affinity.
    pub persistent: Option<u32>,
    /// Its real servers.
    pub real_servers: Vec<RealServer>,
}

impl VirtualServer {
    /// The real server at `addr`, if listed.
    pub fn real_server(&self, addr: SocketAddr) -> Option<&RealServer> {
        self.real_servers.iter().find(|r| r.addr == addr)
    }
}

/// Parses `ipvsadm -Ln` output.
pub fn parse_ipvsadm(text: &str) -> Result<Vec<VirtualServer>, Failure> {
    let mut servers: Vec<VirtualServer> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["->", "RemoteAddress:Port", ..] => {}
            ["->", addr, _forward, weight, active, inactive] => {
                let real = RealServer {
                    addr: parse(addr, line)?,
                    weight: parse(weight, line)?,
                    active: parse(active, line)?,
                    inactive: parse(inactive, line)?,
                };
                servers
                    .last_mut()
                    .ok_or_else(|| format!("a real server before any virtual server: {line}"))?
                    .real_servers
                    .push(real);
            }
            [protocol @ ("TCP" | "UDP" | "SCTP"), addr, scheduler, rest @ ..] => {
                let persistent = match rest {
                    ["persistent", secs, ..] => Some(parse(secs, line)?),
                    _ => None,
                };
                servers.push(VirtualServer {
                    protocol: protocol.to_string(),
                    addr: parse(addr, line)?,
                    scheduler: scheduler.to_string(),
                    persistent,
                    real_servers: Vec::new(),
                });
            }
            _ => {}
        }
    }
    Ok(servers)
}

fn parse<T: std::str::FromStr>(field: &str, line: &str) -> Result<T, Failure> {
    field
        .parse()
        .map_err(|_| format!("unexpected {field:?} in ipvsadm line {line:?}"))
}

/// The kernel of the node: the guest's root namespace, or a named network namespace.
#[derive(Debug, Clone, Default)]
pub struct Node {
    netns: Option<String>,
}

impl Node {
    /// The guest's root namespace.
    pub fn root() -> Node {
        Node { netns: None }
    }

    /// Network namespace `name`.
    pub fn netns(name: &str) -> Node {
        Node {
            netns: Some(name.to_string()),
        }
    }

    /// A command run in this node's namespace.
    pub fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns, program]);
                command
            }
            None => Command::new(program),
        }
    }

    /// Runs `program args` here; its stdout, or why it failed.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String, Failure> {
        let out = self
            .command(program)
            .args(args)
            .output()
            .map_err(|e| format!("running {program}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{program} {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Every virtual server with its real servers.
    pub fn ipvs(&self) -> Result<Vec<VirtualServer>, Failure> {
        parse_ipvsadm(&self.run("ipvsadm", &["-Ln"])?)
    }

    /// The TCP virtual server at `addr`, if there is one.
    pub fn tcp_virtual_server(&self, addr: SocketAddr) -> Result<Option<VirtualServer>, Failure> {
        let text = match self.run("ipvsadm", &["-Ln", "-t", &addr.to_string()]) {
            Ok(text) => text,
            Err(e) if e.contains("No such service") => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(parse_ipvsadm(&text)?.into_iter().next())
    }

    /// The entries of ipset `set` (empty when it does not exist).
    pub fn ipset_entries(&self, set: &str) -> Result<Vec<String>, Failure> {
        let save = self.run("ipset", &["save"])?;
        let prefix = format!("add {set} ");
        Ok(save
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(str::to_string)
            .collect())
    }

    /// The names of every ipset.
    pub fn ipset_names(&self) -> Result<Vec<String>, Failure> {
        Ok(self
            .run("ipset", &["list", "-n"])?
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// The addresses bound to `kube-ipvs0`, or `None` when the link does not exist.
    pub fn kube_ipvs0_addresses(&self) -> Result<Option<Vec<IpAddr>>, Failure> {
        let links = self.run("ip", &["-o", "link", "show"])?;
        if !links.contains(" kube-ipvs0:") {
            return Ok(None);
        }
        let text = self.run("ip", &["-o", "addr", "show", "dev", "kube-ipvs0"])?;
        let addresses = text
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                words.find(|w| *w == "inet" || *w == "inet6")?;
                words.next()?.split('/').next()?.parse().ok()
            })
            .collect();
        Ok(Some(addresses))
    }

    /// The `KUBE-*` chains of the nat and filter tables (iptables-legacy).
    pub fn kube_chains(&self) -> Result<Vec<String>, Failure> {
        let save = self.run("iptables-legacy-save", &[])?;
        Ok(save
            .lines()
            .filter_map(|l| l.strip_prefix(":KUBE-"))
            .filter_map(|l| l.split_whitespace().next())
            .map(|c| format!("KUBE-{c}"))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipvsadm_listing_is_parsed() {
        let text = "IP Virtual Server version 1.2.1 (size=4096)\n\
            Prot LocalAddress:Port Scheduler Flags\n  \
              -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
            TCP  10.96.0.12:80 rr persistent 10800\n  \
              -> 10.244.1.2:8080              Masq    1      0          2\n\
            TCP  10.96.0.10:80 rr\n  \
              -> 10.244.1.2:8080              Masq    0      1          0\n  \
              -> 10.244.2.2:8080              Masq    1      0          0\n";
        let servers = parse_ipvsadm(text).expect("parses");
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].persistent, Some(10800));
        assert_eq!(servers[0].real_servers[0].inactive, 2);
        assert_eq!(servers[1].persistent, None);
        let drained = servers[1]
            .real_server("10.244.1.2:8080".parse().expect("addr"))
            .expect("listed");
        assert_eq!((drained.weight, drained.active), (0, 1));
    }
}
