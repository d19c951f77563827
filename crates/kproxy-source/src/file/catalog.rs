//! The file source's memory: the last good objects of each file, and what was last
//! published per kind, so only kinds whose merged content changed are replaced.

use super::scan::Fingerprint;
use kproxy_model::{KubeObject, ObjectKind, StoreEvent};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every kind a `Replace` is published for.
const KINDS: [ObjectKind; 3] = [
    ObjectKind::Service,
    ObjectKind::EndpointSlice,
    ObjectKind::Node,
];

#[derive(Debug)]
struct FileEntry {
    fingerprint: Fingerprint,
    objects: Vec<KubeObject>,
}

/// Last good content per file, and last published list per kind.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    files: BTreeMap<PathBuf, FileEntry>,
    published: BTreeMap<ObjectKind, Vec<KubeObject>>,
}

impl Catalog {
    /// Whether the file is new or changed since it was last read.
    pub fn is_stale(&self, path: &Path, fingerprint: Fingerprint) -> bool {
        self.files
            .get(path)
            .is_none_or(|f| f.fingerprint != fingerprint)
    }

    /// Records a file's new good content.
    pub fn set_content(&mut self, path: &Path, fingerprint: Fingerprint, objects: Vec<KubeObject>) {
        self.files.insert(
            path.to_path_buf(),
            FileEntry {
                fingerprint,
                objects,
            },
        );
    }

    /// Records that this version of a file was bad: its previous content (none for a new
    /// file) is kept, and it is not read again until it changes.
    pub fn keep_content(&mut self, path: &Path, fingerprint: Fingerprint) {
        self.files
            .entry(path.to_path_buf())
            .and_modify(|f| f.fingerprint = fingerprint)
            .or_insert(FileEntry {
                fingerprint,
                objects: Vec::new(),
            });
    }

    /// Forgets files that are no longer there.
    pub fn retain_files(&mut self, present: &BTreeSet<PathBuf>) {
        self.files.retain(|path, _| present.contains(path));
    }

    /// A `Replace` for every kind whose merged content (files in name order, objects in
    /// file order) differs from what was last published; every kind the first time.
    pub fn publish(&mut self) -> Vec<StoreEvent> {
        let mut events = Vec::new();
        for kind in KINDS {
            let merged: Vec<KubeObject> = self
                .files
                .values()
                .flat_map(|f| f.objects.iter())
                .filter(|o| o.kind() == kind)
                .cloned()
                .collect();
            if self.published.get(&kind) != Some(&merged) {
                self.published.insert(kind, merged.clone());
                events.push(StoreEvent::Replace(kind, merged));
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kproxy_model::parse_manifest;

    fn objects(text: &str) -> Vec<KubeObject> {
        parse_manifest(text).expect("valid manifest").objects
    }

    fn replaced_kinds(events: &[StoreEvent]) -> Vec<ObjectKind> {
        events
            .iter()
            .filter_map(|e| match e {
                StoreEvent::Replace(kind, _) => Some(*kind),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn publishes_every_kind_first_then_only_changed_kinds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, "x").expect("write");
        let print = Fingerprint::of(&file).expect("stat");
        let mut catalog = Catalog::default();
        catalog.set_content(
            &file,
            print,
            objects("apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n"),
        );
        assert_eq!(replaced_kinds(&catalog.publish()), KINDS);
        assert!(catalog.publish().is_empty());
        catalog.set_content(
            &file,
            print,
            objects("apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: ns}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: n1}\n"),
        );
        assert_eq!(replaced_kinds(&catalog.publish()), [ObjectKind::Service]);
        assert!(!catalog.is_stale(&file, print));
        catalog.retain_files(&BTreeSet::new());
        assert_eq!(
            replaced_kinds(&catalog.publish()),
            [ObjectKind::Service, ObjectKind::Node]
        );
        assert!(catalog.is_stale(&file, print));
    }

    #[test]
    fn a_bad_version_keeps_the_good_content() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("a.yaml");
        std::fs::write(&file, "x").expect("write");
        let good = Fingerprint::of(&file).expect("stat");
        let mut catalog = Catalog::default();
        catalog.set_content(
            &file,
            good,
            objects("apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n"),
        );
        catalog.publish();
        std::fs::write(&file, "xy").expect("write");
        let bad = Fingerprint::of(&file).expect("stat");
        catalog.keep_content(&file, bad);
        assert!(catalog.publish().is_empty());
        assert!(!catalog.is_stale(&file, bad));
    }
}
