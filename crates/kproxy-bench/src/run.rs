//! A whole run: every size in every mode, one case after another, a failed case reported
//! beside the others.

use crate::args::Cli;
use crate::case::{run_case, CaseSpec};
use crate::error::BenchError;
use crate::machine::{utc_now, LoadAverage};
use crate::report::{CaseFailure, Report};
use kproxy_lab::AgentBinary;
use std::time::Duration;

/// Runs the cases of `cli` with `binary`, telling progress on standard error.
pub fn run(cli: &Cli, binary: &AgentBinary, command: String) -> Result<Report, BenchError> {
    let mut report = Report {
        command,
        date: utc_now(),
        load_at_start: LoadAverage::read(),
        load_at_end: None,
        connections: cli.connections,
        cases: Vec::new(),
        failures: Vec::new(),
    };
    for &services in &cli.services {
        for &mode in &cli.modes {
            let spec = CaseSpec {
                services,
                mode,
                connections: cli.connections,
                sync_cap: Duration::from_secs(cli.sync_timeout),
                agent_args: cli.agent_args.clone(),
            };
            eprintln!("kproxy-bench: {services} services, {mode} ...");
            match run_case(binary, &spec) {
                Ok(case) => report.cases.push(case),
                Err(e @ BenchError::Usage(_)) => return Err(e),
                Err(e) => {
                    eprintln!("kproxy-bench: {services} services, {mode}: {e}");
                    report.failures.push(CaseFailure {
                        services,
                        mode: mode.name().into(),
                        error: e.to_string(),
                    });
                }
            }
        }
    }
    report.load_at_end = LoadAverage::read();
    Ok(report)
}
