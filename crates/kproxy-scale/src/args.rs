//! The command line: one run of the harness, or the restore relay the agent calls in place
//! of iptables-restore.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Time the kproxy agent at scale in a throwaway network namespace (needs root).
#[derive(Debug, Parser)]
#[command(name = "kproxy-scale", args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Internal subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Internal: stands in for iptables-restore or nft, counts the bytes and time of each
    /// call.
    #[command(hide = true)]
    RestoreRelay(RelayArgs),
}

/// One run: a cluster shape, a backend and a mode.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Number of Services (one in ten is a NodePort).
    #[arg(long, default_value_t = 1000)]
    pub services: u32,
    /// Ready endpoints per Service.
    #[arg(long, default_value_t = 10)]
    pub endpoints: u32,
    /// iptables backend the agent and the floor use.
    #[arg(long, value_enum, default_value_t = Backend::Nft)]
    pub backend: Backend,
    /// The agent's proxy mode.
    #[arg(long, value_enum, default_value_t = Mode::Iptables)]
    pub mode: Mode,
    /// The kproxy binary (default: `kproxy` next to this program).
    #[arg(long, value_name = "PATH")]
    pub kproxy: Option<PathBuf>,
    /// Give up on the agent's first sync, and on the floor's restore, after this many
    /// seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub timeout: u64,
    /// Endpoint changes to time, one after another, each on another Service; the report
    /// gives their spread, and their median as the endpoint change.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub changes: u32,
    /// Skip the kernel floor (plain iptables-restore of the same ruleset).
    #[arg(long)]
    pub no_floor: bool,
    /// Keep the scratch directory (agent log, cluster, restore log) and print its path.
    #[arg(long)]
    pub keep: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The iptables backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// iptables-nft (nf_tables kernel API).
    Nft,
    /// iptables-legacy (x_tables).
    Legacy,
}

impl Backend {
    /// The name in tool names and in `--iptables-backend`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        }
    }
}

/// The agent's proxy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// iptables rules through iptables-restore.
    Iptables,
    /// nftables rules through nft (the `--backend` then only picks the floor's tool).
    Nftables,
}

impl Mode {
    /// The name in `--proxy-mode`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Iptables => "iptables",
            Mode::Nftables => "nftables",
        }
    }

    /// The environment variable that points the agent at the relay.
    pub fn tool_env(self) -> &'static str {
        match self {
            Mode::Iptables => "KPROXY_IPTABLES_RESTORE",
            Mode::Nftables => "KPROXY_NFT",
        }
    }

    /// The tool the agent feeds rules to, as the report names it.
    pub fn tool_label(self) -> &'static str {
        match self {
            Mode::Iptables => "iptables-restore",
            Mode::Nftables => "nft -f",
        }
    }
}

/// Arguments of the restore relay.
#[derive(Debug, Args)]
pub struct RelayArgs {
    /// Where to append one line per call: bytes, microseconds, exit code.
    #[arg(long)]
    pub log: PathBuf,
    /// The real iptables-restore or nft.
    #[arg(long)]
    pub real: PathBuf,
    /// The arguments the agent passed.
    #[arg(last = true)]
    pub args: Vec<String>,
}
