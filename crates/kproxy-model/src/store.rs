//! The cluster store: the latest version of every watched object, and the set of services
//! touched since the change set was last taken.

use crate::objects::{KubeObject, ObjectKind, ObjectRef};
use crate::slim::{SlimEndpointSlice, SlimNode, SlimService};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A namespace and a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamespacedName {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl NamespacedName {
    /// Builds a namespaced name.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        NamespacedName {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A change to the store, as a source reports it.
#[derive(Debug, Clone)]
pub enum StoreEvent {
    /// An object was added or updated.
    Apply(KubeObject),
    /// An object was deleted.
    Delete(ObjectRef),
    /// Every object of this kind is replaced by this list (a fresh list after a relist).
    Replace(ObjectKind, Vec<KubeObject>),
}

/// What changed since the last call to [`ClusterStore::take_changes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreChanges {
    /// Services whose Service object or EndpointSlices changed.
    pub services: BTreeSet<NamespacedName>,
    /// Whether the local Node changed (labels or addresses); modes re-render everything.
    pub node: bool,
    /// Number of Service object changes (for metrics).
    pub service_changes: u64,
    /// Number of EndpointSlice changes (for metrics).
    pub endpoint_changes: u64,
}

/// The latest Services, EndpointSlices and local Node, indexed by service.
#[derive(Debug, Default, Clone)]
pub struct ClusterStore {
    /// The Services, without their name and namespace (the key has them). Boxed as they
    /// arrive: a B-tree node holds eleven slots, about half of them empty.
    services: BTreeMap<NamespacedName, Box<SlimService>>,
    /// Each service's slices in name order: most services have one, so a small vector
    /// (a B-tree leaf holds eleven entries inline). A slice keeps its name and trigger
    /// time; its namespace and owner are in the keys.
    slices: HashMap<NamespacedName, Vec<SlimEndpointSlice>>,
    slice_owner: HashMap<NamespacedName, NamespacedName>,
    unowned_slices: BTreeSet<NamespacedName>,
    node: Option<SlimNode>,
    /// One copy of each endpoint node name; names no endpoint uses any more are dropped
    /// when the changes are taken.
    node_names: HashSet<Arc<str>>,
    changes: StoreChanges,
}

impl ClusterStore {
    /// An empty store.
    pub fn new() -> Self {
        ClusterStore::default()
    }

    /// Builds a store from a list of objects (a manifest).
    pub fn from_objects(objects: impl IntoIterator<Item = KubeObject>) -> Self {
        let mut store = ClusterStore::new();
        for object in objects {
            store.apply(StoreEvent::Apply(object));
        }
        store
    }

    /// Applies one event.
    pub fn apply(&mut self, event: StoreEvent) {
        match event {
            StoreEvent::Apply(object) => self.upsert(object),
            StoreEvent::Delete(object_ref) => self.delete(&object_ref),
            StoreEvent::Replace(kind, objects) => self.replace(kind, objects),
        }
    }

    fn upsert(&mut self, object: KubeObject) {
        match object {
            KubeObject::Service(mut service) => {
                service.metadata.resource_version = None;
                let key = NamespacedName::new(
                    std::mem::take(&mut service.metadata.namespace),
                    std::mem::take(&mut service.metadata.name),
                );
                if self.services.get(&key) != Some(&service) {
                    self.changes.service_changes += 1;
                    self.changes.services.insert(key.clone());
                    self.services.insert(key, service);
                }
            }
            KubeObject::EndpointSlice(slice) => self.upsert_slice(*slice),
            KubeObject::Node(mut node) => {
                node.metadata.resource_version = None;
                if self.node.as_ref() != Some(&node) {
                    self.node = Some(*node);
                    self.changes.node = true;
                }
            }
        }
    }

    fn upsert_slice(&mut self, mut slice: SlimEndpointSlice) {
        let meta = &mut slice.metadata;
        meta.resource_version = None;
        let key = NamespacedName::new(std::mem::take(&mut meta.namespace), meta.name.clone());
        let owner = meta
            .service_name
            .take()
            .map(|service| NamespacedName::new(key.namespace.clone(), service));
        self.share_node_names(&mut slice);
        let unchanged = owner
            .as_ref()
            .filter(|owner| self.slice_owner.get(&key) == Some(*owner))
            .and_then(|owner| self.slices.get(owner))
            .and_then(|slices| Some(&slices[find_slice(slices, &key.name).ok()?]))
            .is_some_and(|old| *old == slice);
        if unchanged {
            return;
        }
        let counted_before = self.changes.endpoint_changes;
        self.remove_slice(&key);
        match owner {
            Some(owner) => {
                self.changes.endpoint_changes = counted_before + 1;
                self.changes.services.insert(owner.clone());
                let slices = self.slices.entry(owner.clone()).or_default();
                if let Err(index) = find_slice(slices, &key.name) {
                    // Exactly: a growing vector starts with room for four slices.
                    slices.reserve_exact(1);
                    slices.insert(index, slice);
                }
                self.slice_owner.insert(key, owner);
            }
            None => {
                self.unowned_slices.insert(key);
            }
        }
    }

    /// Points each endpoint's node name at the store's copy of that name.
    fn share_node_names(&mut self, slice: &mut SlimEndpointSlice) {
        for endpoint in slice.endpoints.iter_mut() {
            let Some(name) = endpoint.node_name.as_mut() else {
                continue;
            };
            match self.node_names.get(name) {
                Some(shared) => *name = shared.clone(),
                None => {
                    self.node_names.insert(name.clone());
                }
            }
        }
    }

    fn remove_slice(&mut self, key: &NamespacedName) {
        self.unowned_slices.remove(key);
        if let Some(owner) = self.slice_owner.remove(key) {
            if let Some(slices) = self.slices.get_mut(&owner) {
                if let Ok(index) = find_slice(slices, &key.name) {
                    slices.remove(index);
                }
                if slices.is_empty() {
                    self.slices.remove(&owner);
                }
            }
            self.changes.endpoint_changes += 1;
            self.changes.services.insert(owner);
        }
    }

    fn delete(&mut self, object_ref: &ObjectRef) {
        let key = NamespacedName::new(object_ref.namespace.clone(), object_ref.name.clone());
        match object_ref.kind {
            ObjectKind::Service => {
                if self.services.remove(&key).is_some() {
                    self.changes.service_changes += 1;
                    self.changes.services.insert(key);
                }
            }
            ObjectKind::EndpointSlice => self.remove_slice(&key),
            ObjectKind::Node => {
                if self.node.take().is_some() {
                    self.changes.node = true;
                }
            }
        }
    }

    fn replace(&mut self, kind: ObjectKind, objects: Vec<KubeObject>) {
        let fresh: BTreeSet<ObjectRef> = objects.iter().map(KubeObject::object_ref).collect();
        let stale: Vec<ObjectRef> = self
            .object_refs(kind)
            .into_iter()
            .filter(|r| !fresh.contains(r))
            .collect();
        for object_ref in stale {
            self.delete(&object_ref);
        }
        for object in objects {
            self.upsert(object);
        }
    }

    fn object_refs(&self, kind: ObjectKind) -> Vec<ObjectRef> {
        let to_ref = |key: &NamespacedName| ObjectRef {
            kind,
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        };
        match kind {
            ObjectKind::Service => self.services.keys().map(to_ref).collect(),
            ObjectKind::EndpointSlice => self
                .slice_owner
                .keys()
                .chain(self.unowned_slices.iter())
                .map(to_ref)
                .collect(),
            ObjectKind::Node => self
                .node
                .iter()
                .map(|n| ObjectRef {
                    kind,
                    namespace: String::new(),
                    name: n.metadata.name.clone(),
                })
                .collect(),
        }
    }

    /// Returns what changed since the last call, and starts a new change set.
    pub fn take_changes(&mut self) -> StoreChanges {
        self.node_names.retain(|name| Arc::strong_count(name) > 1);
        std::mem::take(&mut self.changes)
    }

    /// The Service with this name. Its `metadata` name and namespace are empty: the store
    /// moved them into its key.
    pub fn service(&self, key: &NamespacedName) -> Option<&SlimService> {
        self.services.get(key).map(|service| &**service)
    }

    /// All Services, in namespace/name order.
    pub fn services(&self) -> impl Iterator<Item = (&NamespacedName, &SlimService)> {
        self.services.iter().map(|(key, service)| (key, &**service))
    }

    /// The EndpointSlices of a service, in slice-name order. Their `metadata` namespace and
    /// service name are empty: the store moved them into its keys.
    pub fn slices_of(&self, service: &NamespacedName) -> impl Iterator<Item = &SlimEndpointSlice> {
        self.slices.get(service).into_iter().flat_map(|s| s.iter())
    }

    /// EndpointSlices without the service-name label (they are ignored, and reported).
    pub fn unowned_slices(&self) -> impl Iterator<Item = &NamespacedName> {
        self.unowned_slices.iter()
    }

    /// The local Node, when the source has seen it.
    pub fn node(&self) -> Option<&SlimNode> {
        self.node.as_ref()
    }

    /// Number of Services held.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }
}

/// Where the slice with this name is in a service's name-ordered slices (`Err`: where it
/// would go).
fn find_slice(slices: &[SlimEndpointSlice], name: &str) -> Result<usize, usize> {
    slices.binary_search_by(|slice| slice.metadata.name.as_str().cmp(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slim::SliceMeta;

    fn slice(service: &str) -> KubeObject {
        KubeObject::EndpointSlice(Box::new(SlimEndpointSlice {
            metadata: SliceMeta {
                name: "web-abc".into(),
                namespace: "ns".into(),
                service_name: Some(service.into()),
                ..SliceMeta::default()
            },
            ..SlimEndpointSlice::default()
        }))
    }

    #[test]
    fn a_slice_that_changes_its_service_moves() {
        let mut store = ClusterStore::from_objects([slice("web")]);
        store.take_changes();
        store.apply(StoreEvent::Apply(slice("api")));
        let (web, api) = (
            NamespacedName::new("ns", "web"),
            NamespacedName::new("ns", "api"),
        );
        assert_eq!(
            store.take_changes().services,
            BTreeSet::from([api.clone(), web.clone()])
        );
        assert_eq!(store.slices_of(&web).count(), 0);
        assert_eq!(store.slices_of(&api).count(), 1);
        store.apply(StoreEvent::Apply(slice("api")));
        assert!(store.take_changes().services.is_empty());
    }
}
