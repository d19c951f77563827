//! The kernel's floor: how long the backend's iptables-restore alone takes to load the
//! full ruleset kproxy renders for the cluster (`kproxy rules`) into an empty namespace, then
//! one small `--noflush` change into that full table, and the same change once the built-in
//! chains jump into the kube chains, as on a node (nf_tables then checks every chain
//! reachable from a hook on each commit that adds a rule); and the full ruleset once more
//! the way the agent restores it (`--noflush --counters`). In the nftables mode: `nft -f` of the
//! mode's first batch (`kproxy rules --mode nftables`) into an empty namespace, then one
//! small batch into that full table.

use crate::args::Backend;
use crate::exec::{run, run_ok};
use crate::netns::Netns;
use crate::report::{median, sorted};
use std::path::Path;
use std::time::Duration;

/// The small change: one new chain with one DNAT rule.
const SMALL_CHANGE: &str = "*nat\n\
    :KUBE-SCALE-FLOOR - [0:0]\n\
    -A KUBE-SCALE-FLOOR -p tcp -m tcp -j DNAT --to-destination 10.127.255.1:8080\n\
    COMMIT\n";
/// The nftables mode's small change: one new chain with one DNAT rule.
const SMALL_NFT_CHANGE: &str = "add chain ip kube-proxy scale-floor\n\
    add rule ip kube-proxy scale-floor meta l4proto tcp dnat to 10.127.255.1:8080\n";
/// The nat table's jumps from the built-in chains into the kube chains.
const NAT_JUMPS: &str = "*nat\n\
    -I PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
    -I OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
    -I POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
    COMMIT\n";
/// The small change once more, under another name (the `n`th time).
fn small_change_hooked(n: u32) -> String {
    format!(
        "*nat\n\
         :KUBE-SCALE-FLOOR-{n}-H - [0:0]\n\
         -A KUBE-SCALE-FLOOR-{n}-H -p tcp -m tcp -j DNAT --to-destination 10.127.255.2:8080\n\
         COMMIT\n"
    )
}
/// How long `kproxy rules` may take.
const RENDER_TIMEOUT: Duration = Duration::from_secs(300);

/// The floor for one cluster and backend.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Floor {
    /// Size of the full ruleset.
    pub ruleset_bytes: u64,
    /// Lines of the full ruleset.
    pub ruleset_lines: u64,
    /// Plain iptables-restore (flushing the tables it names) of the full ruleset into an
    /// empty namespace; `None`: did not finish.
    #[serde(serialize_with = "crate::report::optional_seconds")]
    pub full_restore: Option<Duration>,
    /// One small `--noflush` restore into that full table.
    #[serde(serialize_with = "crate::report::optional_seconds")]
    pub small_change: Option<Duration>,
    /// The same change once the built-in chains jump into the kube chains (iptables mode
    /// only): the median of `small_changes_hooked`.
    #[serde(serialize_with = "crate::report::optional_seconds")]
    pub small_change_hooked: Option<Duration>,
    /// Each time the hooked change was made (as many as the run's endpoint changes).
    #[serde(serialize_with = "crate::report::all_seconds")]
    pub small_changes_hooked: Vec<Duration>,
    /// The full ruleset with `--noflush --counters`, as the agent restores it, into
    /// another empty namespace (iptables mode only).
    #[serde(serialize_with = "crate::report::optional_seconds")]
    pub full_restore_noflush: Option<Duration>,
}

/// Renders the cluster with `kproxy rules` and times the restores in fresh namespaces
/// named `NETNS_PREFIX-1` and `-2`; the hooked small change is made `repeats` times.
pub fn measure(
    kproxy: &Path,
    cluster_file: &Path,
    backend: Backend,
    netns_prefix: &str,
    repeats: u32,
    timeout: Duration,
) -> Result<Floor, String> {
    let kproxy = kproxy.to_string_lossy();
    let file = cluster_file.to_string_lossy();
    let ruleset = run_ok(&kproxy, &["rules", "-f", &file], RENDER_TIMEOUT)?.stdout;
    let restore = Restore {
        program: format!("iptables-{}-restore", backend.name()),
        timeout,
    };
    let plain = Netns::create(&format!("{netns_prefix}-1"))?;
    let (full_restore, small_change, small_changes_hooked) = plain.run_inside(|| {
        let full = restore.timed(&["-w", "5"], &ruleset)?;
        if full.is_none() {
            return Ok::<_, String>((None, None, Vec::new()));
        }
        let noflush = ["-w", "5", "--noflush"];
        let small = restore.timed(&noflush, SMALL_CHANGE.as_bytes())?;
        restore.timed(&noflush, NAT_JUMPS.as_bytes())?;
        let mut hooked = Vec::new();
        for n in 0..repeats {
            let change = small_change_hooked(n);
            if let Some(took) = restore.timed(&noflush, change.as_bytes())? {
                hooked.push(took);
            }
        }
        Ok((full, small, hooked))
    })??;
    drop(plain);
    let agent_like = Netns::create(&format!("{netns_prefix}-2"))?;
    let full_restore_noflush = agent_like
        .run_inside(|| restore.timed(&["-w", "5", "--noflush", "--counters"], &ruleset))??;
    Ok(Floor {
        ruleset_bytes: ruleset.len() as u64,
        ruleset_lines: ruleset.iter().filter(|b| **b == b'\n').count() as u64,
        full_restore,
        small_change,
        small_change_hooked: median(&sorted(small_changes_hooked.iter().copied())),
        small_changes_hooked,
        full_restore_noflush,
    })
}

/// The nftables floor: `nft -f -` of the mode's first batch into an empty namespace
/// `NETNS_PREFIX-1`, then one small batch into that full table.
pub fn measure_nft(
    kproxy: &Path,
    cluster_file: &Path,
    netns_prefix: &str,
    timeout: Duration,
) -> Result<Floor, String> {
    let kproxy = kproxy.to_string_lossy();
    let file = cluster_file.to_string_lossy();
    let args = ["rules", "--mode", "nftables", "-f", &file];
    let ruleset = run_ok(&kproxy, &args, RENDER_TIMEOUT)?.stdout;
    let nft = Restore {
        program: "nft".to_string(),
        timeout,
    };
    let netns = Netns::create(&format!("{netns_prefix}-1"))?;
    let (full_restore, small_change) = netns.run_inside(|| {
        let full = nft.timed(&["-f", "-"], &ruleset)?;
        let small = match full {
            Some(_) => nft.timed(&["-f", "-"], SMALL_NFT_CHANGE.as_bytes())?,
            None => None,
        };
        Ok::<_, String>((full, small))
    })??;
    Ok(Floor {
        ruleset_bytes: ruleset.len() as u64,
        ruleset_lines: ruleset.iter().filter(|b| **b == b'\n').count() as u64,
        full_restore,
        small_change,
        small_change_hooked: None,
        small_changes_hooked: Vec::new(),
        full_restore_noflush: None,
    })
}

/// The backend's iptables-restore (or nft) with a deadline.
struct Restore {
    program: String,
    timeout: Duration,
}

impl Restore {
    /// Wall time of one restore; `None` if it did not finish in time.
    fn timed(&self, args: &[&str], input: &[u8]) -> Result<Option<Duration>, String> {
        match run(&self.program, args, Some(input), self.timeout) {
            Ok(done) if done.status.success() => Ok(Some(done.elapsed)),
            Ok(done) => Err(format!(
                "{} failed ({}): {}",
                self.program,
                done.status,
                done.stderr.trim()
            )),
            Err(_) => Ok(None),
        }
    }
}
