//! One case being run: a cluster store and snapshot, kproxy's ipvs proxier, and a kernel of
//! fakes that the plans are applied to.

use std::collections::BTreeSet;
use std::time::Instant;

use kproxy_model::{ClusterStore, KubeObject, NamespacedName, ObjectRef, Snapshot, StoreEvent};

use crate::fake::FakeIpvs;
use crate::mode::fakes::{FakeHost, FakeIpsets, FakeIptables, FakeLink};
use crate::mode::{IpvsKernel, IpvsProxier, IpvsSyncPlan};

use super::settings::CaseSettings;

/// The kernel of fakes.
pub(crate) type FakeKernel = IpvsKernel<FakeIpvs, FakeIpsets, FakeLink, FakeHost, FakeIptables>;

/// A case's proxier and kernel, synced step by step.
pub(crate) struct Harness {
    store: ClusterStore,
    snapshot: Snapshot,
    proxier: IpvsProxier,
    pub(crate) kernel: FakeKernel,
    pub(crate) last: Option<IpvsSyncPlan>,
}

impl Harness {
    pub(crate) fn new(settings: CaseSettings) -> Self {
        let family = settings.ipvs.family;
        let node = settings.ipvs.topology.node_name.clone();
        Harness {
            store: ClusterStore::new(),
            snapshot: Snapshot::new(family, node),
            proxier: IpvsProxier::new(settings.ipvs),
            kernel: IpvsKernel {
                ipvs: FakeIpvs::new(),
                ipset: FakeIpsets::new(),
                link: FakeLink::default(),
                host: FakeHost {
                    addresses: settings.host_addresses,
                },
                iptables: FakeIptables::default(),
            },
            last: None,
        }
    }

    pub(crate) fn apply(&mut self, object: KubeObject) {
        self.store.apply(StoreEvent::Apply(object));
    }

    pub(crate) fn delete(&mut self, object: ObjectRef) {
        self.store.apply(StoreEvent::Delete(object));
    }

    /// One sync: refresh the snapshot, observe the fakes, plan, apply.
    pub(crate) fn sync(&mut self) -> Result<(), String> {
        let changes = self.store.take_changes();
        let changed: BTreeSet<NamespacedName> = changes.services;
        let mut warnings = Vec::new();
        self.snapshot.refresh(&self.store, &changed, &mut warnings);
        let observed = self.kernel.observe().map_err(|e| e.to_string())?;
        let plan = self.proxier.sync(&self.snapshot, &observed, Instant::now());
        let report = self.kernel.apply(&plan);
        self.proxier.applied(report.ok());
        self.last = Some(plan);
        if report.ok() {
            Ok(())
        } else {
            Err(format!("applying the sync failed: {:?}", report.errors))
        }
    }

    /// The last iptables restore text.
    pub(crate) fn restore_text(&self) -> &str {
        self.kernel
            .iptables
            .restores
            .last()
            .map(String::as_str)
            .unwrap_or("")
    }
}
