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

use crate::naming::is_service_chain;
use crate::nft::{Chain, Family, Named, NftError, NftRunner, Rule, TableState, Transaction};
use crate::render::{render_fixed, render_service, ServiceObjects, ELEMENT_CONTAINERS};
use crate::settings::{LocalTrafficDetector, ProxierSettings};
use belief::{NoLocalCounts, PortBelief};
use elements::{ElementBook, ElementKey};
use kproxy_model::{ModelWarning, ServicePortName, Snapshot, SnapshotChanges};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

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
    ports: BTreeMap<ServicePortName, PortBelief>,
    no_local: NoLocalCounts,
    elements: ElementBook,
    kernel_chains: BTreeSet<String>,
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
            kernel_chains: BTreeSet::new(),
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
        let mut warnings = Vec::new();
        let full = self.full_sync_needed;
        let main = if full {
            self.full_sync(snapshot, now, &mut warnings)
        } else {
            let mut writer = SyncWriter::new(self.family, &self.settings.table);
            for name in &changes.changed {
                let fresh = snapshot
                    .entry(name)
                    .and_then(|entry| self.render(entry, &mut warnings));
                self.replace_port(name, fresh, now, &mut writer);
            }
            let touched = std::mem::take(&mut writer.touched);
            self.elements.reconcile(
                &touched,
                &mut writer.element_deletes,
                &mut writer.element_adds,
            );
            writer.finish()
        };
        SyncPlan {
            cleanup,
            main,
            full,
            warnings,
        }
    }

    /// Records whether the main transaction was applied. A failure forces a full sync
    /// and forgets stale chains (the full sync finds them again).
    pub fn on_applied(&mut self, ok: bool) {
        if ok {
            if self.full_sync_needed {
                self.full_sync_needed = false;
                self.started = true;
            }
        } else {
            self.full_sync_needed = true;
            self.stale.clear();
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

    fn stale_cleanup(&mut self, now: Instant) -> Option<Transaction> {
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
            self.kernel_chains.remove(&name);
            tx.delete(Named::Chain(name));
        }
        Some(tx)
    }

    fn replace_port(
        &mut self,
        name: &ServicePortName,
        fresh: Option<ServiceObjects>,
        now: Instant,
        w: &mut SyncWriter,
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
            for chain in old
                .chains
                .iter()
                .filter(|c| !fresh_chains.contains(c.as_str()))
            {
                w.flush_stale(chain);
                self.stale.entry(chain.clone()).or_insert(now);
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
            // Every chain of a changed port is rewritten, unchanged ones too: upstream's
            // operation counts (checked by the conformance cases) depend on it.
            let chains = fresh
                .service_chains
                .into_iter()
                .chain(fresh.endpoint_chains);
            for chain in chains {
                self.stale.remove(&chain.name);
                self.kernel_chains.insert(chain.name.clone());
                w.write_chain(&chain.name, chain.rules);
            }
            for set in fresh.affinity_sets {
                self.kernel_affinity_sets.insert(set.name.clone());
                w.sets.add(set);
            }
            self.elements
                .add_owner(name, &belief.elements, &mut w.touched);
            self.no_local.add(&name.service, &belief);
            self.ports.insert(name.clone(), belief);
        }
    }

    fn full_sync(
        &mut self,
        snapshot: &Snapshot,
        now: Instant,
        warnings: &mut Vec<ModelWarning>,
    ) -> Transaction {
        let view = self.view.take().unwrap_or(KernelView::Unknown);
        let mut w = SyncWriter::new(self.family, &self.settings.table);
        render_fixed(&self.settings, !self.started, &mut w.fixed);
        self.ports.clear();
        self.no_local.clear();
        self.elements.clear_wanted();
        let mut rendered = Vec::new();
        for (name, entry) in snapshot.entries() {
            if let Some(objects) = self.render(entry, warnings) {
                let belief = PortBelief::of(&objects);
                self.no_local.add(&name.service, &belief);
                self.ports.insert(name.clone(), belief);
                rendered.push(objects);
            }
        }
        self.full_sync_chains(&view, rendered, now, &mut w);
        self.full_sync_elements(&view, &mut w);
        w.finish()
    }

    /// Flushes (and schedules for deletion) chains no port uses. What exists is taken from
    /// the listed table; an absent table has none; when listing failed, from belief.
    fn full_sync_chains(
        &mut self,
        view: &KernelView,
        rendered: Vec<ServiceObjects>,
        now: Instant,
        w: &mut SyncWriter,
    ) {
        let empty = TableState::default();
        let table = match view {
            KernelView::Present(t) => Some(t),
            KernelView::Absent => Some(&empty),
            KernelView::Unknown => None,
        };
        let active: BTreeSet<String> = self
            .ports
            .values()
            .flat_map(|p| p.chains.iter().cloned())
            .collect();
        let known: BTreeSet<String> = match table {
            Some(t) => t
                .chains
                .keys()
                .filter(|n| is_service_chain(n))
                .cloned()
                .collect(),
            None => self.kernel_chains.clone(),
        };
        self.stale
            .retain(|name, _| known.contains(name) && !active.contains(name));
        for name in known.iter().filter(|n| !active.contains(*n)) {
            w.flush_stale(name);
            self.stale.insert(name.clone(), now);
        }
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
        for objects in rendered {
            objects
                .service_chains
                .into_iter()
                .for_each(|c| w.write_chain(&c.name, c.rules));
            for chain in objects.endpoint_chains {
                let same = table
                    .and_then(|t| t.chains.get(&chain.name))
                    .is_some_and(|existing| existing.rules == chain.rules);
                if !same {
                    w.write_chain(&chain.name, chain.rules);
                }
            }
            objects
                .affinity_sets
                .into_iter()
                .for_each(|s| w.sets.add(s));
        }
        self.kernel_chains = active
            .union(&self.stale.keys().cloned().collect())
            .cloned()
            .collect();
        self.kernel_affinity_sets = active_sets;
    }

    fn full_sync_elements(&mut self, view: &KernelView, w: &mut SyncWriter) {
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
                    w.fixed.flush(named);
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
        self.elements
            .reconcile(&keys, &mut w.element_deletes, &mut w.element_adds);
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

/// Collects a sync's operations in an order the kernel accepts: fixed objects, chain
/// creation and flushes, sets, rules, element deletions, element additions, and finally
/// set deletions (once no rule refers to them).
struct SyncWriter {
    fixed: Transaction,
    chains: Transaction,
    sets: Transaction,
    rules: Transaction,
    element_deletes: Transaction,
    element_adds: Transaction,
    set_deletes: Transaction,
    touched: BTreeSet<ElementKey>,
}

impl SyncWriter {
    fn new(family: Family, table: &str) -> SyncWriter {
        let tx = || Transaction::new(family, table);
        SyncWriter {
            fixed: tx(),
            chains: tx(),
            sets: tx(),
            rules: tx(),
            element_deletes: tx(),
            element_adds: tx(),
            set_deletes: tx(),
            touched: BTreeSet::new(),
        }
    }

    fn write_chain(&mut self, name: &str, rules: Vec<Rule>) {
        self.chains.add(Chain::regular(name));
        self.chains.flush(Named::Chain(name.to_string()));
        rules.into_iter().for_each(|r| self.rules.add(r));
    }

    fn flush_stale(&mut self, name: &str) {
        self.chains.flush(Named::Chain(name.to_string()));
    }

    fn delete_set(&mut self, name: &str) {
        self.set_deletes.delete(Named::Set(name.to_string()));
    }

    fn finish(mut self) -> Transaction {
        let mut tx = self.fixed;
        tx.reserve(
            [
                &self.chains,
                &self.sets,
                &self.rules,
                &self.element_deletes,
                &self.element_adds,
                &self.set_deletes,
            ]
            .iter()
            .map(|part| part.len())
            .sum(),
        );
        for part in [
            &mut self.chains,
            &mut self.sets,
            &mut self.rules,
            &mut self.element_deletes,
            &mut self.element_adds,
            &mut self.set_deletes,
        ] {
            tx.append(part);
        }
        tx
    }
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
