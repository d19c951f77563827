//! Programming a cluster and knowing when it is done: the agent's metrics report a sync,
//! the kernel holds every Service's ClusterIP entry with the measured one where it should
//! be, and the measured ClusterIP answers. All within a cap: past it the case is reported
//! as not programmed rather than waited for.

use crate::connect;
use crate::error::BenchError;
use crate::kernel::{self, Dispatch, Placement};
use kproxy_lab::{Agent, Lab, LabError};
use serde::Serialize;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often the agent's metrics are read.
const POLL: Duration = Duration::from_millis(200);
/// Least time between two kernel dumps (a large one is itself slow).
const DUMP_EVERY: Duration = Duration::from_secs(2);

/// How programming went.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Programming {
    /// Done: synced, complete in the kernel, answering.
    Programmed {
        /// From the agent's start until its metrics first reported a sync.
        synced_s: f64,
        /// From the agent's start until the kernel check and a connection confirmed it.
        confirmed_s: f64,
        /// What the kernel held.
        dispatch: Dispatch,
    },
    /// Not done within the cap.
    NotProgrammed {
        /// The cap.
        cap_s: f64,
        /// From the agent's start until its metrics reported a sync, if they did.
        synced_s: Option<f64>,
        /// What the kernel held at the last look, if it was looked at.
        dispatch: Option<Dispatch>,
        /// What was still missing.
        reason: String,
    },
}

/// What a case waits for.
pub struct Expected {
    /// Services in all.
    pub services: usize,
    /// The measured Service's address.
    pub target: SocketAddr,
    /// The cap on the whole wait.
    pub cap: Duration,
}

/// Waits for `agent` (started at `started`) to program `expected` into the lab's node.
/// An agent that exits is an error; running out of time is [`Programming::NotProgrammed`].
pub fn wait_programmed(
    lab: &Lab,
    agent: &mut Agent,
    started: Instant,
    expected: &Expected,
) -> Result<Programming, BenchError> {
    let deadline = started + expected.cap;
    let mut synced: Option<Duration> = None;
    let mut dispatch: Option<Dispatch> = None;
    let mut last_dump: Option<Instant> = None;
    let mut reason = String::from("the agent reported no sync");
    while Instant::now() < deadline {
        if !agent.is_running() {
            return Err(agent_exited(agent));
        }
        if synced.is_none() && agent.last_sync_timestamp().is_some_and(|t| t > 0.0) {
            synced = Some(started.elapsed());
        }
        if synced.is_some() && last_dump.is_none_or(|t| t.elapsed() >= DUMP_EVERY) {
            last_dump = Some(Instant::now());
            let seen = kernel::inspect(&lab.node, agent.mode())?;
            dispatch = Some(seen);
            match confirm(lab, &seen, expected)? {
                Ok(()) => {
                    return Ok(Programming::Programmed {
                        synced_s: synced.map_or(0.0, |d| d.as_secs_f64()),
                        confirmed_s: started.elapsed().as_secs_f64(),
                        dispatch: seen,
                    })
                }
                Err(missing) => reason = missing,
            }
        }
        std::thread::sleep(POLL);
    }
    Ok(Programming::NotProgrammed {
        cap_s: expected.cap.as_secs_f64(),
        synced_s: synced.map(|d| d.as_secs_f64()),
        dispatch,
        reason,
    })
}

/// Whether the kernel is complete and the measured ClusterIP answers; else what is missing.
fn confirm(
    lab: &Lab,
    seen: &Dispatch,
    expected: &Expected,
) -> Result<Result<(), String>, BenchError> {
    if seen.services != expected.services {
        return Ok(Err(format!(
            "{} of {} services in the kernel",
            seen.services, expected.services
        )));
    }
    match seen.placement {
        Placement::LastOfWalk | Placement::InVerdictMap => {}
        Placement::Missing => return Ok(Err("the measured service is not in the kernel".into())),
        // Every service is there, so this will not change: the figures would not be the
        // worst case they claim to be.
        Placement::InWalkAt(_) => return Err(BenchError::Placement(seen.placement)),
    }
    Ok(connect::answers(&lab.client_pod, expected.target)?
        .map_err(|why| format!("the measured ClusterIP does not answer: {why}")))
}

fn agent_exited(agent: &Agent) -> BenchError {
    BenchError::Lab(LabError::Agent {
        message: "exited while programming".into(),
        log: agent.log_tail(40),
    })
}
