//! The per-family snapshot every mode renders from, kept up to date incrementally: only
//! services the store reports as changed are rebuilt.

use crate::addr::IpFamily;
use crate::endpoint::{endpoints_of_service, Endpoint};
use crate::service::{service_ports, ServicePort, ServicePortName};
use crate::store::{ClusterStore, NamespacedName};
use crate::warning::{ModelWarning, WarningSink};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One service port with its endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceEntry {
    /// The port.
    pub service: ServicePort,
    /// Its endpoints, sorted by [`Endpoint::addr`].
    pub endpoints: Vec<Endpoint>,
}

/// Service ports and endpoints of one IP family.
#[derive(Debug, Clone)]
pub struct Snapshot {
    family: IpFamily,
    node_name: String,
    entries: BTreeSet<ByName>,
    /// Endpoints of ports the Service does not (or no longer) declare; kept for conntrack
    /// cleanup and for modes that care.
    orphan_endpoints: BTreeMap<NamespacedName, usize>,
}

/// What a refresh changed, per service port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotChanges {
    /// Ports added, removed, or with a changed service or endpoint set.
    pub changed: BTreeSet<ServicePortName>,
    /// Ports that were removed.
    pub removed: BTreeSet<ServicePortName>,
}

impl SnapshotChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }
}

impl Snapshot {
    /// An empty snapshot for a family and node.
    pub fn new(family: IpFamily, node_name: impl Into<String>) -> Self {
        Snapshot {
            family,
            node_name: node_name.into(),
            entries: BTreeSet::new(),
            orphan_endpoints: BTreeMap::new(),
        }
    }

    /// Builds a snapshot of every service in the store.
    pub fn build(
        store: &ClusterStore,
        family: IpFamily,
        node_name: &str,
        warnings: &mut Vec<ModelWarning>,
    ) -> Self {
        let mut snapshot = Snapshot::new(family, node_name);
        let all: BTreeSet<NamespacedName> = store.services().map(|(k, _)| k.clone()).collect();
        snapshot.refresh(store, &all, warnings);
        snapshot
    }

    /// The family.
    pub fn family(&self) -> IpFamily {
        self.family
    }

    /// The node name used to mark endpoints local.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Rebuilds the entries of the given services from the store and reports what changed.
    pub fn refresh(
        &mut self,
        store: &ClusterStore,
        services: &BTreeSet<NamespacedName>,
        warnings: &mut Vec<ModelWarning>,
    ) -> SnapshotChanges {
        let mut changes = SnapshotChanges::default();
        for key in services {
            let fresh = self.entries_for(store, key, warnings);
            let old_names: Vec<ServicePortName> = self.ports_of(key).cloned().collect();
            for name in old_names {
                if !fresh.contains_key(&name) {
                    self.entries.remove(&name);
                    changes.changed.insert(name.clone());
                    changes.removed.insert(name);
                }
            }
            for (name, entry) in fresh {
                if self.entries.get(&name).map(|e| e.0.as_ref()) != Some(&entry) {
                    changes.changed.insert(name);
                    self.entries.replace(ByName(Arc::new(entry)));
                }
            }
        }
        changes
    }

    fn entries_for(
        &mut self,
        store: &ClusterStore,
        key: &NamespacedName,
        warnings: &mut Vec<ModelWarning>,
    ) -> BTreeMap<ServicePortName, ServiceEntry> {
        let mut fresh = BTreeMap::new();
        let Some(service) = store.service(key) else {
            self.orphan_endpoints.remove(key);
            return fresh;
        };
        let mut sink = WarningSink {
            object: format!("Service {key}"),
            out: warnings,
        };
        let ports = service_ports(key, service, self.family, &mut sink);
        let mut endpoints = endpoints_of_service(
            key,
            store.slices_of(key),
            self.family,
            &self.node_name,
            warnings,
        );
        for port in ports {
            let eps = endpoints.remove(&port.name).unwrap_or_default();
            fresh.insert(
                port.name.clone(),
                ServiceEntry {
                    service: port,
                    endpoints: eps,
                },
            );
        }
        if endpoints.is_empty() {
            self.orphan_endpoints.remove(key);
        } else {
            self.orphan_endpoints.insert(key.clone(), endpoints.len());
        }
        fresh
    }

    fn ports_of<'a>(
        &'a self,
        key: &'a NamespacedName,
    ) -> impl Iterator<Item = &'a ServicePortName> + 'a {
        self.service_entries(key).map(|(name, _)| name)
    }

    /// The ports of one service, in name order.
    pub fn service_entries<'a>(
        &'a self,
        key: &'a NamespacedName,
    ) -> impl Iterator<Item = (&'a ServicePortName, &'a Arc<ServiceEntry>)> + 'a {
        self.entries
            .range(port_range_start(key)..)
            .map(ByName::pair)
            .take_while(move |(name, _)| &name.service == key)
    }

    /// Every service port, in name order.
    pub fn entries(&self) -> impl Iterator<Item = (&ServicePortName, &Arc<ServiceEntry>)> {
        self.entries.iter().map(ByName::pair)
    }

    /// One service port.
    pub fn entry(&self, name: &ServicePortName) -> Option<&Arc<ServiceEntry>> {
        self.entries.get(name).map(|e| &e.0)
    }

    /// Number of service ports.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no service ports.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total endpoints over all service ports (large-cluster mode threshold input).
    pub fn endpoint_count(&self) -> usize {
        self.entries.iter().map(|e| e.0.endpoints.len()).sum()
    }
}

/// A service port's entry, ordered and found by its port name: the snapshot's set keeps
/// no second copy of each name as a map key.
#[derive(Debug, Clone)]
struct ByName(Arc<ServiceEntry>);

impl ByName {
    fn name(&self) -> &ServicePortName {
        &self.0.service.name
    }

    fn pair(&self) -> (&ServicePortName, &Arc<ServiceEntry>) {
        (self.name(), &self.0)
    }
}

impl Borrow<ServicePortName> for ByName {
    fn borrow(&self) -> &ServicePortName {
        self.name()
    }
}

impl PartialEq for ByName {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for ByName {}

impl PartialOrd for ByName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.name().cmp(other.name())
    }
}

/// The smallest port name of a service: where its ports start in name order.
pub fn port_range_start(key: &NamespacedName) -> ServicePortName {
    ServicePortName {
        service: key.clone(),
        port: String::new(),
        protocol: crate::service::Protocol::Tcp,
    }
}
