//! The ipvs proxier: a state machine that turns a snapshot and what the kernel holds into
//! one sync's worth of changes, and keeps the graceful-termination timers between syncs.
//! No I/O: [`super::kernel::IpvsKernel`] observes the kernel and applies the plan.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Instant;

use kproxy_iptables::JumpRule;
use kproxy_model::{IpFamily, Snapshot};

use crate::graceful::{DrainPolicy, Draining};
use crate::ipset::{render_sync, RestoreText};
use crate::ops::IpvsOp;
use crate::plan::{plan, DesiredService, PlanOptions};
use crate::types::{ServiceKey, ServiceState};

use super::desired::{render, DesiredState};
use super::rules::{jump_rules, render_rules};
use super::sets::build_sets;
use super::settings::{IpvsSettings, DRAIN_CHECK_PERIOD};

/// What the kernel holds at the start of a sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The IPVS table, with connection counts.
    pub services: Vec<ServiceState>,
    /// Addresses on kube-ipvs0 (any family).
    pub bound: Vec<IpAddr>,
    /// Addresses on every other interface of the host (any family).
    pub host_addresses: Vec<IpAddr>,
}

/// One sync, in the order to apply it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IpvsSyncPlan {
    /// 1. `ipset restore` text: every set created if missing and refilled.
    pub ipset_restore: RestoreText,
    /// 2. Addresses to bind to kube-ipvs0.
    pub bind: Vec<IpAddr>,
    /// 3. IPVS changes: new and changed virtual servers, real servers added, updated and
    ///    drained.
    pub ipvs_ops: Vec<IpvsOp>,
    /// 4. `iptables-restore --noflush` text (nat and filter).
    pub iptables_restore: String,
    /// 5. Rules to keep at the top of built-in chains (into the chains the restore made).
    pub jump_rules: Vec<JumpRule>,
    /// 6. Only once the restore succeeded: addresses to unbind from kube-ipvs0.
    pub unbind: Vec<IpAddr>,
    /// 7. Only once the restore succeeded: stale virtual servers to delete.
    pub stale_services: Vec<IpvsOp>,
    /// Set entries that were refused (bad family or prefix), for the log.
    pub refused_entries: Vec<String>,
    /// The desired state this plan leads to (health checks, metrics).
    pub desired: DesiredState,
}

/// Renders syncs for one IP family and keeps the drains between them.
#[derive(Debug)]
pub struct IpvsProxier {
    settings: IpvsSettings,
    draining: Draining,
    pending: Option<Draining>,
    last_sync: Option<Instant>,
    failed_syncs: u64,
    needs_retry: bool,
}

impl IpvsProxier {
    /// A proxier with these settings and no drains.
    pub fn new(settings: IpvsSettings) -> Self {
        IpvsProxier {
            settings,
            draining: Draining::default(),
            pending: None,
            last_sync: None,
            failed_syncs: 0,
            needs_retry: false,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &IpvsSettings {
        &self.settings
    }

    /// Real servers being drained.
    pub fn draining(&self) -> &Draining {
        &self.draining
    }

    /// Whether the last sync failed and should be retried.
    pub fn needs_retry(&self) -> bool {
        self.needs_retry
    }

    /// How many syncs failed to apply.
    pub fn failed_syncs(&self) -> u64 {
        self.failed_syncs
    }

    /// When drains need another look (every minute while any runs), if ever.
    pub fn next_drain_check(&self) -> Option<Instant> {
        if self.draining.is_empty() {
            return None;
        }
        let periodic = self.last_sync.map(|t| t + DRAIN_CHECK_PERIOD);
        let deadline = self.draining.next_deadline(self.settings.drain_timeout);
        periodic.into_iter().chain(deadline).min()
    }

    /// Plans one full sync of `snapshot` against what the kernel holds.
    pub fn sync(&mut self, snapshot: &Snapshot, observed: &Observed, now: Instant) -> IpvsSyncPlan {
        let settings = &self.settings;
        let desired = render(snapshot, settings, &observed.host_addresses);
        let wanted: Vec<DesiredService> = desired.services.values().cloned().collect();
        let keep = |key: &ServiceKey| settings.keeps_unlisted(&key.addr);
        let options = PlanOptions {
            drain: DrainPolicy {
                now,
                timeout: settings.drain_timeout,
            },
            keep_unlisted: &keep,
        };
        let ipvs = plan(&observed.services, &wanted, &self.draining, &options);
        let (stale_services, ipvs_ops) = ipvs
            .ops
            .into_iter()
            .partition(|op| matches!(op, IpvsOp::DeleteService(_)));
        let own: BTreeSet<IpAddr> = observed
            .bound
            .iter()
            .filter(|a| IpFamily::of(a) == settings.family)
            .copied()
            .collect();
        let (sets, refused_entries) = build_sets(settings, &desired.sets);
        let sync_plan = IpvsSyncPlan {
            ipset_restore: render_sync(&sets),
            bind: desired.bound.difference(&own).copied().collect(),
            ipvs_ops,
            jump_rules: jump_rules(),
            iptables_restore: render_rules(settings, &desired.sets, &desired.node_blocked_lbs),
            unbind: own.difference(&desired.bound).copied().collect(),
            stale_services,
            refused_entries,
            desired,
        };
        self.pending = Some(ipvs.draining);
        self.last_sync = Some(now);
        sync_plan
    }

    /// Records how applying the last plan went. The drains it started are kept either
    /// way (they describe real servers left at weight 0); a failure asks for a retry.
    pub fn applied(&mut self, ok: bool) {
        if let Some(draining) = self.pending.take() {
            self.draining = draining;
        }
        self.needs_retry = !ok;
        if !ok {
            self.failed_syncs += 1;
        }
    }
}
