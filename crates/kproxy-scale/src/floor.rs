//! The kernel's floor: how long the backend's iptables-restore alone takes to load the
//! full ruleset kproxy renders for the cluster (`kproxy rules`) into an empty namespace, and
//! then one small `--noflush` change into that full table.

use crate::args::Backend;
use crate::exec::{run, run_ok};
use crate::netns::Netns;
use std::path::Path;
use std::time::Duration;

/// The small change: one new chain with one DNAT rule.
const SMALL_CHANGE: &str = "*nat\n\
    :KUBE-SCALE-FLOOR - [0:0]\n\
    -A KUBE-SCALE-FLOOR -p tcp -m tcp -j DNAT --to-destination 10.127.255.1:8080\n\
    COMMIT\n";
/// How long `kproxy rules` may take.
const RENDER_TIMEOUT: Duration = Duration::from_secs(300);

/// The floor for one cluster and backend.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Floor {
    /// Size of the full ruleset.
    pub ruleset_bytes: u64,
    /// Lines of the full ruleset.
    pub ruleset_lines: u64,
    /// iptables-restore of the full ruleset into empty tables; `None`: did not finish.
    #[serde(serialize_with = "crate::report::optional_seconds")]
    pub full_restore: Option<Duration>,
    /// One small `--noflush` restore into the full table.
    #[serde(serialize_with = "crate::report::optional_seconds")]
    pub small_change: Option<Duration>,
}

/// Renders the cluster with `kproxy rules` and times the restores in a fresh namespace.
pub fn measure(
    kproxy: &Path,
    cluster_file: &Path,
    backend: Backend,
    netns_name: &str,
    timeout: Duration,
) -> Result<Floor, String> {
    let kproxy = kproxy.to_string_lossy();
    let file = cluster_file.to_string_lossy();
    let ruleset = run_ok(&kproxy, &["rules", "-f", &file], RENDER_TIMEOUT)?.stdout;
    let netns = Netns::create(netns_name)?;
    let restore = format!("iptables-{}-restore", backend.name());
    let args = ["-w", "5", "--noflush", "--counters"];
    let timed = |input: &[u8]| -> Result<Option<Duration>, String> {
        match run(&restore, &args, Some(input), timeout) {
            Ok(done) if done.status.success() => Ok(Some(done.elapsed)),
            Ok(done) => Err(format!(
                "{restore} failed ({}): {}",
                done.status,
                done.stderr.trim()
            )),
            Err(_) => Ok(None),
        }
    };
    let (full_restore, small_change) = netns.run_inside(|| {
        let full = timed(&ruleset)?;
        let small = match full {
            Some(_) => timed(SMALL_CHANGE.as_bytes())?,
            None => None,
        };
        Ok::<_, String>((full, small))
    })??;
    Ok(Floor {
        ruleset_bytes: ruleset.len() as u64,
        ruleset_lines: ruleset.iter().filter(|b| **b == b'\n').count() as u64,
        full_restore,
        small_change,
    })
}
