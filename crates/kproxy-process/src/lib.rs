//! Child processes with a deadline, shared by the agent's kernel tool runners (iptables,
//! nft, ipset, ip). The child leads its own process group, so one that outlives its deadline
//! is killed together with anything it started, and reaped: hung tools never pile up, and
//! the caller learns of a tool's exit the moment it happens (no polling).

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::time::Duration;

/// Makes the child of `command` lead a new process group, which [`wait_with_deadline`]
/// kills as a whole.
pub fn own_group(command: &mut Command) -> &mut Command {
    command.process_group(0)
}

/// Waits for a child started with [`own_group`], waking the moment it exits. Past
/// `timeout` it kills the child's process group, reaps the child and returns `None`
/// (also when the wait itself fails).
pub fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
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
    use std::process::Stdio;
    use std::time::Instant;

    fn start(script: &str) -> Child {
        own_group(Command::new("/bin/sh").args(["-c", script]))
            .stdout(Stdio::null())
            .spawn()
            .expect("sh starts")
    }

    #[test]
    fn a_finished_child_gives_its_status() {
        let mut child = start("exit 3");
        let status = wait_with_deadline(&mut child, Duration::from_secs(60));
        assert_eq!(status.and_then(|s| s.code()), Some(3));
    }

    #[test]
    fn a_hung_child_and_its_own_children_are_killed_at_the_deadline() {
        let started = Instant::now();
        let mut child = start("sleep 30 & sleep 30");
        assert!(wait_with_deadline(&mut child, Duration::from_millis(200)).is_none());
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the deadline was not kept"
        );
        let reaped = child.try_wait().ok().flatten();
        assert_eq!(reaped.and_then(|s| s.signal()), Some(libc::SIGKILL));
    }
}
