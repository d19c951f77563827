//! `kproxy xtables-restore`: `iptables-legacy-restore --noflush` without libiptc. The agent
//! runs it (its own executable) as the restore tool on the legacy backend. It reads the
//! input, encodes every rule, and for each `*table … COMMIT` reads the kernel's table,
//! applies the section and writes the table back with one `IPT_SO_SET_REPLACE`, under the
//! xtables lock. Input it does not encode, and any section the kernel refuses, go to the
//! real tool instead (that section and the ones after it), which then has the last word.
//!
//! It runs as a child process, as `iptables-restore` does, so that the table's copies (about
//! 150 MB each at 10,000 services) never count against the agent's memory.

use crate::kernel::xt_socket::XtSocket;
use kproxy_model::IpFamily;
use kproxy_xtables::restore::{Parser, Section};
use kproxy_xtables::table::Table;
use kproxy_xtables::{Family, XtError};
use std::fs::File;
use std::io::{self, BufRead, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The subcommand's arguments: those the agent passes to `iptables-restore`, and the tool to
/// hand input to when kproxy does not write it itself.
#[derive(Debug, Clone, clap::Args)]
pub struct XtablesRestoreArgs {
    /// The real restore tool (`iptables-legacy-restore` or `ip6tables-legacy-restore`).
    #[arg(long)]
    pub fallback: PathBuf,
    /// Write the IPv6 tables.
    #[arg(long)]
    pub ipv6: bool,
    /// Wait up to this many seconds for the xtables lock.
    #[arg(short = 'w', long = "wait", default_value_t = 0)]
    pub wait: u64,
    /// Leave chains the input does not mention alone (the only mode kproxy writes itself).
    #[arg(short = 'n', long)]
    pub noflush: bool,
    /// Accepted for the real tool's sake (kproxy's input carries no rule counters).
    #[arg(short = 'c', long)]
    pub counters: bool,
}

/// `iptables` exits with this when another program holds the xtables lock.
const LOCK_HELD: i32 = 4;
/// Where iptables takes its lock, unless `XTABLES_LOCKFILE` says otherwise.
const DEFAULT_LOCK_FILE: &str = "/run/xtables.lock";

/// Runs the subcommand on standard input; returns the exit code.
pub fn run_xtables_restore(args: &XtablesRestoreArgs) -> i32 {
    let (ip_family, family) = if args.ipv6 {
        (IpFamily::V6, Family::V6)
    } else {
        (IpFamily::V4, Family::V4)
    };
    let Input {
        bytes: input,
        sections,
    } = match read_input(family) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("kproxy xtables-restore: reading input: {e}");
            return 1;
        }
    };
    if !args.noflush {
        return fall_back(args, &input, "only --noflush is written by kproxy");
    }
    let sections = match sections {
        Ok(sections) => sections,
        Err(why) => return fall_back(args, &input, &why),
    };
    let lock = match XtablesLock::take(Duration::from_secs(args.wait)) {
        Ok(lock) => lock,
        Err(code) => return code,
    };
    let socket = match XtSocket::open(ip_family) {
        Ok(socket) => socket,
        Err(e) => {
            drop(lock);
            return fall_back(args, &input, &format!("opening a raw socket: {e}"));
        }
    };
    // Like libiptc, a table the input does not change is not written.
    for section in sections.into_iter().filter(|s| !s.commands.is_empty()) {
        let rest = section.span.start;
        if let Err(e) = write_section(&socket, family, section) {
            drop(lock);
            return fall_back(args, &input[rest..], &e);
        }
    }
    0
}

/// Standard input, read to its end.
struct Input {
    /// All of it, for the real tool should it be needed.
    bytes: Vec<u8>,
    /// Its sections, or why kproxy does not write them.
    sections: Result<Vec<Section>, String>,
}

/// Reads standard input to its end, parsing each line as it arrives (so that parsing a
/// first sync overlaps the agent writing it).
fn read_input(family: Family) -> io::Result<Input> {
    let mut input = Vec::new();
    let mut parser: Result<Parser, String> = Ok(Parser::new(family));
    let mut stdin = io::stdin().lock();
    loop {
        let start = input.len();
        if stdin.read_until(b'\n', &mut input)? == 0 {
            break;
        }
        if let Ok(lines) = &mut parser {
            let taken = std::str::from_utf8(&input[start..])
                .map_err(|_| "input is not UTF-8".to_string())
                .and_then(|line| lines.line(line).map_err(|e| e.to_string()));
            if let Err(why) = taken {
                parser = Err(why);
            }
        }
    }
    let sections = parser.and_then(|lines| lines.finish().map_err(|e| e.to_string()));
    Ok(Input {
        bytes: input,
        sections,
    })
}

/// Reads the section's table from the kernel, applies the section and writes it back.
fn write_section(socket: &XtSocket, family: Family, section: Section) -> Result<(), String> {
    let name = section.table.clone();
    let kernel = |what: &str, e: io::Error| format!("{what} table {name}: {e}");
    let info = socket
        .info(&name)
        .map_err(|e| kernel("reading", e))?
        .ok_or_else(|| format!("the kernel has no table {name}"))?;
    let entries = socket
        .entries(&name, info.size)
        .map_err(|e| kernel("reading", e))?;
    let mut table =
        Table::decode(family, &name, info, entries).map_err(|e: XtError| e.to_string())?;
    table.apply(section).map_err(|e| e.to_string())?;
    let mut replacement = table.encode().map_err(|e| e.to_string())?;
    let old_counters = socket
        .replace(&mut replacement)
        .map_err(|e| kernel("replacing", e))?;
    if let Some(counters) = table.counters(&replacement, &old_counters) {
        if let Err(e) = socket.add_counters(&counters) {
            eprintln!("kproxy xtables-restore: table {name} written, its counters not kept: {e}");
        }
    }
    // The process ends after its last table: freeing the decoded table's hundreds of
    // thousands of allocations would add about 40 ms (10k services) to every change.
    std::mem::forget(table);
    std::mem::forget(replacement);
    Ok(())
}

/// Hands `input` to the real tool with the same arguments; returns its exit code.
fn fall_back(args: &XtablesRestoreArgs, input: &[u8], why: &str) -> i32 {
    let mut tool_args = vec!["-w".to_string(), args.wait.to_string()];
    if args.noflush {
        tool_args.push("--noflush".to_string());
    }
    if args.counters {
        tool_args.push("--counters".to_string());
    }
    match run_tool(&args.fallback, &tool_args, input) {
        Ok(0) => {
            eprintln!(
                "kproxy xtables-restore: {why}; {} wrote it instead",
                args.fallback.display()
            );
            0
        }
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "kproxy xtables-restore: {why}; running {}: {e}",
                args.fallback.display()
            );
            1
        }
    }
}

fn run_tool(program: &Path, args: &[String], input: &[u8]) -> io::Result<i32> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        // A tool that exits early closes the pipe; its status says what happened.
        let _ = stdin.write_all(input);
    }
    Ok(child.wait()?.code().unwrap_or(1))
}

/// The xtables lock every iptables tool takes (`flock` on `/run/xtables.lock`), held until
/// dropped.
struct XtablesLock {
    _file: File,
}

impl XtablesLock {
    /// Takes the lock, waiting up to `wait`; on failure, the exit code to end with.
    fn take(wait: Duration) -> Result<XtablesLock, i32> {
        let path = std::env::var_os("XTABLES_LOCKFILE")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_LOCK_FILE));
        let file = match File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(file) => file,
            Err(e) => {
                eprintln!("Fatal: can't open lock file {}: {e}", path.display());
                return Err(LOCK_HELD);
            }
        };
        let deadline = Instant::now() + wait;
        loop {
            // SAFETY: flock(2) on a descriptor `file` owns.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(XtablesLock { _file: file });
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "Another app is currently holding the xtables lock. Stopped waiting after {}s.",
                    wait.as_secs()
                );
                return Err(LOCK_HELD);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
