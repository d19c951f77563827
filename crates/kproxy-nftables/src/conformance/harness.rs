//! Drives a proxier against the fake kernel the way upstream's tests drive theirs: a
//! cluster store, a snapshot, syncs, and a clock that only moves when a step says so.

use crate::nft::{FakeNft, Family, RulesetState};
use crate::proxier::{NftablesProxier, SyncReport};
use crate::settings::ProxierSettings;
use crate::trace::{Packet, TraceResult, Tracer};
use kproxy_model::{parse_manifest, ClusterStore, KubeObject, Snapshot, StoreEvent};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A proxier, its fake kernel and the cluster it watches.
pub struct Harness {
    /// The cluster.
    pub store: ClusterStore,
    snapshot: Snapshot,
    /// The proxier under test.
    pub proxier: NftablesProxier,
    /// The fake kernel.
    pub nft: FakeNft,
    clock: Instant,
    /// The last sync's report.
    pub last: Option<SyncReport>,
}

impl Harness {
    /// A harness with an empty cluster and the given kernel.
    pub fn new(settings: ProxierSettings, nft: FakeNft) -> Result<Harness, String> {
        let snapshot = Snapshot::new(settings.family, settings.node_name.clone());
        Ok(Harness {
            store: ClusterStore::new(),
            snapshot,
            proxier: NftablesProxier::new(settings).map_err(|e| e.to_string())?,
            nft,
            clock: Instant::now(),
            last: None,
        })
    }

    /// Parses manifest text into objects.
    pub fn objects(text: &str) -> Result<Vec<KubeObject>, String> {
        Ok(parse_manifest(text).map_err(|e| e.to_string())?.objects)
    }

    /// Applies objects to the store.
    pub fn apply(&mut self, objects: Vec<KubeObject>) {
        for object in objects {
            self.store.apply(StoreEvent::Apply(object));
        }
    }

    /// Applies one store event.
    pub fn event(&mut self, event: StoreEvent) {
        self.store.apply(event);
    }

    /// Pretends time passed (stale chains age).
    pub fn advance(&mut self, by: Duration) {
        self.clock += by;
    }

    /// Refreshes the snapshot with the store's changes and syncs.
    pub fn sync(&mut self) -> Result<&SyncReport, String> {
        let changes = self.store.take_changes();
        let mut warnings = Vec::new();
        let snapshot_changes = self
            .snapshot
            .refresh(&self.store, &changes.services, &mut warnings);
        let report = self
            .proxier
            .sync_with(&mut self.nft, &self.snapshot, &snapshot_changes, self.clock)
            .map_err(|e| format!("sync failed: {e}"))?;
        Ok(self.last.insert(report))
    }

    /// Operations in the last main transaction.
    pub fn last_ops(&self) -> usize {
        self.last.as_ref().map_or(0, |r| r.operations)
    }

    /// The fake kernel's ruleset as `add` lines.
    pub fn dump(&self) -> String {
        self.nft.dump()
    }

    /// Traces a packet through the fake kernel's table.
    pub fn trace(&self, packet: &Packet, local_ips: &[IpAddr]) -> Result<TraceResult, String> {
        trace_in(
            self.nft.state(),
            self.proxier.family(),
            &self.proxier.settings().table,
            packet,
            local_ips,
            u64::from(self.proxier.settings().masquerade_mark()),
        )
    }
}

fn trace_in(
    state: &RulesetState,
    family: Family,
    table: &str,
    packet: &Packet,
    local_ips: &[IpAddr],
    mark: u64,
) -> Result<TraceResult, String> {
    Tracer::new(state, family, table, local_ips.to_vec())?
        .with_masquerade_mark(mark)
        .trace(packet)
}
