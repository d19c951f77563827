//! `kproxy-scale`: runs the kproxy agent against a generated cluster of N services × M
//! endpoints served by the project's fake API server, inside a throwaway network namespace,
//! and prints how long the kernel took to get the rules (first sync, one endpoint change,
//! one new service), the agent's peak memory and CPU time, the bytes it fed to
//! iptables-restore, and the kernel's own floor for the same ruleset.
//!
//! The harness enters the namespace before it starts any thread, so the fake API server,
//! the agent and every probe live in it; the root namespace's firewall, routes and
//! interfaces are never touched, and the namespaces are deleted on every exit path.

mod agent;
mod args;
mod cluster;
mod exec;
mod floor;
mod metrics;
mod naming;
mod netns;
mod probe;
mod procstat;
mod relay;
mod report;
mod run;
mod signals;
mod steps;
mod workdir;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match cli.command {
        Some(args::Command::RestoreRelay(relay_args)) => relay::main(&relay_args),
        None => match run::main(&cli.run) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kproxy-scale: error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
