//! Running a kernel tool (`ipset`, `ip`), optionally inside a named network
//! namespace: the one place that spawns processes.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Runs `program args` (in `netns`, if given) with `stdin` as its input and
/// returns its stdout; a non-zero exit is an [`Error::Tool`] with its stderr.
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
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.as_bytes())
            .map_err(|e| Error::io(format!("write to {line}"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("wait for {line}"), e))?;
    if !out.status.success() {
        return Err(Error::Tool {
            command: line,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
