//! The proxy modes the lab runs kproxy in, and how to read each one's kernel state back.

use crate::error::LabError;
use crate::netns::Netns;
use kproxy_model::IpFamily;
use std::fmt;

/// The environment variable that narrows the modes the end-to-end tests run
/// (comma-separated [`ProxyMode::name`]s).
pub const LAB_MODES: &str = "KPROXY_LAB_MODES";

/// A kproxy proxy mode, with the iptables backend where it matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// `--proxy-mode iptables --iptables-backend nft`.
    IptablesNft,
    /// `--proxy-mode iptables --iptables-backend legacy`.
    IptablesLegacy,
    /// `--proxy-mode nftables`.
    Nftables,
}

impl ProxyMode {
    /// Every mode, in the order the tests run them.
    pub const ALL: [ProxyMode; 3] = [
        ProxyMode::IptablesNft,
        ProxyMode::IptablesLegacy,
        ProxyMode::Nftables,
    ];

    /// The modes to test: `$KPROXY_LAB_MODES` if set, else [`ALL`](Self::ALL).
    pub fn selected() -> Vec<ProxyMode> {
        match std::env::var(LAB_MODES) {
            Ok(list) => Self::ALL
                .into_iter()
                .filter(|m| list.split(',').any(|name| name.trim() == m.name()))
                .collect(),
            Err(_) => Self::ALL.to_vec(),
        }
    }

    /// The mode's short name (`iptables-nft`, `iptables-legacy`, `nftables`).
    pub fn name(self) -> &'static str {
        match self {
            ProxyMode::IptablesNft => "iptables-nft",
            ProxyMode::IptablesLegacy => "iptables-legacy",
            ProxyMode::Nftables => "nftables",
        }
    }

    /// The agent flags that select it.
    pub fn flags(self) -> Vec<&'static str> {
        match self {
            ProxyMode::IptablesNft => vec!["--proxy-mode", "iptables", "--iptables-backend", "nft"],
            ProxyMode::IptablesLegacy => {
                vec!["--proxy-mode", "iptables", "--iptables-backend", "legacy"]
            }
            ProxyMode::Nftables => vec!["--proxy-mode", "nftables"],
        }
    }

    /// The tool that dumps this mode's rules for `family`, with its arguments.
    pub fn dump_command(self, family: IpFamily) -> (&'static str, &'static [&'static str]) {
        let v6 = family == IpFamily::V6;
        match self {
            ProxyMode::IptablesNft if v6 => ("ip6tables-nft-save", &[]),
            ProxyMode::IptablesNft => ("iptables-nft-save", &[]),
            ProxyMode::IptablesLegacy if v6 => ("ip6tables-legacy-save", &[]),
            ProxyMode::IptablesLegacy => ("iptables-legacy-save", &[]),
            ProxyMode::Nftables => ("nft", &["list", "ruleset"]),
        }
    }

    /// This mode's rules for `family` as the kernel reports them, read in `node`
    /// (`iptables-save` output, or `nft list ruleset`).
    pub fn dump_rules(self, node: &Netns, family: IpFamily) -> Result<String, LabError> {
        let (program, args) = self.dump_command(family);
        node.exec(program, args)
    }
}

impl fmt::Display for ProxyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
