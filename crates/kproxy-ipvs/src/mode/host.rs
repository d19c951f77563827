//! The host's own addresses (node addresses for NodePorts and for deciding which service
//! addresses need binding), and the `iptables-restore` runner: the mode's other kernel seams.

use std::net::IpAddr;

use kproxy_iptables::JumpRule;
use kproxy_model::IpFamily;

use crate::error::Result;
use crate::link::parse_addresses;
use crate::tool;

/// Lists the addresses on the host's interfaces.
pub trait HostAddresses {
    /// Every address on every interface except `interface`, any family.
    fn addresses_except(&mut self, interface: &str) -> Result<Vec<IpAddr>>;
}

/// [`HostAddresses`] through `ip -o addr show`.
#[derive(Debug, Clone, Default)]
pub struct IpCommandHost {
    netns: Option<String>,
}

impl IpCommandHost {
    /// The current network namespace.
    pub fn new() -> Self {
        IpCommandHost::default()
    }

    /// A named network namespace.
    pub fn in_netns(netns: impl Into<String>) -> Self {
        IpCommandHost {
            netns: Some(netns.into()),
        }
    }
}

/// The addresses in `ip -o addr show` output, leaving out those of `interface`.
pub fn parse_addresses_except(text: &str, interface: &str) -> Vec<IpAddr> {
    text.lines()
        .filter(|line| {
            let name = line.split_whitespace().nth(1).unwrap_or("");
            name.split('@').next() != Some(interface)
        })
        .flat_map(parse_addresses)
        .collect()
}

impl HostAddresses for IpCommandHost {
    fn addresses_except(&mut self, interface: &str) -> Result<Vec<IpAddr>> {
        let text = tool::run(self.netns.as_deref(), "ip", &["-o", "addr", "show"], "")?;
        Ok(parse_addresses_except(&text, interface))
    }
}

/// Applies iptables rules for one family.
pub trait IptablesRunner {
    /// Feeds `text` to `iptables-restore --noflush` (tables it names are changed
    /// atomically; chains it declares are flushed).
    fn restore(&mut self, text: &str) -> Result<()>;

    /// Inserts `rule` at the top of its chain unless it is already there.
    fn ensure_jump(&mut self, rule: &JumpRule) -> Result<()>;

    /// Deletes `rule` from its chain; absent is fine.
    fn remove_jump(&mut self, rule: &JumpRule) -> Result<()>;
}

/// [`IptablesRunner`] through the iptables tools (legacy or nft backend).
#[derive(Debug, Clone)]
pub struct IptablesCommand {
    iptables: &'static str,
    restore: &'static str,
    netns: Option<String>,
}

impl IptablesCommand {
    /// `iptables-legacy`/`ip6tables-legacy` in the current network namespace.
    pub fn legacy(family: IpFamily) -> Self {
        let (iptables, restore) = match family {
            IpFamily::V4 => ("iptables-legacy", "iptables-legacy-restore"),
            IpFamily::V6 => ("ip6tables-legacy", "ip6tables-legacy-restore"),
        };
        IptablesCommand {
            iptables,
            restore,
            netns: None,
        }
    }

    /// `iptables`/`ip6tables` (whatever backend they use) in the current network namespace.
    pub fn system(family: IpFamily) -> Self {
        let (iptables, restore) = match family {
            IpFamily::V4 => ("iptables", "iptables-restore"),
            IpFamily::V6 => ("ip6tables", "ip6tables-restore"),
        };
        IptablesCommand {
            iptables,
            restore,
            netns: None,
        }
    }

    /// The same tools inside a named network namespace.
    pub fn in_netns(mut self, netns: impl Into<String>) -> Self {
        self.netns = Some(netns.into());
        self
    }
}

/// Splits rule arguments like a shell would for the double-quoted comments the mode writes.
pub fn split_args(text: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut escaped, mut started) = (false, false, false);
    for c in text.chars() {
        match c {
            _ if escaped => {
                current.push(c);
                escaped = false;
            }
            '\\' if quoted => escaped = true,
            '"' => {
                quoted = !quoted;
                started = true;
            }
            ' ' if !quoted => {
                if started || !current.is_empty() {
                    args.push(std::mem::take(&mut current));
                }
                started = false;
            }
            _ => current.push(c),
        }
    }
    if started || !current.is_empty() {
        args.push(current);
    }
    args
}

impl IptablesCommand {
    /// Runs `iptables -w -t TABLE OP… CHAIN MATCHES -j TARGET` (`-I` takes its chain and
    /// position in `op`).
    fn rule_op(&self, rule: &JumpRule, op: &[&str]) -> Result<String> {
        let matches = split_args(&rule.matches);
        let mut args = vec!["-w", "-t", rule.table];
        args.extend_from_slice(op);
        if op.len() == 1 {
            args.push(rule.chain);
        }
        args.extend(matches.iter().map(String::as_str));
        args.extend(["-j", rule.target]);
        tool::run(self.netns.as_deref(), self.iptables, &args, "")
    }
}

impl IptablesRunner for IptablesCommand {
    fn restore(&mut self, text: &str) -> Result<()> {
        let args = ["-w", "--noflush", "--counters"];
        tool::run(self.netns.as_deref(), self.restore, &args, text).map(|_| ())
    }

    fn ensure_jump(&mut self, rule: &JumpRule) -> Result<()> {
        if self.rule_op(rule, &["-C"]).is_ok() {
            return Ok(());
        }
        self.rule_op(rule, &["-I", rule.chain, "1"]).map(|_| ())
    }

    fn remove_jump(&mut self, rule: &JumpRule) -> Result<()> {
        while self.rule_op(rule, &["-C"]).is_ok() {
            self.rule_op(rule, &["-D"])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_kube_ipvs0_are_left_out() {
        let text = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                    2: eth0    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0\\ valid_lft forever\n\
                    3: kube-ipvs0    inet 10.96.0.1/32 scope global kube-ipvs0\\ valid_lft forever\n\
                    4: veth1@if2    inet6 fd00::5/64 scope global \\ valid_lft forever\n";
        let got = parse_addresses_except(text, "kube-ipvs0");
        let want: Vec<IpAddr> = ["127.0.0.1", "10.0.0.5", "fd00::5"]
            .iter()
            .map(|s| s.parse().expect("address"))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn quoted_comments_stay_one_argument() {
        assert_eq!(
            split_args(r#"-m comment --comment "kubernetes service portals""#),
            vec!["-m", "comment", "--comment", "kubernetes service portals"]
        );
        assert_eq!(
            split_args(r#"--comment "a \"b\"" -j X"#),
            vec!["--comment", "a \"b\"", "-j", "X"]
        );
    }
}
