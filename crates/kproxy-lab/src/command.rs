//! The one place that runs external tools (`ip`, `iptables-save`, `nft`):
//! with a deadline, both pipes drained on their own threads, and the command line in every
//! error.

use crate::error::LabError;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a lab tool may run before it is killed.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `program args...`, returns its standard output; a non-zero exit, a spawn failure
/// or a run past `timeout` is an error carrying standard error.
pub fn run_tool(program: &str, args: &[&str], timeout: Duration) -> Result<String, LabError> {
    let line = command_line(program, args);
    let fail = |message: String| LabError::Command {
        command: line.clone(),
        message,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                // Already exited or killed: either way it is reaped below.
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("still running after {timeout:?}, killed")));
            }
            Err(e) => return Err(fail(e.to_string())),
        }
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        Err(fail(format!("{status}: {}", err.trim())))
    }
}

/// Runs `ip args...` with the default deadline.
pub fn ip(args: &[&str]) -> Result<String, LabError> {
    run_tool("ip", args, TOOL_TIMEOUT)
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            // A pipe that breaks mid-way leaves what was read so far, which is all there is.
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// The command as a shell would show it.
pub fn command_line(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a tool is installed in one of the usual system directories.
pub fn tool_exists(name: &str) -> bool {
    [
        "/usr/sbin",
        "/sbin",
        "/usr/bin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ]
    .iter()
    .any(|dir| std::path::Path::new(dir).join(name).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_failures_carry_the_command() {
        assert_eq!(
            run_tool("sh", &["-c", "echo hi"], TOOL_TIMEOUT).ok(),
            Some("hi\n".to_string())
        );
        let failed = run_tool("sh", &["-c", "echo bad >&2; exit 3"], TOOL_TIMEOUT);
        let message = failed.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("sh -c") && message.contains("bad"),
            "{message}"
        );
    }

    #[test]
    fn a_slow_tool_is_killed() {
        let started = Instant::now();
        let result = run_tool("sleep", &["5"], Duration::from_millis(200));
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
