//! Elements of the shared sets and maps: who wants each one, and what the kernel is
//! believed to hold, so a sync sends only the difference.

use crate::nft::{Element, Transaction};
use kproxy_model::ServicePortName;
use std::collections::{BTreeMap, BTreeSet};

/// `(container, key)`.
pub type ElementKey = (String, String);

fn key_of(e: &Element) -> ElementKey {
    (e.container.clone(), e.key.clone())
}

/// Desired elements with their owners (a short list sorted by owner: almost every key
/// has one), and the kernel's believed elements.
#[derive(Debug, Clone, Default)]
pub struct ElementBook {
    wanted: BTreeMap<ElementKey, Vec<(ServicePortName, Element)>>,
    kernel: BTreeMap<ElementKey, Element>,
}

impl ElementBook {
    /// Forgets every owner (a full sync re-adds them all).
    pub fn clear_wanted(&mut self) {
        self.wanted.clear();
    }

    /// Replaces the kernel's believed content.
    pub fn set_kernel(&mut self, elements: impl IntoIterator<Item = Element>) {
        self.kernel = elements.into_iter().map(|e| (key_of(&e), e)).collect();
    }

    /// Removes `owner`'s elements; returns the keys touched.
    pub fn remove_owner(
        &mut self,
        owner: &ServicePortName,
        elements: &[Element],
        touched: &mut BTreeSet<ElementKey>,
    ) {
        for e in elements {
            let key = key_of(e);
            if let Some(owners) = self.wanted.get_mut(&key) {
                if let Ok(i) = owners.binary_search_by(|(o, _)| o.cmp(owner)) {
                    owners.remove(i);
                }
                if owners.is_empty() {
                    self.wanted.remove(&key);
                }
            }
            touched.insert(key);
        }
    }

    /// Adds `owner`'s elements; returns the keys touched.
    pub fn add_owner(
        &mut self,
        owner: &ServicePortName,
        elements: &[Element],
        touched: &mut BTreeSet<ElementKey>,
    ) {
        for e in elements {
            let key = key_of(e);
            let owners = self.wanted.entry(key.clone()).or_default();
            if let Err(i) = owners.binary_search_by(|(o, _)| o.cmp(owner)) {
                owners.insert(i, (owner.clone(), e.clone()));
            }
            touched.insert(key);
        }
    }

    /// Every key wanted or in the kernel.
    pub fn all_keys(&self) -> BTreeSet<ElementKey> {
        self.wanted
            .keys()
            .chain(self.kernel.keys())
            .cloned()
            .collect()
    }

    /// The element that wins for a key: the first owner's, by service port name.
    fn effective(&self, key: &ElementKey) -> Option<&Element> {
        self.wanted
            .get(key)
            .and_then(|owners| owners.first())
            .map(|(_, e)| e)
    }

    /// Writes deletions then additions for `keys` into `deletes`/`adds`, and updates the
    /// kernel belief to match.
    pub fn reconcile(
        &mut self,
        keys: &BTreeSet<ElementKey>,
        deletes: &mut Transaction,
        adds: &mut Transaction,
    ) {
        for key in keys {
            let wanted = self.effective(key).cloned();
            let current = self.kernel.get(key);
            if wanted.as_ref() == current {
                continue;
            }
            if let Some(old) = current {
                deletes.delete_element(old.clone());
            }
            match wanted {
                Some(e) => {
                    adds.add(e.clone());
                    self.kernel.insert(key.clone(), e);
                }
                None => {
                    self.kernel.remove(key);
                }
            }
        }
    }
}
