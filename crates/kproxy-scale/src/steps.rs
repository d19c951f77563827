//! The timed steps against a running agent: wait for a sync that put given chains in the
//! kernel, and account the restore calls and CPU time it took.

use crate::agent::Agent;
use crate::metrics::Scrape;
use crate::probe::Kernel;
use crate::relay::{read_log, RestoreCall};
use crate::report::Step;
use crate::signals::interrupted;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often `/metrics` is read while waiting.
const POLL: Duration = Duration::from_millis(20);

/// The agent and how to watch it.
pub struct Session {
    /// The running agent.
    pub agent: Agent,
    /// Its `/metrics` address.
    pub metrics: SocketAddr,
    /// The kernel it programs.
    pub kernel: Kernel,
    /// The relay's log.
    pub restore_log: PathBuf,
}

/// Where a step started.
pub struct Mark {
    instant: Instant,
    wall: f64,
    restore_calls: usize,
    agent_cpu: Duration,
}

/// Wall clock as Unix seconds, as the agent's metrics give it.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Mark {
    /// The mark for the agent's start: nothing restored, no CPU used yet.
    pub fn before_start() -> Mark {
        Mark {
            instant: Instant::now(),
            wall: unix_now(),
            restore_calls: 0,
            agent_cpu: Duration::ZERO,
        }
    }
}

impl Session {
    /// Marks the start of a step: now, the restore calls so far, the agent's CPU so far.
    pub fn mark(&self) -> Mark {
        Mark {
            restore_calls: read_log(&self.restore_log).len(),
            agent_cpu: self.agent.usage().map(|u| u.cpu).unwrap_or_default(),
            ..Mark::before_start()
        }
    }

    /// Waits (until `deadline`) for a sync that ended after `since` and after which every
    /// chain in `chains` is in the kernel. Errors if the agent dies or the run is
    /// interrupted; a missed deadline is a step that did not finish.
    pub fn wait_for(
        &mut self,
        since: &Mark,
        chains: &[String],
        deadline: Instant,
    ) -> Result<Step, String> {
        let mut checked = 0.0;
        let mut reached = None;
        while reached.is_none() && Instant::now() < deadline {
            if interrupted() {
                return Err("interrupted".into());
            }
            if let Some(status) = self.agent.exited() {
                return Err(format!(
                    "the agent exited ({status}):\n{}",
                    self.agent.log_tail(20)
                ));
            }
            let synced = Scrape::fetch(self.metrics).map_or(0.0, |s| s.last_sync());
            if synced > since.wall && synced != checked {
                checked = synced;
                if self.all_present(chains)? {
                    // The probe may have waited for the xtables lock of a sync that ended
                    // while it ran, and seen that sync's rules: credit the latest sync.
                    let after = Scrape::fetch(self.metrics).map_or(synced, |s| s.last_sync());
                    let credited = after.max(synced);
                    reached = Some((credited - since.wall, since.instant.elapsed()));
                }
            }
            std::thread::sleep(POLL);
        }
        Ok(self.account(since, reached))
    }

    fn all_present(&self, chains: &[String]) -> Result<bool, String> {
        for chain in chains {
            if !self.kernel.has_chain(chain)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The step's figures: times (if reached), restore calls since the mark, CPU since it.
    fn account(&self, since: &Mark, reached: Option<(f64, Duration)>) -> Step {
        let calls: Vec<RestoreCall> = read_log(&self.restore_log)
            .into_iter()
            .skip(since.restore_calls)
            .collect();
        let cpu = self.agent.usage().map(|u| u.cpu).unwrap_or_default();
        Step {
            to_kernel: reached.map(|(seconds, _)| Duration::from_secs_f64(seconds.max(0.0))),
            confirmed: reached.map(|(_, seen)| seen),
            restore_calls: calls.len(),
            restore_bytes: calls.iter().map(|c| c.bytes).sum(),
            restore_time: calls.iter().map(|c| c.elapsed).sum(),
            agent_cpu: cpu.saturating_sub(since.agent_cpu),
        }
    }
}
