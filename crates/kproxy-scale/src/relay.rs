//! The restore relay: the agent runs it in place of iptables-restore (through
//! `KPROXY_IPTABLES_RESTORE`) or nft (`KPROXY_NFT`); it passes stdin and the arguments on
//! to the real tool and appends one line per call to a log: bytes fed, microseconds, exit
//! code.

use crate::args::RelayArgs;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// One call of iptables-restore by the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreCall {
    /// Bytes of restore input.
    pub bytes: u64,
    /// Wall time of the real tool.
    pub elapsed: Duration,
    /// Its exit code (-1 when killed by a signal).
    pub code: i32,
}

/// Runs the relay; exits as the real tool did.
pub fn main(args: &RelayArgs) -> ExitCode {
    match relay(args) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("kproxy-scale restore-relay: {e}");
            ExitCode::from(111)
        }
    }
}

fn relay(args: &RelayArgs) -> std::io::Result<i32> {
    let started = Instant::now();
    let mut child = Command::new(&args.real)
        .args(&args.args)
        .stdin(Stdio::piped())
        .spawn()?;
    let mut bytes = 0u64;
    if let Some(mut pipe) = child.stdin.take() {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let n = stdin.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            if pipe.write_all(&buffer[..n]).is_err() {
                // The tool stopped reading (it failed); its status says why.
                break;
            }
        }
    }
    let code = child.wait()?.code().unwrap_or(-1);
    let line = format!("{bytes} {} {code}\n", started.elapsed().as_micros());
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)?
        .write_all(line.as_bytes())?;
    Ok(code)
}

/// Reads the calls logged so far that fed the tool rules (none if the log does not
/// exist yet). Calls without input (the nftables mode's `nft list` probes) are left out.
pub fn read_log(path: &Path) -> Vec<RestoreCall> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(parse_line)
        .filter(|call| call.bytes > 0)
        .collect()
}

fn parse_line(line: &str) -> Option<RestoreCall> {
    let mut fields = line.split_whitespace();
    Some(RestoreCall {
        bytes: fields.next()?.parse().ok()?,
        elapsed: Duration::from_micros(fields.next()?.parse().ok()?),
        code: fields.next()?.parse().ok()?,
    })
}

/// The shell script the agent is pointed at: it execs this program as the relay.
pub fn script(harness: &Path, log: &Path, real: &Path) -> String {
    format!(
        "#!/bin/sh\nexec {} restore-relay --log {} --real {} -- \"$@\"\n",
        shell_quote(&harness.to_string_lossy()),
        shell_quote(&log.to_string_lossy()),
        shell_quote(&real.to_string_lossy()),
    )
}

/// The shell script that runs the agent's x_tables writer (`kproxy xtables-restore`) as the
/// agent runs it on the legacy backend, with `real` as its fallback.
pub fn writer_script(kproxy: &Path, real: &Path) -> String {
    format!(
        "#!/bin/sh\nexec {} xtables-restore --fallback {} \"$@\"\n",
        shell_quote(&kproxy.to_string_lossy()),
        shell_quote(&real.to_string_lossy()),
    )
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_round_trip_and_scripts_quote_paths() {
        assert_eq!(
            parse_line("1234 5678 0"),
            Some(RestoreCall {
                bytes: 1234,
                elapsed: Duration::from_micros(5678),
                code: 0
            })
        );
        assert_eq!(parse_line("garbage"), None);
        let text = script(
            Path::new("/opt/it's/kproxy-scale"),
            Path::new("/tmp/log"),
            Path::new("/usr/sbin/iptables-nft-restore"),
        );
        assert!(text.contains(r"'/opt/it'\''s/kproxy-scale' restore-relay"));
        assert!(text.ends_with("-- \"$@\"\n"));
    }
}
