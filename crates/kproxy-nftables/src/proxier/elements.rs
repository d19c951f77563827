//! Elements of the shared sets and maps: who wants each one, and what the kernel is
//! believed to hold, so a sync sends only the difference. Each element is held once and
//! shared by the port that wants it, the owners' list and the kernel belief.

use super::writer::SyncWriter;
use crate::nft::Element;
use kproxy_model::ServicePortName;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// An element compared by `(container, key)` only: the identity of a set or map entry.
#[derive(Debug, Clone)]
pub struct ElementKey(Arc<Element>);

impl ElementKey {
    fn parts(&self) -> (&str, &str) {
        (&self.0.container, &self.0.key)
    }
}

impl PartialEq for ElementKey {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for ElementKey {}

impl PartialOrd for ElementKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ElementKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts().cmp(&other.parts())
    }
}

/// A service port that wants elements.
pub type Owner = Arc<ServicePortName>;

/// Desired elements with their owners (a short list sorted by owner: almost every key
/// has one), and the kernel's believed elements (each key holding the element itself).
#[derive(Debug, Clone, Default)]
pub struct ElementBook {
    wanted: BTreeMap<ElementKey, Vec<(Owner, Arc<Element>)>>,
    kernel: BTreeSet<ElementKey>,
}

impl ElementBook {
    /// Forgets every owner (a full sync re-adds them all).
    pub fn clear_wanted(&mut self) {
        self.wanted.clear();
    }

    /// Replaces the kernel's believed content.
    pub fn set_kernel(&mut self, elements: impl IntoIterator<Item = Element>) {
        self.kernel = elements
            .into_iter()
            .map(|e| ElementKey(Arc::new(e)))
            .collect();
    }

    /// Removes `owner`'s elements; adds the keys touched to `touched`.
    pub fn remove_owner(
        &mut self,
        owner: &ServicePortName,
        elements: &[Arc<Element>],
        touched: &mut BTreeSet<ElementKey>,
    ) {
        for e in elements {
            let key = ElementKey(Arc::clone(e));
            if let Some(owners) = self.wanted.get_mut(&key) {
                if let Ok(i) = owners.binary_search_by(|(o, _)| o.as_ref().cmp(owner)) {
                    owners.remove(i);
                }
                if owners.is_empty() {
                    self.wanted.remove(&key);
                }
            }
            touched.insert(key);
        }
    }

    /// Adds `owner`'s elements; adds the keys touched to `touched`.
    pub fn add_owner(
        &mut self,
        owner: &Owner,
        elements: &[Arc<Element>],
        touched: &mut BTreeSet<ElementKey>,
    ) {
        for e in elements {
            let key = ElementKey(Arc::clone(e));
            let owners = self
                .wanted
                .entry(key.clone())
                .or_insert_with(|| Vec::with_capacity(1));
            if let Err(i) = owners.binary_search_by(|(o, _)| o.cmp(owner)) {
                owners.insert(i, (Arc::clone(owner), Arc::clone(e)));
            }
            touched.insert(key);
        }
    }

    /// Every key wanted or in the kernel.
    pub fn all_keys(&self) -> BTreeSet<ElementKey> {
        self.wanted
            .keys()
            .chain(self.kernel.iter())
            .cloned()
            .collect()
    }

    /// The element that wins for a key: the first owner's, by service port name.
    fn effective(&self, key: &ElementKey) -> Option<&Arc<Element>> {
        self.wanted
            .get(key)
            .and_then(|owners| owners.first())
            .map(|(_, e)| e)
    }

    /// Writes, key by key, the deletion of the kernel's element and the addition of the
    /// wanted one where they differ, and updates the kernel belief to match.
    pub fn reconcile(&mut self, keys: &BTreeSet<ElementKey>, w: &mut SyncWriter<'_>) {
        for key in keys {
            let wanted = self.effective(key).cloned();
            let current = self.kernel.get(key).map(|k| &k.0);
            if wanted.as_deref() == current.map(Arc::as_ref) {
                continue;
            }
            if let Some(old) = self.kernel.take(key) {
                w.delete_element(Element::clone(&old.0));
            }
            if let Some(e) = wanted {
                w.add_element(Element::clone(&e));
                self.kernel.insert(ElementKey(e));
            }
        }
    }
}
