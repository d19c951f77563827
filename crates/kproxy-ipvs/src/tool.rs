//! Running a kernel tool (`ipset`, `ip`), optionally inside a named network
//! namespace: the one place that spawns processes.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Runs `program args` (in `netns`, if given) with `stdin` as its input and
/// returns its stdout; a non-zero exit is an [`Error::Tool`] with its stderr.
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
    let mut argv: Vec<&str> = Vec::new();
    if let Some(ns) = netns {
        argv.extend(["ip", "netns", "exec", ns]);
    }
    argv.push(program);
    argv.extend_from_slice(args);
    let line = argv.join(" ");
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("start {line}"), e))?;
    let (out, written) = std::thread::scope(|scope| {
        let writer = child
            .stdin
            .take()
            .map(|mut input| scope.spawn(move || input.write_all(stdin.as_bytes())));
        let out = child.wait_with_output();
        let written = writer.map_or(Ok(()), |w| {
            w.join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the input writer panicked")))
        });
        (out, written)
    });
    let out = out.map_err(|e| Error::io(format!("wait for {line}"), e))?;
    if !out.status.success() {
        return Err(Error::Tool {
            command: line,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    written.map_err(|e| Error::io(format!("write to {line}"), e))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
    fn large_input_and_output_do_not_block() {
        let input = "line\n".repeat(1 << 18);
        let out = run(None, "cat", &[], &input).expect("cat echoes");
        assert_eq!(out.len(), input.len());
    }
}
