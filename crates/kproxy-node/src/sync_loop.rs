//! The sync loop: folds source events into the cluster store, coalesces changes with the
//! [`BoundedRunner`], and on each run refreshes the per-family snapshots, lets the mode
//! program the kernel, then does what all modes share: conntrack cleanup, health-check
//! servers, health and metrics.
//!
//! No sync happens before the source's initial lists are complete; the first sync is
//! full. Every sync period the mode checks that nobody flushed its kernel state; a
//! finding makes the next sync full and runs it at once. A failed sync is retried after
//! the sync period (any change runs it sooner), as kube-proxy does.

use crate::bounded_runner::BoundedRunner;
use crate::conntrack::{stale_flows, udp_ports_of, ConntrackTool, PortsBefore};
use crate::hcserver::{health_check_targets, ServiceHealthServers};
use crate::healthz::{node_eligible, ProxierHealth};
use crate::logging;
use crate::metrics::Metrics;
use crate::mode::{FamilySync, ProxyMode, SyncInput};
use jiff::Timestamp;
use kproxy_model::slim::SlimNode;
use kproxy_model::{
    ClusterStore, IpFamily, NamespacedName, NodeFacts, Snapshot, StoreChanges, StoreEvent,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// kube-proxy's burst of syncs allowed back to back.
const BURST_SYNCS: u32 = 2;
/// Without changes, a sync still runs this often (kube-proxy: one hour).
const PERIODIC_SYNC: Duration = Duration::from_secs(3600);

/// What the loop consumes.
#[derive(Debug)]
pub enum AgentEvent {
    /// A change to the cluster store.
    Store(StoreEvent),
    /// Every kind has been listed once: syncing may start.
    InitialSyncDone,
}

/// Timing settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopTiming {
    /// `--iptables-min-sync-period`.
    pub min_sync_period: Duration,
    /// `--iptables-sync-period`: the kernel check interval and the retry delay.
    pub sync_period: Duration,
}

/// The state shared with the HTTP servers.
#[derive(Clone)]
pub struct SharedState {
    /// Sync health.
    pub health: Arc<ProxierHealth>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// Changes seen since the last sync.
#[derive(Debug, Default)]
struct PendingChanges {
    services: BTreeSet<NamespacedName>,
}

/// The loop's state.
pub struct SyncLoop {
    store: ClusterStore,
    snapshots: Vec<Snapshot>,
    mode: Box<dyn ProxyMode>,
    runner: BoundedRunner,
    timing: LoopTiming,
    pending: PendingChanges,
    synced_source: bool,
    shared: SharedState,
    health_checks: ServiceHealthServers,
    conntrack: Option<Box<dyn ConntrackTool>>,
    node: Option<(NodeFacts, BTreeMap<String, String>)>,
    trigger_times: HashMap<NamespacedName, Timestamp>,
}

impl SyncLoop {
    /// A loop for `node_name` driving `mode`.
    pub fn new(
        node_name: &str,
        mode: Box<dyn ProxyMode>,
        timing: LoopTiming,
        shared: SharedState,
        health_checks: ServiceHealthServers,
        conntrack: Option<Box<dyn ConntrackTool>>,
    ) -> Self {
        let snapshots = mode
            .families()
            .into_iter()
            .map(|family| Snapshot::new(family, node_name))
            .collect();
        SyncLoop {
            store: ClusterStore::new(),
            snapshots,
            mode,
            runner: BoundedRunner::new(
                timing.min_sync_period,
                PERIODIC_SYNC,
                BURST_SYNCS,
                Instant::now(),
            ),
            timing,
            pending: PendingChanges::default(),
            synced_source: false,
            shared,
            health_checks,
            conntrack,
            node: None,
            trigger_times: HashMap::new(),
        }
    }

    /// Runs until `events` closes or `shutdown` resolves. Syncs run on this task with
    /// `block_in_place`, so the runtime must be multi-threaded.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<AgentEvent>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut next_check = Instant::now() + self.timing.sync_period;
        loop {
            let now = Instant::now();
            let wake = if self.synced_source {
                self.runner.next_wake(now)
            } else {
                now + PERIODIC_SYNC
            };
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { break };
                    self.on_event(event);
                    while let Ok(event) = events.try_recv() {
                        self.on_event(event);
                    }
                    self.after_events();
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    let now = Instant::now();
                    if self.synced_source && self.runner.try_run(now) {
                        tokio::task::block_in_place(|| self.sync(now));
                    }
                }
                _ = tokio::time::sleep_until(next_check.into()) => {
                    next_check = Instant::now() + self.timing.sync_period;
                    if self.synced_source {
                        tokio::task::block_in_place(|| self.check_kernel());
                    }
                }
                _ = &mut shutdown => break,
            }
        }
        logging::info(1, "sync loop stopped; rules stay in the kernel");
    }

    fn on_event(&mut self, event: AgentEvent) {
        match event {
            AgentEvent::Store(event) => self.store.apply(event),
            AgentEvent::InitialSyncDone => {
                logging::info(1, "initial lists complete; first sync is full");
                self.synced_source = true;
                self.runner.request();
            }
        }
    }

    /// Folds the store's change set into the pending changes.
    fn after_events(&mut self) {
        let changes = self.store.take_changes();
        if changes.node {
            self.node_changed();
        }
        if changes == StoreChanges::default() {
            return;
        }
        let wall = SystemTime::now();
        for snapshot in &self.snapshots {
            self.shared.health.queued(snapshot.family(), wall);
        }
        self.shared.metrics.update(|v| {
            v.service_changes_total += changes.service_changes;
            v.endpoint_changes_total += changes.endpoint_changes;
            v.service_changes_pending += changes.service_changes;
            v.endpoint_changes_pending += changes.endpoint_changes;
            v.last_queued_timestamp = unix_seconds(wall);
        });
        self.pending.services.extend(changes.services);
        self.runner.request();
    }

    fn node_changed(&mut self) {
        let Some(node) = self.store.node() else {
            return;
        };
        self.shared.health.set_node_eligible(node_eligible(node));
        let facts = NodeFacts::from_node(node);
        let labels = node_labels(node);
        let same = self
            .node
            .as_ref()
            .is_some_and(|(f, l)| *f == facts && *l == labels);
        if !same {
            logging::info(
                2,
                format!("node facts changed: {facts:?}; next sync is full"),
            );
            self.mode.node_changed(&facts);
            self.node = Some((facts, labels));
        }
    }

    /// Asks the mode whether its kernel state is intact; when not, logs what is wrong and
    /// requests a (full) sync. Returns the findings.
    pub fn check_kernel(&mut self) -> Vec<String> {
        let problems = self.mode.check_kernel();
        for problem in &problems {
            logging::warn(format!("kernel state damaged: {problem}"));
        }
        if !problems.is_empty() {
            self.runner.request();
        }
        problems
    }

    /// One sync of every family.
    pub fn sync(&mut self, now: Instant) {
        let started = Instant::now();
        let changed = std::mem::take(&mut self.pending.services);
        let mut reports = Vec::new();
        let mut warnings = Vec::new();
        for snapshot in &mut self.snapshots {
            let before = udp_ports_of(snapshot, &changed);
            let ports = snapshot.refresh(&self.store, &changed, &mut warnings);
            if !changed.is_empty() && ports.is_empty() && self.mode.may_skip(snapshot.family(), now)
            {
                // Nothing queued concerns this family: it is as current as it was.
                self.shared
                    .health
                    .updated(snapshot.family(), SystemTime::now());
                continue;
            }
            let report = self.mode.sync(&SyncInput {
                snapshot,
                changed: &changed,
                ports: &ports,
                now,
            });
            let wall = SystemTime::now();
            if report.ok {
                self.shared.health.updated(snapshot.family(), wall);
                if let Some(tool) = self.conntrack.as_mut() {
                    clear_stale_flows(tool.as_mut(), snapshot.family(), &before, snapshot);
                }
            } else {
                logging::error(format!(
                    "{:?} {} sync failed: {}",
                    snapshot.family(),
                    if report.full { "full" } else { "partial" },
                    report.error.as_deref().unwrap_or("unknown error")
                ));
            }
            reports.push(report);
        }
        for warning in &warnings {
            logging::warn(warning.to_string());
        }
        let all_ok = reports.iter().all(|r| r.ok);
        if all_ok {
            self.record_programming_latency(&changed);
        } else {
            self.runner.retry_after(now, self.timing.sync_period);
        }
        if let Some(due) = self.mode.next_deadline() {
            self.runner
                .retry_after(now, due.saturating_duration_since(Instant::now()));
        }
        let targets = health_check_targets(&self.snapshots);
        for warning in self.health_checks.sync(&targets) {
            logging::warn(warning);
        }
        self.shared.metrics.record_sync(
            &reports,
            started.elapsed(),
            unix_seconds(SystemTime::now()),
        );
        log_sync(&reports, started.elapsed(), changed.len());
    }

    fn record_programming_latency(&mut self, changed: &BTreeSet<NamespacedName>) {
        let now = Timestamp::now();
        for service in changed {
            let latest = self
                .store
                .slices_of(service)
                .filter_map(|slice| {
                    slice
                        .metadata
                        .trigger_time
                        .as_ref()?
                        .parse::<Timestamp>()
                        .ok()
                })
                .max();
            let Some(latest) = latest else {
                self.trigger_times.remove(service);
                continue;
            };
            if self.trigger_times.get(service) == Some(&latest) {
                continue;
            }
            self.trigger_times.insert(service.clone(), latest);
            let seconds = now.duration_since(latest).as_secs_f64().max(0.0);
            self.shared
                .metrics
                .update(|v| v.network_programming.observe(seconds));
        }
    }

    /// The snapshots (for tests and the health-check targets).
    pub fn snapshots(&self) -> &[Snapshot] {
        &self.snapshots
    }

    /// The health-check servers (for tests).
    pub fn health_checks(&self) -> &ServiceHealthServers {
        &self.health_checks
    }

    /// Applies an event and folds the change set, as the running loop does.
    pub fn handle(&mut self, event: AgentEvent) {
        self.on_event(event);
        self.after_events();
    }
}

/// Deletes the UDP conntrack entries this sync made stale (one table dump for all of
/// them); failures are logged, and the next change retries nothing (as kube-proxy).
fn clear_stale_flows(
    tool: &mut dyn ConntrackTool,
    family: IpFamily,
    before: &PortsBefore,
    after: &Snapshot,
) {
    let flows = stale_flows(before, after);
    if flows.is_empty() {
        return;
    }
    match tool.delete(family, &flows) {
        Ok(deleted) => logging::info(
            2,
            format!(
                "{family:?} conntrack cleanup {flows:?}: {} entries deleted",
                deleted.matched - deleted.already_gone
            ),
        ),
        Err(e) => logging::warn(format!("{family:?} conntrack cleanup {flows:?}: {e}")),
    }
}

fn node_labels(node: &SlimNode) -> BTreeMap<String, String> {
    node.metadata.labels.clone()
}

fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn log_sync(reports: &[FamilySync], elapsed: Duration, changed: usize) {
    for report in reports.iter().filter(|r| r.ok) {
        logging::info(
            2,
            format!(
                "{} sync done in {elapsed:?}: {changed} services changed, nat {}/{} rules written, filter {}",
                if report.full { "full" } else { "partial" },
                report.nat.written,
                report.nat.total,
                report.filter.total
            ),
        );
    }
}
