//! The dummy interface `kube-ipvs0` that holds the virtual IPs, so the node
//! accepts their traffic and IPVS can take it.

use std::net::IpAddr;

use crate::error::{Error, Result};
use crate::tool;

/// The interface name kube-proxy uses.
pub const KUBE_IPVS0: &str = "kube-ipvs0";

/// The dummy interface that holds virtual IPs.
pub trait VipInterface {
    /// Creates the dummy interface unless it exists.
    fn ensure(&mut self) -> Result<()>;

    /// The addresses on the interface.
    fn addresses(&mut self) -> Result<Vec<IpAddr>>;

    /// Binds `addr` as a host address (/32 or /128); already bound is fine.
    fn add_address(&mut self, addr: IpAddr) -> Result<()>;

    /// Unbinds `addr`; not bound is fine.
    fn remove_address(&mut self, addr: IpAddr) -> Result<()>;

    /// Deletes the interface; absent is fine.
    fn delete(&mut self) -> Result<()>;

    /// Binds many addresses; already bound is fine. One at a time unless overridden.
    fn add_addresses(&mut self, addrs: &[IpAddr]) -> Result<()> {
        addrs.iter().try_for_each(|a| self.add_address(*a))
    }

    /// Unbinds many addresses; not bound is fine. One at a time unless overridden.
    fn remove_addresses(&mut self, addrs: &[IpAddr]) -> Result<()> {
        addrs.iter().try_for_each(|a| self.remove_address(*a))
    }
}

/// [`VipInterface`] through the `ip` tool (iproute2).
#[derive(Debug, Clone)]
pub struct IpCommandLink {
    name: String,
    netns: Option<String>,
}

impl IpCommandLink {
    /// The interface `name` in the current network namespace.
    pub fn new(name: impl Into<String>) -> IpCommandLink {
        IpCommandLink {
            name: name.into(),
            netns: None,
        }
    }

    /// The interface `name` inside the named network namespace.
    pub fn in_netns(name: impl Into<String>, netns: impl Into<String>) -> IpCommandLink {
        IpCommandLink {
            name: name.into(),
            netns: Some(netns.into()),
        }
    }

    fn ip(&self, args: &[&str]) -> Result<String> {
        tool::run(self.netns.as_deref(), "ip", args, "")
    }

    /// Runs `ip -batch -` with one `addr VERB` line per address; if the batch fails
    /// (an address already there, or already gone), falls back to one call each.
    fn addr_batch(
        &mut self,
        verb: &str,
        addrs: &[IpAddr],
        one: fn(&mut Self, IpAddr) -> Result<()>,
    ) -> Result<()> {
        if addrs.len() < 2 {
            return addrs.iter().try_for_each(|a| one(self, *a));
        }
        let mut script = String::new();
        for addr in addrs {
            script.push_str(&format!(
                "addr {verb} {} dev {}",
                host_prefix(addr),
                self.name
            ));
            if verb == "add" && addr.is_ipv6() {
                script.push_str(" nodad");
            }
            script.push('\n');
        }
        if tool::run(self.netns.as_deref(), "ip", &["-batch", "-"], &script).is_ok() {
            return Ok(());
        }
        addrs.iter().try_for_each(|a| one(self, *a))
    }

    fn exists(&self) -> bool {
        self.ip(&["link", "show", "dev", &self.name]).is_ok()
    }
}

/// Whether a failed `ip` call failed only because of `message`.
fn failed_with(result: &Result<String>, message: &str) -> bool {
    matches!(result, Err(Error::Tool { stderr, .. }) if stderr.contains(message))
}

fn host_prefix(addr: &IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

/// The addresses in `ip -o addr show` output.
pub fn parse_addresses(text: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            if word == "inet" || word == "inet6" {
                let cidr = words.next().unwrap_or("");
                let addr = cidr.split('/').next().unwrap_or("");
                if let Ok(ip) = addr.parse() {
                    out.push(ip);
                }
                break;
            }
        }
    }
    out
}

impl VipInterface for IpCommandLink {
    fn ensure(&mut self) -> Result<()> {
        if self.exists() {
            return Ok(());
        }
        let added = self.ip(&["link", "add", &self.name, "type", "dummy"]);
        if failed_with(&added, "File exists") {
            return Ok(());
        }
        added.map(|_| ())
    }

    fn addresses(&mut self) -> Result<Vec<IpAddr>> {
        Ok(parse_addresses(
            &self.ip(&["-o", "addr", "show", "dev", &self.name])?,
        ))
    }

    fn add_address(&mut self, addr: IpAddr) -> Result<()> {
        let cidr = host_prefix(&addr);
        let mut args = vec!["addr", "add", &cidr, "dev", &self.name];
        if addr.is_ipv6() {
            args.push("nodad");
        }
        let added = self.ip(&args);
        if failed_with(&added, "File exists") {
            return Ok(());
        }
        added.map(|_| ())
    }

    fn remove_address(&mut self, addr: IpAddr) -> Result<()> {
        let cidr = host_prefix(&addr);
        let removed = self.ip(&["addr", "del", &cidr, "dev", &self.name]);
        if failed_with(&removed, "Cannot assign requested address") {
            return Ok(());
        }
        removed.map(|_| ())
    }

    fn add_addresses(&mut self, addrs: &[IpAddr]) -> Result<()> {
        self.addr_batch("add", addrs, Self::add_address)
    }

    fn remove_addresses(&mut self, addrs: &[IpAddr]) -> Result<()> {
        self.addr_batch("del", addrs, Self::remove_address)
    }

    fn delete(&mut self) -> Result<()> {
        if !self.exists() {
            return Ok(());
        }
        self.ip(&["link", "del", &self.name]).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_from_ip_o_addr_show() {
        let text = "5: kube-ipvs0    inet 10.96.0.1/32 scope global kube-ipvs0\\       valid_lft forever preferred_lft forever\n\
                    5: kube-ipvs0    inet6 fd00::1/128 scope global \\       valid_lft forever preferred_lft forever\n";
        let want: Vec<IpAddr> = vec!["10.96.0.1".parse().unwrap(), "fd00::1".parse().unwrap()];
        assert_eq!(parse_addresses(text), want);
        assert!(parse_addresses("").is_empty());
    }
}
