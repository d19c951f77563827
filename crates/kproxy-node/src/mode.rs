//! The seam between the sync loop and a proxy mode. The loop owns the cluster store and
//! the per-family snapshots, and everything the modes share (health checks, conntrack
//! cleanup, metrics); a mode only turns a snapshot into kernel state:
//! [`crate::iptables_mode::IptablesMode`], [`crate::nftables_mode::NftablesMode`] and
//! [`crate::ipvs_mode::IpvsMode`].

use kproxy_model::{IpFamily, NamespacedName, NodeFacts, Snapshot, SnapshotChanges};
use std::collections::BTreeSet;
use std::time::Instant;

/// Rule counts of one table after a sync (for the `..._iptables_total/last` metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableRules {
    /// Rules believed installed.
    pub total: usize,
    /// Rules written by this sync.
    pub written: usize,
}

/// What one family's sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FamilySync {
    /// Whether the kernel accepted the sync.
    pub ok: bool,
    /// Whether it was a full sync.
    pub full: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// Whether a partial sync failed (it falls back to a full one).
    pub partial_failed: bool,
    /// Whether removing stale kernel objects before the sync failed (nftables).
    pub cleanup_failed: bool,
    /// nat rules.
    pub nat: TableRules,
    /// filter rules.
    pub filter: TableRules,
    /// Service ports with internal traffic policy Local and no local endpoints.
    pub no_local_internal: usize,
    /// Service ports with external traffic policy Local and no local endpoints.
    pub no_local_external: usize,
}

/// What one family's sync works from.
#[derive(Debug, Clone, Copy)]
pub struct SyncInput<'a> {
    /// The family's snapshot, already refreshed.
    pub snapshot: &'a Snapshot,
    /// Services refreshed for this sync.
    pub changed: &'a BTreeSet<NamespacedName>,
    /// Service ports the refresh changed.
    pub ports: &'a SnapshotChanges,
    /// The sync's time.
    pub now: Instant,
}

/// A proxy mode: programs the kernel from snapshots.
pub trait ProxyMode: Send {
    /// The mode's name (`iptables`).
    fn name(&self) -> &'static str;

    /// The families this mode programs, one snapshot each.
    fn families(&self) -> Vec<IpFamily>;

    /// The local Node changed (labels, addresses, pod CIDRs): re-render everything.
    fn node_changed(&mut self, node: &NodeFacts);

    /// Brings the kernel in line with `snapshot`: `changed` names the services refreshed
    /// for this sync, `ports` the service ports the refresh actually changed.
    fn sync(&mut self, input: &SyncInput<'_>) -> FamilySync;

    /// Whether `family` may sit out a sync whose changes touch none of its service ports:
    /// nothing of its own is due (no full sync, no failure to retry). Upstream runs one
    /// proxier per family, each synced only for its own changes; a mode that cannot tell
    /// answers no and syncs every family every time.
    fn may_skip(&self, family: IpFamily, now: Instant) -> bool {
        let _ = (family, now);
        false
    }

    /// When the mode next needs a sync without any cluster change (IPVS graceful
    /// termination); `None` when it does not.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// Looks for signs that someone else removed or flushed the mode's kernel state.
    /// Returns what is wrong; a non-empty answer makes the next sync full.
    fn check_kernel(&mut self) -> Vec<String>;
}

impl FamilySync {
    /// The report for a snapshot of a family the mode does not program.
    pub fn missing_family(family: IpFamily) -> FamilySync {
        FamilySync {
            error: Some(format!("no {family:?} proxier")),
            ..FamilySync::default()
        }
    }
}
