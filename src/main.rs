//! kproxy: a Kubernetes service proxy, a drop-in replacement for kube-proxy.

mod cli;

use clap::{Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;

/// kproxy: Kubernetes services on this node, in iptables, nftables or IPVS.
///
/// Without a subcommand, kproxy is the node agent and takes kube-proxy's flags.
#[derive(Debug, Parser)]
#[command(
    name = "kproxy",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    agent: kproxy_node::AgentArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the iptables-restore input kproxy would apply for a cluster (no root needed).
    Rules(cli::rules::RulesArgs),
    /// Walk a packet through a ruleset (a dump, or the live one) and print its path.
    Trace(cli::trace::TraceArgs),
    /// Build a node, pods and a client out of network namespaces on this machine, run the
    /// agent there, send traffic and show where it landed (needs root; leaves nothing).
    Demo,
    /// `iptables-legacy-restore --noflush` without libiptc: the restore tool the agent runs
    /// on the legacy backend (reads restore input on stdin).
    #[command(hide = true)]
    XtablesRestore(kproxy_node::XtablesRestoreArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        return match kproxy_node::run_agent(cli.agent) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    };
    match command {
        Command::Rules(args) => match cli::rules::render(&args) {
            Ok((text, warnings)) => {
                for warning in warnings {
                    eprintln!("warning: {warning}");
                }
                write_stdout(&text)
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Demo => match kproxy_lab::run_demo(&mut std::io::stdout()) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::XtablesRestore(args) => {
            ExitCode::from(u8::try_from(kproxy_node::run_xtables_restore(&args)).unwrap_or(1))
        }
        Command::Trace(args) => match cli::trace::run(&args) {
            Ok(text) => write_stdout(&text),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// Writes command output; a closed pipe (`| head`) is not an error.
fn write_stdout(text: &str) -> ExitCode {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing output: {e}");
            ExitCode::FAILURE
        }
    }
}
