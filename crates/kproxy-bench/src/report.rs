//! The report of a run: the command, date and load averages, and one row per case, as a
//! table for people or JSON for machines.

use crate::case::CaseReport;
use crate::connect::Series;
use crate::kernel::{Dispatch, Placement};
use crate::machine::LoadAverage;
use crate::program::Programming;
use serde::Serialize;
use std::fmt::Write;

/// A case that could not run, and why.
#[derive(Debug, Clone, Serialize)]
pub struct CaseFailure {
    /// Services.
    pub services: u32,
    /// The mode.
    pub mode: String,
    /// The error.
    pub error: String,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The command line.
    pub command: String,
    /// When it started.
    pub date: String,
    /// The load average at the start.
    pub load_at_start: Option<LoadAverage>,
    /// The load average at the end.
    pub load_at_end: Option<LoadAverage>,
    /// Timed connections per target and case.
    pub connections: usize,
    /// The cases that ran.
    pub cases: Vec<CaseReport>,
    /// The cases that could not run.
    pub failures: Vec<CaseFailure>,
}

impl Report {
    /// The report as a text table, with a header and notes.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let load = |l: &Option<LoadAverage>| l.map_or("unknown".into(), |l| l.to_string());
        // Writing to a String cannot fail.
        let _ = writeln!(out, "command: {}", self.command);
        let _ = writeln!(
            out,
            "date: {}; load average at start {}, at end {}",
            self.date,
            load(&self.load_at_start),
            load(&self.load_at_end)
        );
        let _ = writeln!(
            out,
            "{} sequential connections per target; connect latency in µs (p50/p99), \
             connections per second sequential; load = 1-min load average after each series\n",
            self.connections
        );
        let _ = writeln!(
            out,
            "{:>8}  {:<15} {:<26} {:>17} {:>17} {:>17} {:>8} {:>8} {:>9}",
            "services",
            "mode",
            "programmed",
            "no rules (load)",
            "pod IP",
            "ClusterIP (load)",
            "pod c/s",
            "svc c/s",
            "svc-pod"
        );
        for case in &self.cases {
            let _ = writeln!(out, "{}", row(case));
        }
        for failure in &self.failures {
            let _ = writeln!(
                out,
                "{:>8}  {:<15} FAILED: {}",
                failure.services, failure.mode, failure.error
            );
        }
        out
    }
}

fn row(case: &CaseReport) -> String {
    let no_rules = format!(
        "{} ({})",
        latency(&case.no_rules),
        one_minute(case.no_rules_load)
    );
    let head = format!(
        "{:>8}  {:<15} {:<26} {:>17}",
        case.services,
        case.mode,
        programming(&case.programming),
        no_rules
    );
    let Some(m) = &case.measured else {
        return format!("{head}{}", failures(&[&case.no_rules]));
    };
    let overhead = m.cluster_ip.summary.connect_p50_us - m.pod_ip.summary.connect_p50_us;
    format!(
        "{head} {:>17} {:>17} {:>8.0} {:>8.0} {:>+9.1}{}",
        latency(&m.pod_ip),
        format!("{} ({})", latency(&m.cluster_ip), one_minute(m.load)),
        m.pod_ip.summary.connections_per_s,
        m.cluster_ip.summary.connections_per_s,
        overhead,
        failures(&[&case.no_rules, &m.pod_ip, &m.cluster_ip])
    )
}

fn programming(programming: &Programming) -> String {
    match programming {
        Programming::Programmed {
            confirmed_s,
            dispatch,
            ..
        } => format!("{confirmed_s:.1} s, {}", placement(dispatch)),
        Programming::NotProgrammed {
            cap_s, dispatch, ..
        } => {
            let seen = dispatch.map_or(String::new(), |d| format!(", {} in kernel", d.services));
            format!("NOT within {cap_s:.0} s{seen}")
        }
    }
}

fn placement(dispatch: &Dispatch) -> String {
    match dispatch.placement {
        Placement::LastOfWalk => format!("last of {}", dispatch.services),
        Placement::InWalkAt(at) => format!("{at}th of {}", dispatch.services),
        Placement::InVerdictMap => format!("map of {}", dispatch.services),
        Placement::Missing => "missing".into(),
    }
}

fn latency(series: &Series) -> String {
    format!(
        "{:.0}/{:.0}",
        series.summary.connect_p50_us, series.summary.connect_p99_us
    )
}

fn one_minute(load: Option<LoadAverage>) -> String {
    load.map_or("?".into(), |l| format!("{:.1}", l.one))
}

fn failures(series: &[&Series]) -> String {
    let failed: usize = series.iter().map(|s| s.summary.failed).sum();
    if failed == 0 {
        return String::new();
    }
    let first = series.iter().find_map(|s| s.first_failure.as_deref());
    format!("  ({failed} failed, first: {})", first.unwrap_or("?"))
}
