//! Child processes with a deadline, shared by the agent's kernel tool runners (iptables,
//! nft, ipset, ip). The child leads its own process group, so one that outlives its deadline
//! is killed together with anything it started, and reaped: hung tools never pile up, and
//! the caller learns of a tool's exit the moment it happens (no polling).

use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Writes a child's standard input (on a thread of its own, while the child runs).
pub type InputWriter<'a> = &'a (dyn Fn(&mut dyn Write) -> io::Result<()> + Sync);

/// What a child did.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status; `None`: it ran past the deadline and was killed.
    pub status: Option<ExitStatus>,
    /// Its standard output.
    pub stdout: Vec<u8>,
    /// Its standard error.
    pub stderr: Vec<u8>,
    /// How writing its input went (a child that exits early closes the pipe; its status
    /// tells what happened).
    pub input: io::Result<()>,
}

/// Starts `command` in a process group of its own with its output captured and its
/// input written by `stdin` (none: `/dev/null`) while it runs, and waits for it at most
/// `timeout`. Errs only when the child cannot be started.
pub fn run(
    command: &mut Command,
    stdin: Option<InputWriter<'_>>,
    timeout: Duration,
) -> io::Result<Finished> {
    let mut child = command
        .process_group(0)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pipe = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    Ok(std::thread::scope(|scope| {
        let writer = match (pipe, stdin) {
            (Some(mut pipe), Some(write)) => Some(scope.spawn(move || write(&mut pipe))),
            _ => None,
        };
        let out = scope.spawn(move || read_all(stdout.as_mut()));
        let err = scope.spawn(move || read_all(stderr.as_mut()));
        let status = wait_with_deadline(&mut child, timeout);
        let input = writer.map_or(Ok(()), |w| {
            w.join()
                .unwrap_or_else(|_| Err(io::Error::other("the input writer panicked")))
        });
        Finished {
            status,
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
            input,
        }
    }))
}

/// Everything a pipe yields until it closes (a read error ends it early; the exit status
/// still tells the outcome).
fn read_all(pipe: Option<&mut impl Read>) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(pipe) = pipe {
        let _ = pipe.read_to_end(&mut bytes);
    }
    bytes
}

/// Waits for the child, waking the moment it exits. Past `timeout` it kills the child's
/// process group, reaps the child and returns `None` (also when the wait itself fails).
fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let pid = child.id();
    let (exited, exit) = mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let _ = exited.send(child.wait());
        });
        match exit.recv_timeout(timeout) {
            Ok(status) => status.ok(),
            Err(_) => {
                kill_group(pid);
                let _ = exit.recv();
                None
            }
        }
    })
}

/// Kills the process group `pid` leads.
fn kill_group(pid: u32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals a process group; it has no memory-safety
    // preconditions. The child is not reaped yet, so its pid (and group) is still its own.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::time::Instant;

    fn sh(script: &str, stdin: Option<InputWriter<'_>>, timeout: Duration) -> Finished {
        run(Command::new("/bin/sh").args(["-c", script]), stdin, timeout).expect("sh starts")
    }

    #[test]
    fn a_finished_child_gives_its_status_output_and_error() {
        let write = |pipe: &mut dyn Write| pipe.write_all(b"hello\n");
        let done = sh(
            "cat; echo oops >&2; exit 3",
            Some(&write),
            Duration::from_secs(60),
        );
        assert_eq!(done.status.and_then(|s| s.code()), Some(3));
        assert_eq!(done.stdout, b"hello\n");
        assert_eq!(done.stderr, b"oops\n");
        assert!(done.input.is_ok());
    }

    #[test]
    fn a_hung_child_and_its_own_children_are_killed_at_the_deadline() {
        let started = Instant::now();
        let done = sh("sleep 30 & sleep 30", None, Duration::from_millis(200));
        assert!(done.status.is_none());
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the deadline was not kept, or a grandchild kept the pipes open"
        );
    }

    #[test]
    fn a_killed_child_is_reaped() {
        let mut child = Command::new("/bin/sh")
            .args(["-c", "sleep 30"])
            .process_group(0)
            .spawn()
            .expect("sh starts");
        assert!(wait_with_deadline(&mut child, Duration::from_millis(200)).is_none());
        let reaped = child.try_wait().ok().flatten();
        assert_eq!(reaped.and_then(|s| s.signal()), Some(libc::SIGKILL));
    }
}
