//! `kproxy-bench`: see the crate documentation of [`kproxy_bench`].

use clap::Parser;
use kproxy_bench::args::Cli;
use kproxy_bench::run::run;
use kproxy_lab::require::check_machine;
use kproxy_lab::AgentBinary;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let binary = match check_machine().and_then(|()| AgentBinary::locate()) {
        Ok(binary) => binary,
        Err(e) => {
            eprintln!("kproxy-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match run(&cli, &binary, command) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("kproxy-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.json {
        // People watching still see the table.
        eprint!("{}", report.table());
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("kproxy-bench: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", report.table());
    }
    if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
