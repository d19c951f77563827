//! What one run measured, as a small table for people or JSON for machines.

use crate::args::{Backend, Mode};
use crate::floor::Floor;
use crate::probe::TableCount;
use crate::procstat::ProcessUsage;
use serde::Serializer;
use std::fmt;
use std::time::Duration;

/// One change (or the first sync) on its way to the kernel.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Step {
    /// From the start (or the API update) to the end of the agent's sync that wrote it,
    /// by the agent's `last_timestamp` metric; `None`: did not finish in time.
    #[serde(serialize_with = "optional_seconds")]
    pub to_kernel: Option<Duration>,
    /// Until the harness saw the chain in the kernel (an upper bound: includes polling).
    #[serde(serialize_with = "optional_seconds")]
    pub confirmed: Option<Duration>,
    /// iptables-restore calls the agent made in this step.
    pub restore_calls: usize,
    /// Bytes it fed them.
    pub restore_bytes: u64,
    /// Their wall time together.
    #[serde(serialize_with = "seconds")]
    pub restore_time: Duration,
    /// The agent's own CPU time spent in this step.
    #[serde(serialize_with = "seconds")]
    pub agent_cpu: Duration,
}

/// Everything one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Services in the cluster.
    pub services: u32,
    /// Endpoints per service.
    pub endpoints: u32,
    /// iptables backend.
    pub backend: Backend,
    /// Proxy mode.
    pub mode: Mode,
    /// The agent binary.
    pub agent: String,
    /// `/proc/loadavg` (1, 5, 15 min) when the run started and when it ended.
    pub load_average: [String; 2],
    /// The limit on the first sync and on the floor's restores.
    #[serde(serialize_with = "seconds")]
    pub timeout: Duration,
    /// The limit on each change.
    #[serde(serialize_with = "seconds")]
    pub change_timeout: Duration,
    /// First complete programming, from the agent's start.
    pub first_sync: Step,
    /// What one dump of the table showed after the first sync (or why there is none).
    pub table: Result<TableCount, String>,
    /// One endpoint of one service replaced: the median of `endpoint_changes`.
    pub endpoint_change: Option<Step>,
    /// Every endpoint change timed, in order.
    pub endpoint_changes: Vec<Step>,
    /// One new service with its endpoints.
    pub new_service: Option<Step>,
    /// The agent's memory and CPU at the end (before it was stopped).
    pub agent_usage: Option<ProcessUsage>,
    /// All restore calls of the run.
    pub restore_calls: usize,
    /// All bytes fed to iptables-restore in the run.
    pub restore_bytes: u64,
    /// The kernel's floor (or why there is none).
    pub floor: Result<Floor, String>,
    /// What went wrong or was skipped.
    pub notes: Vec<String>,
}

/// Serializes a duration as seconds.
pub fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Serializes durations as seconds.
pub fn all_seconds<S: Serializer>(d: &[Duration], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(d.iter().map(Duration::as_secs_f64))
}

/// Serializes an optional duration as seconds or null.
pub fn optional_seconds<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

fn time(d: Option<Duration>, limit: &str) -> String {
    match d {
        Some(d) if d < Duration::from_secs(1) => format!("{:.1} ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.2} s", d.as_secs_f64()),
        None => format!("did not finish in {limit}"),
    }
}

fn mib(bytes: u64) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0)),
    }
}

/// CPU times come in clock ticks (10 ms).
fn cpu(d: Duration) -> String {
    if d.is_zero() {
        "<10 ms".into()
    } else {
        time(Some(d), "")
    }
}

fn step_row(f: &mut fmt::Formatter<'_>, name: &str, step: &Step, limit: &str) -> fmt::Result {
    writeln!(
        f,
        "  {name:<22} {:>24}  (seen {:>10}; {} restore(s), {} in {}; agent CPU {})",
        time(step.to_kernel, limit),
        time(step.confirmed, limit),
        step.restore_calls,
        mib(step.restore_bytes),
        time(Some(step.restore_time), limit),
        cpu(step.agent_cpu),
    )
}

/// The spread of several endpoint changes: to the kernel, the restores alone, and the rest
/// (the agent's own part, with the relay's start-up).
fn changes_row(f: &mut fmt::Formatter<'_>, steps: &[Step]) -> fmt::Result {
    let finished: Vec<&Step> = steps.iter().filter(|s| s.to_kernel.is_some()).collect();
    let to_kernel = spread(finished.iter().filter_map(|s| s.to_kernel));
    let restore = spread(finished.iter().map(|s| s.restore_time));
    let rest = spread(
        finished
            .iter()
            .filter_map(|s| s.to_kernel.map(|t| t.saturating_sub(s.restore_time))),
    );
    writeln!(
        f,
        "  endpoint changes ×{:<4}  min / median / max: {to_kernel}; restores alone {restore}; the rest {rest}{}",
        steps.len(),
        if finished.len() < steps.len() {
            format!(" ({} did not finish)", steps.len() - finished.len())
        } else {
            String::new()
        }
    )
}

/// `min / median / max` of some durations.
fn spread(values: impl Iterator<Item = Duration>) -> String {
    let sorted = sorted(values);
    match (sorted.first(), median(&sorted), sorted.last()) {
        (Some(min), Some(median), Some(max)) => format!(
            "{} / {} / {}",
            time(Some(*min), ""),
            time(Some(median), ""),
            time(Some(*max), "")
        ),
        _ => "none finished".into(),
    }
}

/// The step with the median time to the kernel (one that did not finish counts as the
/// slowest).
pub fn median_step(steps: &[Step]) -> Option<Step> {
    let mut sorted: Vec<&Step> = steps.iter().collect();
    sorted.sort_by_key(|step| step.to_kernel.unwrap_or(Duration::MAX));
    sorted.get(sorted.len() / 2).map(|step| (*step).clone())
}

/// Durations in ascending order.
pub fn sorted(values: impl Iterator<Item = Duration>) -> Vec<Duration> {
    let mut sorted: Vec<Duration> = values.collect();
    sorted.sort();
    sorted
}

/// The median of durations already in ascending order (the upper one of an even count).
pub fn median(sorted: &[Duration]) -> Option<Duration> {
    sorted.get(sorted.len() / 2).copied()
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let limit = format!("{} s", self.timeout.as_secs());
        writeln!(
            f,
            "kproxy-scale: {} services × {} endpoints, mode {}, backend {}",
            self.services,
            self.endpoints,
            self.mode.name(),
            self.backend.name()
        )?;
        writeln!(f, "  agent                  {}", self.agent)?;
        writeln!(
            f,
            "  load average           {} (start), {} (end)",
            self.load_average[0], self.load_average[1]
        )?;
        step_row(f, "first sync", &self.first_sync, &limit)?;
        match &self.table {
            Ok(t) => writeln!(
                f,
                "  kernel table           {} rules, {} DNAT (dump took {})",
                t.rules,
                t.dnat_rules,
                time(Some(t.dump_time), &limit)
            )?,
            Err(e) => writeln!(f, "  kernel table           not counted: {e}")?,
        }
        let change_limit = format!("{} s", self.change_timeout.as_secs());
        for (name, step) in [
            ("endpoint change", &self.endpoint_change),
            ("new service", &self.new_service),
        ] {
            match step {
                Some(step) => step_row(f, name, step, &change_limit)?,
                None => writeln!(f, "  {name:<22} not measured")?,
            }
        }
        if self.endpoint_changes.len() > 1 {
            changes_row(f, &self.endpoint_changes)?;
        }
        if let Some(usage) = &self.agent_usage {
            writeln!(
                f,
                "  agent memory           peak {} (VmHWM), now {}",
                mib(usage.peak_rss_bytes),
                mib(usage.rss_bytes)
            )?;
            writeln!(
                f,
                "  agent CPU              {} (children: {})",
                cpu(usage.cpu),
                cpu(usage.children_cpu)
            )?;
        }
        writeln!(
            f,
            "  fed to {} {} in {} call(s){}",
            self.mode.tool_label(),
            mib(self.restore_bytes),
            self.restore_calls,
            if self.mode == Mode::Nftables {
                " (the batches the agent writes over netlink are not counted)"
            } else {
                ""
            }
        )?;
        match &self.floor {
            Ok(floor) if self.mode == Mode::Nftables => {
                writeln!(
                    f,
                    "  floor: nft -f of the full ruleset ({}, {} lines) into an empty namespace: {}",
                    mib(floor.ruleset_bytes),
                    floor.ruleset_lines,
                    time(floor.full_restore, &limit),
                )?;
                let small = match floor.full_restore {
                    Some(_) => time(floor.small_change, &limit),
                    None => "not run (no full table)".into(),
                };
                writeln!(
                    f,
                    "  floor: one small nft -f change (a chain, a rule) into the full table: {small}"
                )?;
            }
            Ok(floor) => {
                writeln!(
                    f,
                    "  floor: iptables-{}-restore of the full ruleset ({}, {} lines): {}; with --noflush: {}",
                    self.backend.name(),
                    mib(floor.ruleset_bytes),
                    floor.ruleset_lines,
                    time(floor.full_restore, &limit),
                    time(floor.full_restore_noflush, &limit),
                )?;
                let (small, hooked) = match floor.full_restore {
                    Some(_) if floor.small_changes_hooked.len() > 1 => (
                        time(floor.small_change, &limit),
                        format!(
                            "{} (×{}: {})",
                            time(floor.small_change_hooked, &limit),
                            floor.small_changes_hooked.len(),
                            spread(floor.small_changes_hooked.iter().copied())
                        ),
                    ),
                    Some(_) => (
                        time(floor.small_change, &limit),
                        time(floor.small_change_hooked, &limit),
                    ),
                    None => ("not run (no full table)".into(), "not run".into()),
                };
                writeln!(
                    f,
                    "  floor: one small --noflush change into the full table: {small}; with the jumps from the built-in chains in place: {hooked}"
                )?;
            }
            Err(e) => writeln!(f, "  floor                  not measured: {e}")?,
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn step(to_kernel: Option<u64>) -> Step {
        Step {
            to_kernel: to_kernel.map(ms),
            ..Step::default()
        }
    }

    #[test]
    fn the_median_step_counts_an_unfinished_one_as_the_slowest() {
        let steps = [step(Some(300)), step(None), step(Some(100))];
        assert_eq!(median_step(&steps).and_then(|s| s.to_kernel), Some(ms(300)));
        let steps = [step(Some(300)), step(Some(200)), step(Some(100))];
        assert_eq!(median_step(&steps).and_then(|s| s.to_kernel), Some(ms(200)));
        assert!(median_step(&[]).is_none());
    }

    #[test]
    fn spreads_are_min_median_max_in_order() {
        let values = [ms(320), ms(270), ms(360)].into_iter();
        assert_eq!(spread(values), "270.0 ms / 320.0 ms / 360.0 ms");
        assert_eq!(spread(std::iter::empty()), "none finished");
        assert_eq!(median(&sorted([ms(4), ms(1)].into_iter())), Some(ms(4)));
    }
}
