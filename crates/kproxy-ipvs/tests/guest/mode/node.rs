//! A node programmed by the ipvs mode for real: a cluster store, the proxier, and the
//! kernel facade over netlink, ipset, ip and iptables-legacy.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kproxy_ipvs::ipset::{IpsetCommand, KubeSet};
use kproxy_ipvs::link::{IpCommandLink, KUBE_IPVS0};
use kproxy_ipvs::mode::{set_name, IpCommandHost, IptablesCommand, IpvsSyncPlan};
use kproxy_ipvs::sysctl::{KernelVersion, ProcSys};
use kproxy_ipvs::{IpvsKernel, IpvsProxier, IpvsSettings, NetlinkIpvs, Timeouts};
use kproxy_model::objects::decode_object;
use kproxy_model::{
    ClusterStore, IpFamily, NamespacedName, ObjectKind, ObjectRef, Snapshot, StoreEvent,
};
use serde_json::Value;

/// The real kernel seams.
pub type RealKernel =
    IpvsKernel<NetlinkIpvs, IpsetCommand, IpCommandLink, IpCommandHost, IptablesCommand>;

/// Durations of one sync's parts.
#[derive(Debug, Default, Clone, Copy)]
pub struct SyncTimes {
    pub refresh: Duration,
    pub observe: Duration,
    pub plan: Duration,
    pub apply: Duration,
}

impl SyncTimes {
    pub fn total(&self) -> Duration {
        self.refresh + self.observe + self.plan + self.apply
    }
}

pub struct Node {
    pub store: ClusterStore,
    snapshot: Snapshot,
    pub proxier: IpvsProxier,
    pub kernel: RealKernel,
    pub last: Option<IpvsSyncPlan>,
}

impl Node {
    /// A fresh IPv4 node named `node`: sysctls set, IPVS flushed.
    pub fn start(node: &str, drain_timeout: Duration) -> Node {
        let mut settings = IpvsSettings::new(IpFamily::V4, node);
        settings.drain_timeout = drain_timeout;
        let mut kernel = IpvsKernel {
            ipvs: NetlinkIpvs::connect().expect("IPVS over netlink"),
            ipset: IpsetCommand::new(),
            link: IpCommandLink::new(KUBE_IPVS0),
            host: IpCommandHost::new(),
            iptables: IptablesCommand::legacy(IpFamily::V4),
        };
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
        let version = KernelVersion::parse(&release).expect("kernel version");
        kernel
            .start(&mut ProcSys::new(), version, false, Timeouts::default())
            .expect("start-up sysctls");
        use kproxy_ipvs::IpvsHandle;
        kernel.ipvs.flush().expect("flush IPVS");
        Node {
            store: ClusterStore::new(),
            snapshot: Snapshot::new(IpFamily::V4, node),
            proxier: IpvsProxier::new(settings),
            kernel,
            last: None,
        }
    }

    pub fn apply(&mut self, doc: Value) {
        let kind = doc["kind"].as_str().unwrap_or("").to_string();
        let object = decode_object(&kind, doc, 1)
            .expect("valid object")
            .expect("a watched kind");
        self.store.apply(StoreEvent::Apply(object));
    }

    pub fn delete(&mut self, kind: ObjectKind, namespace: &str, name: &str) {
        self.store.apply(StoreEvent::Delete(ObjectRef {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }));
    }

    /// One sync; panics if anything failed to apply.
    pub fn sync(&mut self) -> SyncTimes {
        let mut times = SyncTimes::default();
        let start = Instant::now();
        let changed: BTreeSet<NamespacedName> = self.store.take_changes().services;
        let mut warnings = Vec::new();
        self.snapshot.refresh(&self.store, &changed, &mut warnings);
        assert!(warnings.is_empty(), "{warnings:?}");
        times.refresh = start.elapsed();
        let start = Instant::now();
        let observed = self.kernel.observe().expect("observe the kernel");
        times.observe = start.elapsed();
        let start = Instant::now();
        let plan = self.proxier.sync(&self.snapshot, &observed, Instant::now());
        times.plan = start.elapsed();
        let start = Instant::now();
        let report = self.kernel.apply(&plan);
        times.apply = start.elapsed();
        self.proxier.applied(report.ok());
        assert!(report.ok(), "{:?}", report.errors);
        self.last = Some(plan);
        times
    }

    /// `--cleanup`; panics on errors.
    pub fn cleanup(&mut self) {
        let names: Vec<String> = KubeSet::ALL
            .iter()
            .map(|s| set_name(self.proxier.settings(), *s))
            .collect();
        let errors = self.kernel.cleanup(&names);
        assert!(errors.is_empty(), "{errors:?}");
    }
}
