//! Running a tool with optional input, captured output and a deadline; a tool that
//! outlives its deadline (or a Ctrl-C) is killed and reaped.

use crate::signals::interrupted;
use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How a finished tool ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// What it printed.
    pub stdout: Vec<u8>,
    /// Its error output, lossily decoded.
    pub stderr: String,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
}

/// Why a tool did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// It could not be started.
    #[error("starting {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The error.
        source: std::io::Error,
    },
    /// It ran past its deadline (or the run was interrupted) and was killed.
    #[error("{program} did not finish in {after:?}")]
    Timeout {
        /// The program.
        program: String,
        /// The deadline.
        after: Duration,
    },
}

/// Whether a Ctrl-C cuts a tool short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnInterrupt {
    /// Kill it: the run is ending.
    Kill,
    /// Let it finish: it is part of the cleanup.
    Finish,
}

/// Runs `program args…` with `stdin` as input; kills it after `timeout` or on Ctrl-C.
pub fn run(
    program: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Finished, ExecError> {
    run_with(program, args, stdin, timeout, OnInterrupt::Kill)
}

fn run_with(
    program: &str,
    args: &[&str],
    stdin: Option<&[u8]>,
    timeout: Duration,
    on_interrupt: OnInterrupt,
) -> Result<Finished, ExecError> {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ExecError::Spawn {
            program: program.to_string(),
            source,
        })?;
    let input = child.stdin.take();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    std::thread::scope(|scope| {
        if let (Some(mut pipe), Some(bytes)) = (input, stdin) {
            // A tool that exits early closes the pipe; its status says why.
            scope.spawn(move || pipe.write_all(bytes));
        }
        let stdout = scope.spawn(move || read_all(out.as_mut()));
        let stderr = scope.spawn(move || read_all(err.as_mut()));
        let status = wait_until(&mut child, started + timeout, on_interrupt);
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        match status {
            Some(status) => Ok(Finished {
                status,
                stdout,
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
                elapsed: started.elapsed(),
            }),
            None => Err(ExecError::Timeout {
                program: program.to_string(),
                after: timeout,
            }),
        }
    })
}

fn read_all(pipe: Option<&mut impl Read>) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(pipe) = pipe {
        // A read error ends the output early; the exit status still tells the outcome.
        let _ = pipe.read_to_end(&mut bytes);
    }
    bytes
}

/// Waits for the child until `deadline`; on timeout (or a Ctrl-C, if it counts) kills and
/// reaps it.
fn wait_until(
    child: &mut Child,
    deadline: Instant,
    on_interrupt: OnInterrupt,
) -> Option<ExitStatus> {
    loop {
        let cut_short = on_interrupt == OnInterrupt::Kill && interrupted();
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline && !cut_short => {
                std::thread::sleep(Duration::from_millis(1));
            }
            _ => {
                // Already gone or killable: either way it is reaped below.
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Runs a short command that must succeed; its error output is the error.
pub fn run_ok(program: &str, args: &[&str], timeout: Duration) -> Result<Finished, String> {
    checked(program, args, run(program, args, None, timeout))
}

/// Runs a cleanup command that must succeed; a Ctrl-C does not cut it short.
pub fn run_cleanup(program: &str, args: &[&str], timeout: Duration) -> Result<Finished, String> {
    let result = run_with(program, args, None, timeout, OnInterrupt::Finish);
    checked(program, args, result)
}

fn checked(
    program: &str,
    args: &[&str],
    result: Result<Finished, ExecError>,
) -> Result<Finished, String> {
    let finished = result.map_err(|e| e.to_string())?;
    if finished.status.success() {
        Ok(finished)
    } else {
        Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            finished.status,
            finished.stderr.trim()
        ))
    }
}
