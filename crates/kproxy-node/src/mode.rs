//! The seam between the sync loop and a proxy mode. The loop owns the cluster store and
//! the per-family snapshots, and everything the modes share (health checks, conntrack
//! cleanup, metrics); a mode only turns a snapshot into kernel state. iptables implements
//! it today ([`crate::iptables_mode::IptablesMode`]); nftables and IPVS plug in the same
//! way.

use kproxy_model::{IpFamily, NamespacedName, NodeFacts, Snapshot};
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
    /// nat rules.
    pub nat: TableRules,
    /// filter rules.
    pub filter: TableRules,
    /// Service ports with internal traffic policy Local and no local endpoints.
    pub no_local_internal: usize,
    /// Service ports with external traffic policy Local and no local endpoints.
    pub no_local_external: usize,
}

/// A proxy mode: programs the kernel from snapshots.
pub trait ProxyMode: Send {
    /// The mode's name (`iptables`).
    fn name(&self) -> &'static str;

    /// The families this mode programs, one snapshot each.
    fn families(&self) -> Vec<IpFamily>;

    /// The local Node changed (labels, addresses, pod CIDRs): re-render everything.
    fn node_changed(&mut self, node: &NodeFacts);

    /// Brings the kernel in line with `snapshot`; `changed` names the services changed
    /// since this family's last successful sync.
    fn sync(
        &mut self,
        snapshot: &Snapshot,
        changed: &BTreeSet<NamespacedName>,
        now: Instant,
    ) -> FamilySync;

    /// Looks for signs that someone else removed or flushed the mode's kernel state.
    /// Returns what is wrong; a non-empty answer makes the next sync full.
    fn check_kernel(&mut self) -> Vec<String>;
}
