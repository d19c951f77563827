//! The one place the agent starts kernel tools: a child process with stdin, captured
//! output and a deadline. A child that outlives its deadline is killed with its whole
//! process group and reaped, so hung tools never pile up.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// What a finished tool printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl ToolOutput {
    /// Whether the tool exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A tool could not be run to completion.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The program could not be started.
    #[error("running {}: {source}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The program ran past its deadline and was killed.
    #[error("{} did not finish within {after:?} and was killed", program.display())]
    Timeout {
        /// The program.
        program: PathBuf,
        /// The deadline.
        after: Duration,
    },
    /// The program failed.
    #[error("{} {args} failed ({status}): {stderr}", program.display())]
    Failed {
        /// The program.
        program: PathBuf,
        /// Its arguments, joined.
        args: String,
        /// Exit status, as text.
        status: String,
        /// The last lines of its standard error.
        stderr: String,
    },
    /// The input for the program could not be produced.
    #[error("tool input: {0}")]
    Input(String),
    /// A tool needed for this family or backend is not installed.
    #[error("{0} not found in PATH, /usr/sbin or /sbin")]
    Missing(String),
    /// A direct kernel call failed.
    #[error("{what}: {source}")]
    Syscall {
        /// What the call was for.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

impl KernelError {
    /// The error for a tool that exited with a non-zero status.
    pub fn failed(program: &Path, args: &[String], output: &ToolOutput) -> Self {
        let stderr: Vec<&str> = output.stderr.lines().rev().take(5).collect();
        KernelError::Failed {
            program: program.to_path_buf(),
            args: args.join(" "),
            status: output
                .code
                .map_or_else(|| "killed by a signal".into(), |c| format!("exit {c}")),
            stderr: stderr.into_iter().rev().collect::<Vec<_>>().join(" / "),
        }
    }
}

/// Runs `program args…`, writing `stdin` to it, and waits at most `timeout`.
pub fn run_tool(
    program: &Path,
    args: &[String],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<ToolOutput, KernelError> {
    match stdin {
        Some(bytes) => {
            let write = |pipe: &mut dyn Write| pipe.write_all(bytes);
            run_tool_with_input(program, args, Some(&write), timeout)
        }
        None => run_tool_with_input(program, args, None, timeout),
    }
}

/// Writes a tool's standard input (on a thread of its own, while the tool runs).
pub use kproxy_process::InputWriter;

/// [`run_tool`] with standard input produced by `stdin` as the tool reads it (a large
/// restore input is never copied into one buffer).
pub fn run_tool_with_input(
    program: &Path,
    args: &[String],
    stdin: Option<InputWriter<'_>>,
    timeout: Duration,
) -> Result<ToolOutput, KernelError> {
    let done = kproxy_process::run(Command::new(program).args(args), stdin, timeout).map_err(
        |source| KernelError::Spawn {
            program: program.to_path_buf(),
            source,
        },
    )?;
    match done.status {
        Some(status) => Ok(ToolOutput {
            code: status.code(),
            stdout: String::from_utf8_lossy(&done.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&done.stderr).into_owned(),
        }),
        None => Err(KernelError::Timeout {
            program: program.to_path_buf(),
            after: timeout,
        }),
    }
}

/// Finds a tool in `PATH`, then `/usr/sbin` and `/sbin` (often missing from `PATH`).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn sh(
        script: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ToolOutput, KernelError> {
        run_tool(
            Path::new("/bin/sh"),
            &["-c".to_string(), script.to_string()],
            stdin,
            timeout,
        )
    }

    #[test]
    fn captures_output_and_feeds_stdin() {
        let output = sh(
            "cat; echo oops >&2; exit 3",
            Some(b"hello\n"),
            Duration::from_secs(10),
        )
        .expect("runs");
        assert_eq!(output.code, Some(3));
        assert_eq!(output.stdout, "hello\n");
        assert_eq!(output.stderr, "oops\n");
    }

    #[test]
    fn kills_a_hung_tool_and_its_children() {
        let started = Instant::now();
        let error =
            sh("sleep 30 & sleep 30", None, Duration::from_millis(200)).expect_err("must time out");
        assert!(matches!(error, KernelError::Timeout { .. }), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the grandchild kept the pipes open"
        );
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let error = run_tool(
            Path::new("/nonexistent/iptables-restore"),
            &[],
            None,
            Duration::from_secs(1),
        )
        .expect_err("must fail");
        assert!(matches!(error, KernelError::Spawn { .. }));
        assert!(find_tool("sh").is_some());
        assert!(find_tool("no-such-tool-kproxy").is_none());
    }
}
