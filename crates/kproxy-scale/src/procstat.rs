//! What the kernel accounts to the agent process: peak and current resident memory
//! (`/proc/PID/status`) and CPU time, its own and its reaped children's (`/proc/PID/stat`).

use std::time::Duration;

/// Memory and CPU of one process at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcessUsage {
    /// `VmHWM`: peak resident set, bytes.
    pub peak_rss_bytes: u64,
    /// `VmRSS`: resident set now, bytes.
    pub rss_bytes: u64,
    /// User + system CPU of the process itself.
    #[serde(serialize_with = "crate::report::seconds")]
    pub cpu: Duration,
    /// User + system CPU of its children that it waited for (iptables-restore, …).
    #[serde(serialize_with = "crate::report::seconds")]
    pub children_cpu: Duration,
}

impl ProcessUsage {
    /// Reads a live process; `None` once it is gone.
    pub fn read(pid: u32) -> Option<ProcessUsage> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse(&status, &stat, clock_ticks_per_second())
    }
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// Parses `/proc/PID/status` and `/proc/PID/stat`.
fn parse(status: &str, stat: &str, ticks: u64) -> Option<ProcessUsage> {
    let kib = |key: &str| {
        status.lines().find_map(|line| {
            let value = line.strip_prefix(key)?.trim().strip_suffix("kB")?;
            value.trim().parse::<u64>().ok().map(|k| k * 1024)
        })
    };
    // Fields after the command name (which may hold spaces) start at `state`, field 3;
    // utime, stime, cutime, cstime are fields 14 to 17.
    let (_, after_comm) = stat.rsplit_once(')')?;
    let fields: Vec<u64> = after_comm
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let [utime, stime, cutime, cstime] = fields[..] else {
        return None;
    };
    let cpu = |t: u64| Duration::from_millis(t * 1000 / ticks);
    Some(ProcessUsage {
        peak_rss_bytes: kib("VmHWM:")?,
        rss_bytes: kib("VmRSS:")?,
        cpu: cpu(utime + stime),
        children_cpu: cpu(cutime + cstime),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_memory_and_cpu_even_with_spaces_in_the_name() {
        let status = "Name:\tkproxy\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n";
        let stat = "4242 (kp roxy) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 50 30 20 20 0 9 0 100";
        let usage = parse(status, stat, 100).expect("parses");
        assert_eq!(usage.peak_rss_bytes, 50 * 1024 * 1024);
        assert_eq!(usage.rss_bytes, 40 * 1024 * 1024);
        assert_eq!(usage.cpu, Duration::from_secs(2));
        assert_eq!(usage.children_cpu, Duration::from_millis(500));
    }
}
