//! The command line.

use clap::Parser;
use kproxy_lab::ProxyMode;

/// Connection setup through a ClusterIP with N services programmed, per proxy mode, in
/// network namespaces on this machine (needs root). The kproxy binary is `$KPROXY_BIN`,
/// else `kproxy` beside this program.
#[derive(Debug, Clone, Parser)]
#[command(name = "kproxy-bench")]
pub struct Cli {
    /// Cluster sizes (Services in all), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 10_000, 30_000])]
    pub services: Vec<u32>,
    /// Proxy modes, comma-separated: iptables (= iptables-nft), iptables-legacy, nftables.
    #[arg(long, value_delimiter = ',', value_parser = parse_mode,
          default_values_t = [ProxyMode::IptablesNft, ProxyMode::Nftables])]
    pub modes: Vec<ProxyMode>,
    /// Timed connections per target (pod IP, ClusterIP, and the no-rules baseline).
    #[arg(long, default_value_t = 2000)]
    pub connections: usize,
    /// Give up on programming a case after this many seconds (reported, not waited for).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub sync_timeout: u64,
    /// One more agent flag, after the lab's (repeatable), e.g.
    /// `--agent-arg=--iptables-restore-timeout=600s`; the default is the agent's defaults.
    #[arg(long = "agent-arg", value_name = "FLAG", allow_hyphen_values = true)]
    pub agent_args: Vec<String>,
    /// Print the report as JSON (the table goes to standard error).
    #[arg(long)]
    pub json: bool,
}

/// A mode by its name.
pub fn parse_mode(name: &str) -> Result<ProxyMode, String> {
    match name.trim() {
        "iptables" | "iptables-nft" => Ok(ProxyMode::IptablesNft),
        "iptables-legacy" => Ok(ProxyMode::IptablesLegacy),
        "nftables" => Ok(ProxyMode::Nftables),
        other => Err(format!(
            "unknown mode {other:?} (iptables, iptables-nft, iptables-legacy, nftables)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_issue_s_sizes_and_both_modes() {
        let cli = Cli::parse_from(["kproxy-bench"]);
        assert_eq!(cli.services, [1000, 10_000, 30_000]);
        assert_eq!(cli.modes, [ProxyMode::IptablesNft, ProxyMode::Nftables]);
    }

    #[test]
    fn lists_and_mode_names() {
        let cli = Cli::parse_from([
            "kproxy-bench",
            "--services",
            "50,100",
            "--modes",
            "iptables-legacy,nftables",
        ]);
        assert_eq!(cli.services, [50, 100]);
        assert_eq!(cli.modes, [ProxyMode::IptablesLegacy, ProxyMode::Nftables]);
        assert!(parse_mode("ipvs").is_err());
        let cli = Cli::parse_from([
            "kproxy-bench",
            "--agent-arg",
            "--iptables-restore-timeout=600s",
        ]);
        assert_eq!(cli.agent_args, ["--iptables-restore-timeout=600s"]);
    }
}
