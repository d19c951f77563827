//! Running a kernel tool (`ipset`, `ip`), optionally inside a named network
//! namespace: the one place that spawns processes.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use crate::error::{Error, Result};

/// How long one tool may run before it is killed (with anything it started) and its
/// sync fails: generous for a large `ipset restore`, short of leaving the sync loop hung.
pub(crate) const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `program args` (in `netns`, if given) with `stdin` as its input and
/// returns its stdout; a non-zero exit is an [`Error::Tool`] with its stderr, a tool
/// still running after [`TOOL_TIMEOUT`] an [`Error::ToolTimeout`].
///
/// The input is written from another thread while the output is read, so a
/// tool that writes much before reading all its input cannot block us; and a
/// tool that stops reading early (`ipset restore` at its first failing line)
/// is reported by its exit status and stderr, not by the broken pipe.
pub(crate) fn run(
    netns: Option<&str>,
    program: &str,
    args: &[&str],
    stdin: &str,
) -> Result<String> {
    run_within(netns, program, args, stdin, TOOL_TIMEOUT)
}

fn run_within(
    netns: Option<&str>,
    program: &str,
    args: &[&str],
    stdin: &str,
    timeout: Duration,
) -> Result<String> {
    let mut argv: Vec<&str> = Vec::new();
    if let Some(ns) = netns {
        argv.extend(["ip", "netns", "exec", ns]);
    }
    argv.push(program);
    argv.extend_from_slice(args);
    let line = argv.join(" ");
    let write = |pipe: &mut dyn Write| pipe.write_all(stdin.as_bytes());
    let done = kproxy_process::run(
        Command::new(argv[0]).args(&argv[1..]),
        Some(&write),
        timeout,
    )
    .map_err(|e| Error::io(format!("start {line}"), e))?;
    let Some(status) = done.status else {
        return Err(Error::ToolTimeout {
            command: line,
            after: timeout,
        });
    };
    if !status.success() {
        return Err(Error::Tool {
            command: line,
            status: status.to_string(),
            stderr: String::from_utf8_lossy(&done.stderr).trim().to_string(),
        });
    }
    done.input
        .map_err(|e| Error::io(format!("write to {line}"), e))?;
    Ok(String::from_utf8_lossy(&done.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tool_that_stops_reading_reports_its_own_failure() {
        let input = "x\n".repeat(1 << 20);
        let error = run(None, "sh", &["-c", "echo refused >&2; exit 3"], &input)
            .expect_err("the tool fails");
        let text = error.to_string();
        assert!(text.contains("refused"), "{text}");
    }

    #[test]
    fn a_hung_tool_is_killed_with_its_children_at_the_deadline() {
        let deadline = Duration::from_millis(200);
        let error = run_within(None, "sh", &["-c", "sleep 30 & sleep 30"], "", deadline)
            .expect_err("the tool is killed");
        assert!(matches!(error, Error::ToolTimeout { .. }), "{error}");
    }

    #[test]
    fn large_input_and_output_do_not_block() {
        let input = "line\n".repeat(1 << 18);
        let out = run(None, "cat", &[], &input).expect("cat echoes");
        assert_eq!(out.len(), input.len());
    }
}
