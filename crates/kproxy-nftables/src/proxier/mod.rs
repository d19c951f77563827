//! The nftables proxier: a pure state machine that remembers what it believes the kernel
//! holds and turns a snapshot plus its changes into transactions. The first sync (and
//! any sync after a failure) is full; later ones send only what changed.
//!
//! Use from a sync loop:
//! ```no_run
//! # use kproxy_nftables::{NftablesProxier, ProxierSettings, NftCommand};
//! # use kproxy_model::{IpFamily, Snapshot, SnapshotChanges};
//! # fn demo(snapshot: &Snapshot, changes: &SnapshotChanges) -> Result<(), Box<dyn std::error::Error>> {
//! let mut proxier = NftablesProxier::new(ProxierSettings::new(IpFamily::V4, "node-a"))?;
//! let mut nft = NftCommand::new();
//! let report = proxier.sync_with(&mut nft, snapshot, changes, std::time::Instant::now())?;
//! println!("{} operations", report.operations);
//! # Ok(()) }
//! ```

mod belief;
mod elements;
mod writer;

use crate::naming::is_service_chain;
use crate::nft::{Family, Named, NftError, NftRunner, TableState, Transaction};
use crate::render::{render_fixed, render_service, ServiceObjects, ELEMENT_CONTAINERS};
use crate::settings::{LocalTrafficDetector, ProxierSettings};
use belief::{NoLocalCounts, PortBelief};
use elements::{ElementBook, ElementKey, Owner};
use kproxy_model::{ModelWarning, ServicePortName, Snapshot, SnapshotChanges};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use writer::{Batches, SyncWriter};

/// How long a flushed service chain is kept before it is deleted (kernels before 6.2
/// need the last vmap reference to be gone for a while).
pub const STALE_CHAIN_DELAY: Duration = Duration::from_secs(1);

/// What the proxier knows about the kernel's table before a full sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelView {
    /// The table does not exist.
    Absent,
    /// The table as listed.
    Present(TableState),
    /// Listing failed: element containers are flushed and refilled.
    Unknown,
}

/// Invalid settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The table name is not a valid identifier.
    #[error("table name {0:?} is not a valid nftables identifier")]
    BadTable(String),
    /// An interface name for local-traffic detection is not valid.
    #[error("interface name {0:?} is not valid (1-15 characters of [A-Za-z0-9_.-])")]
    BadInterface(String),
    /// The masquerade bit is out of range.
    #[error("masquerade bit {0} is out of range 0-31")]
    BadMasqueradeBit(u8),
}

/// The transactions of one sync, to be run in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPlan {
    /// Deletion of chains stale for longer than [`STALE_CHAIN_DELAY`]; run first.
    pub cleanup: Option<Transaction>,
    /// The sync itself.
    pub main: Transaction,
    /// Whether `main` is a full sync.
    pub full: bool,
    /// Service ports that could not be rendered.
    pub warnings: Vec<ModelWarning>,
}

/// What [`NftablesProxier::send_main`] sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentSync {
    /// Whether it was a full sync.
    pub full: bool,
    /// Operations sent, in all batches.
    pub operations: usize,
    /// Service ports that could not be rendered.
    pub warnings: Vec<ModelWarning>,
}

/// What [`NftablesProxier::sync_with`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Whether it was a full sync.
    pub full: bool,
    /// Operations in the main transaction.
    pub operations: usize,
    /// Bytes of `nft -f -` text in the main transaction.
    pub bytes: usize,
    /// Chains deleted by the cleanup transaction.
    pub stale_chains_deleted: usize,
    /// Service ports that could not be rendered.
    pub warnings: Vec<ModelWarning>,
}

/// The nftables proxier for one IP family.
#[derive(Debug, Clone)]
pub struct NftablesProxier {
    settings: ProxierSettings,
    family: Family,
    full_sync_needed: bool,
    started: bool,
    view: Option<KernelView>,
    ports: BTreeMap<Owner, PortBelief>,
    no_local: NoLocalCounts,
    elements: ElementBook,
    /// Chains a failed sync dropped from `stale` (they may still exist). The chains
    /// believed in the kernel are these, `stale`'s and every port's.
    forgotten_chains: BTreeSet<String>,
    kernel_affinity_sets: BTreeSet<String>,
    stale: BTreeMap<String, Instant>,
}

impl NftablesProxier {
    /// A proxier that has synced nothing yet.
    pub fn new(settings: ProxierSettings) -> Result<NftablesProxier, SettingsError> {
        validate(&settings)?;
        Ok(NftablesProxier {
            family: crate::render::base::family_of(&settings),
            settings,
            full_sync_needed: true,
            started: false,
            view: None,
            ports: BTreeMap::new(),
            no_local: NoLocalCounts::default(),
            elements: ElementBook::default(),
            forgotten_chains: BTreeSet::new(),
            kernel_affinity_sets: BTreeSet::new(),
            stale: BTreeMap::new(),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &ProxierSettings {
        &self.settings
    }

    /// The nft family (`ip`/`ip6`).
    pub fn family(&self) -> Family {
        self.family
    }

    /// Whether the next sync is full (then call [`observe`](Self::observe) first).
    pub fn wants_full_sync(&self) -> bool {
        self.full_sync_needed
    }

    /// Replaces the settings (node addresses, service CIDRs, ...); the next sync is full.
    pub fn set_settings(&mut self, settings: ProxierSettings) -> Result<(), SettingsError> {
        validate(&settings)?;
        self.family = crate::render::base::family_of(&settings);
        self.settings = settings;
        self.full_sync_needed = true;
        Ok(())
    }

    /// Makes the next sync full (e.g. after the Node's labels changed).
    pub fn force_full_sync(&mut self) {
        self.full_sync_needed = true;
    }

    /// Hands the listed kernel table to the next full sync.
    pub fn observe(&mut self, view: KernelView) {
        self.view = Some(view);
    }

    /// Chains flushed and waiting for deletion.
    pub fn stale_chains(&self) -> impl Iterator<Item = &str> {
        self.stale.keys().map(String::as_str)
    }

    /// Services (once each) with a Local internal / external policy, endpoints, and
    /// none of them local: the `sync_proxy_rules_no_local_endpoints_total` gauges.
    pub fn no_local_endpoints(&self) -> (usize, usize) {
        self.no_local.services()
    }

    /// Plans one sync: `changes` are the service ports whose service or endpoints
    /// changed since the last sync (ignored on a full sync). The belief is updated as if
    /// the plan succeeds; report the outcome with [`on_applied`](Self::on_applied).
    pub fn sync(
        &mut self,
        snapshot: &Snapshot,
        changes: &SnapshotChanges,
        now: Instant,
    ) -> SyncPlan {
        let cleanup = self.stale_cleanup(now);
        let mut main = None;
        let sent = self.send_main(snapshot, changes, now, usize::MAX, &mut |tx| {
            main = Some(tx);
        });
        SyncPlan {
            cleanup,
            main: main.unwrap_or_else(|| Transaction::new(self.family, &self.settings.table)),
            full: sent.full,
            warnings: sent.warnings,
        }
    }

    /// The deletion of chains stale for longer than [`STALE_CHAIN_DELAY`], to run before
    /// the main transaction; they are forgotten as if it succeeds (a failure is reported
    /// with [`on_cleanup_failed`](Self::on_cleanup_failed)).
    pub fn stale_cleanup(&mut self, now: Instant) -> Option<Transaction> {
        let due: Vec<String> = self
            .stale
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) > STALE_CHAIN_DELAY)
            .map(|(name, _)| name.clone())
            .collect();
        if due.is_empty() {
            return None;
        }
        let mut tx = Transaction::new(self.family, self.settings.table.clone());
        for name in due {
            self.stale.remove(&name);
            self.forgotten_chains.remove(&name);
            tx.delete(Named::Chain(name));
        }
        Some(tx)
    }

    /// Plans the main transaction of one sync (as [`sync`](Self::sync), after
    /// [`stale_cleanup`](Self::stale_cleanup)) and hands it to `send` in transactions of
    /// at most `batch_limit` operations, each as soon as it is full, so a full sync
    /// never holds more than one batch. Each batch depends only on earlier ones.
    pub fn send_main(
        &mut self,
        snapshot: &Snapshot,
        changes: &SnapshotChanges,
        now: Instant,
        batch_limit: usize,
        send: &mut dyn FnMut(Transaction),
    ) -> SentSync {
        let mut warnings = Vec::new();
        let full = self.full_sync_needed;
        let mut writer = SyncWriter::new(Batches::new(
            self.family,
            &self.settings.table,
            batch_limit,
            send,
        ));
        if full {
            self.full_sync(snapshot, now, &mut warnings, &mut writer);
        } else {
            for name in &changes.changed {
                let fresh = snapshot
                    .entry(name)
                    .and_then(|entry| self.render(entry, &mut warnings));
                self.replace_port(name, fresh, now, &mut writer);
            }
            let touched = std::mem::take(&mut writer.touched);
            self.elements.reconcile(&touched, &mut writer);
        }
        SentSync {
            full,
            operations: writer.finish(),
            warnings,
        }
    }

    /// Records whether the main transaction was applied. A failure forces a full sync;
    /// the stale chains' deletion times are forgotten (the full sync flushes them again).
    pub fn on_applied(&mut self, ok: bool) {
        if ok {
            if self.full_sync_needed {
                self.full_sync_needed = false;
                self.started = true;
            }
        } else {
            self.full_sync_needed = true;
            let stale = std::mem::take(&mut self.stale);
            self.forgotten_chains.extend(stale.into_keys());
        }
    }

    /// Records that the cleanup transaction failed: the next sync is full.
    pub fn on_cleanup_failed(&mut self) {
        self.full_sync_needed = true;
    }

    /// Lists the table when a full sync is due, runs the cleanup and main transactions,
    /// and records the outcome.
    pub fn sync_with(
        &mut self,
        runner: &mut dyn NftRunner,
        snapshot: &Snapshot,
        changes: &SnapshotChanges,
        now: Instant,
    ) -> Result<SyncReport, NftError> {
        if self.full_sync_needed {
            let view = match runner.list_table(self.family, &self.settings.table) {
                Ok(Some(table)) => KernelView::Present(table),
                Ok(None) => KernelView::Absent,
                Err(_) => KernelView::Unknown,
            };
            self.observe(view);
        }
        let plan = self.sync(snapshot, changes, now);
        let mut deleted = 0;
        if let Some(cleanup) = &plan.cleanup {
            match runner.run(cleanup) {
                Ok(()) => deleted = cleanup.len(),
                Err(_) => self.on_cleanup_failed(),
            }
        }
        let result = runner.run(&plan.main);
        self.on_applied(result.is_ok());
        result?;
        Ok(SyncReport {
            full: plan.full,
            operations: plan.main.len(),
            bytes: plan.main.render().len(),
            stale_chains_deleted: deleted,
            warnings: plan.warnings,
        })
    }

    fn render(
        &self,
        entry: &kproxy_model::ServiceEntry,
        warnings: &mut Vec<ModelWarning>,
    ) -> Option<ServiceObjects> {
        match render_service(&self.settings, entry, &self.settings.topology()) {
            Ok(objects) => Some(objects),
            Err(e) => {
                warnings.push(ModelWarning {
                    object: format!("Service {}", entry.service.name.service),
                    field: "spec".to_string(),
                    message: e.to_string(),
                });
                None
            }
        }
    }

    fn replace_port(
        &mut self,
        name: &ServicePortName,
        fresh: Option<ServiceObjects>,
        now: Instant,
        w: &mut SyncWriter<'_>,
    ) {
        let old = self.ports.remove(name);
        let fresh_chains: BTreeSet<&str> = fresh
            .iter()
            .flat_map(|f| f.chains())
            .map(|c| c.name.as_str())
            .collect();
        let fresh_sets: BTreeSet<&str> = fresh
            .iter()
            .flat_map(|f| &f.affinity_sets)
            .map(|s| s.name.as_str())
            .collect();
        if let Some(old) = &old {
            let old_chains = old.chains();
            for chain in old_chains.iter().filter(|c| !fresh_chains.contains(c)) {
                w.flush_stale(chain);
                self.stale.entry(chain.to_string()).or_insert(now);
            }
            for set in old
                .affinity_sets
                .iter()
                .filter(|s| !fresh_sets.contains(s.as_str()))
            {
                w.delete_set(set);
                self.kernel_affinity_sets.remove(set);
            }
            self.elements
                .remove_owner(name, &old.elements, &mut w.touched);
            self.no_local.remove(&name.service, old);
        }
        if let Some(fresh) = fresh {
            let belief = PortBelief::of(&fresh);
            for chain in belief.chains().iter() {
                self.stale.remove(chain);
            }
            self.kernel_affinity_sets
                .extend(belief.affinity_sets.iter().cloned());
            // Every chain of a changed port is rewritten, unchanged ones too: upstream's
            // operation counts (checked by the conformance cases) depend on it.
            let ServiceObjects {
                mut service_chains,
                endpoint_chains,
                affinity_sets,
                ..
            } = fresh;
            service_chains.extend(endpoint_chains);
            w.write_port(service_chains, affinity_sets);
            let owner = Arc::new(name.clone());
            self.elements
                .add_owner(&owner, &belief.elements, &mut w.touched);
            self.no_local.add(&name.service, &belief);
            self.ports.insert(owner, belief);
        }
    }

    /// Rewrites every port, port by port as it is rendered, then flushes what no port
    /// uses and reconciles the elements.
    fn full_sync(
        &mut self,
        snapshot: &Snapshot,
        now: Instant,
        warnings: &mut Vec<ModelWarning>,
        w: &mut SyncWriter<'_>,
    ) {
        let view = self.view.take().unwrap_or(KernelView::Unknown);
        let mut fixed = Transaction::new(self.family, &self.settings.table);
        render_fixed(&self.settings, !self.started, &mut fixed);
        w.write_all(fixed);
        let known = self.known_chains(&view);
        self.ports.clear();
        self.no_local.clear();
        self.elements.clear_wanted();
        let empty = TableState::default();
        let table = match &view {
            KernelView::Present(t) => Some(t),
            KernelView::Absent => Some(&empty),
            KernelView::Unknown => None,
        };
        for (name, entry) in snapshot.entries() {
            let Some(objects) = self.render(entry, warnings) else {
                continue;
            };
            let belief = PortBelief::of(&objects);
            self.no_local.add(&name.service, &belief);
            self.ports.insert(Arc::new(name.clone()), belief);
            let ServiceObjects {
                mut service_chains,
                endpoint_chains,
                affinity_sets,
                ..
            } = objects;
            // An endpoint chain the kernel already holds as rendered is left alone.
            service_chains.extend(endpoint_chains.into_iter().filter(|chain| {
                !table
                    .and_then(|t| t.chains.get(&chain.name))
                    .is_some_and(|existing| existing.rules == chain.rules)
            }));
            w.write_port(service_chains, affinity_sets);
        }
        self.full_sync_stale(&known, table, now, w);
        self.full_sync_elements(&view, w);
    }

    /// The service chains in the kernel before a full sync: listed, or (listing failed)
    /// believed.
    fn known_chains(&self, view: &KernelView) -> BTreeSet<String> {
        match view {
            KernelView::Present(t) => t
                .chains
                .keys()
                .filter(|n| is_service_chain(n))
                .cloned()
                .collect(),
            KernelView::Absent => BTreeSet::new(),
            KernelView::Unknown => self
                .ports
                .values()
                .flat_map(|port| port.chains().iter().map(str::to_string).collect::<Vec<_>>())
                .chain(self.stale.keys().cloned())
                .chain(self.forgotten_chains.iter().cloned())
                .collect(),
        }
    }

    /// Flushes (and schedules for deletion) the `known` chains no port uses, and deletes
    /// affinity sets no port uses: those of the listed table, or (`None`: listing
    /// failed) believed.
    fn full_sync_stale(
        &mut self,
        known: &BTreeSet<String>,
        table: Option<&TableState>,
        now: Instant,
        w: &mut SyncWriter<'_>,
    ) {
        // Known chains no port uses, found port by port (one port's names unpacked at a
        // time).
        let mut unused: BTreeSet<&str> = known.iter().map(String::as_str).collect();
        if !unused.is_empty() {
            for port in self.ports.values() {
                for name in port.chains().iter() {
                    unused.remove(name);
                }
            }
        }
        self.stale.retain(|name, _| unused.contains(name.as_str()));
        for name in unused {
            w.flush_stale(name);
            self.stale.insert(name.to_string(), now);
        }
        self.forgotten_chains.clear();
        let active_sets: BTreeSet<String> = self
            .ports
            .values()
            .flat_map(|p| p.affinity_sets.iter().cloned())
            .collect();
        let known_sets: BTreeSet<String> = match table {
            Some(t) => t
                .sets
                .keys()
                .filter(|n| n.starts_with("affinity-"))
                .cloned()
                .collect(),
            None => self.kernel_affinity_sets.clone(),
        };
        for name in known_sets.difference(&active_sets) {
            w.delete_set(name);
        }
        self.kernel_affinity_sets = active_sets;
    }

    fn full_sync_elements(&mut self, view: &KernelView, w: &mut SyncWriter<'_>) {
        match view {
            KernelView::Present(table) => {
                let present = ELEMENT_CONTAINERS
                    .iter()
                    .filter_map(|c| table.elements.get(*c))
                    .flat_map(|m| m.values().cloned());
                self.elements.set_kernel(present);
            }
            KernelView::Absent => self.elements.set_kernel(Vec::new()),
            KernelView::Unknown => {
                for container in ELEMENT_CONTAINERS {
                    let named = if container == crate::render::base::CLUSTER_IPS {
                        Named::Set(container.to_string())
                    } else {
                        Named::Map(container.to_string())
                    };
                    w.flush_container(named);
                }
                self.elements.set_kernel(Vec::new());
            }
        }
        let mut touched = BTreeSet::new();
        for (name, objects) in &self.ports {
            self.elements
                .add_owner(name, &objects.elements, &mut touched);
        }
        let keys: BTreeSet<ElementKey> = self.elements.all_keys();
        self.elements.reconcile(&keys, w);
    }
}

/// Removes kproxy's table from both families (`--cleanup`); absent tables are fine.
pub fn delete_tables(runner: &mut dyn NftRunner, table: &str) -> Result<(), NftError> {
    for family in [Family::Ip, Family::Ip6] {
        if runner.list_table(family, table)?.is_some() {
            let mut tx = Transaction::new(family, table);
            tx.delete(Named::Table);
            runner.run(&tx)?;
        }
    }
    Ok(())
}

fn validate(settings: &ProxierSettings) -> Result<(), SettingsError> {
    if !crate::nft::text::is_valid_name(&settings.table) {
        return Err(SettingsError::BadTable(settings.table.clone()));
    }
    if settings.masquerade_bit > 31 {
        return Err(SettingsError::BadMasqueradeBit(settings.masquerade_bit));
    }
    let interface = match &settings.local_detector {
        LocalTrafficDetector::BridgeInterface(name)
        | LocalTrafficDetector::InterfaceNamePrefix(name) => Some(name),
        _ => None,
    };
    if let Some(name) = interface {
        let ok = !name.is_empty()
            && name.len() <= 15
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(SettingsError::BadInterface(name.clone()));
        }
    }
    Ok(())
}
