//! The fake cluster's objects and their change history, versioned as etcd would: one
//! increasing resourceVersion per change, and a compaction point below which history is
//! gone.

use crate::resource::ResourceType;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

/// Identifies one stored object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ObjectKey {
    pub resource: ResourceType,
    pub namespace: String,
    pub name: String,
}

/// One change, with the object before and after (either missing for a create or delete).
#[derive(Debug)]
pub(crate) struct Change {
    pub resource_version: u64,
    pub resource: ResourceType,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

impl Change {
    /// The key of the object changed.
    pub fn key(&self) -> Option<ObjectKey> {
        let object = self.new.as_ref().or(self.old.as_ref())?;
        object_key(self.resource, object).ok()
    }
}

/// A watch asked for history that has been compacted away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expired {
    pub requested: u64,
    pub oldest: u64,
}

/// Why an object could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The object's `kind` is not one the server serves.
    #[error("unsupported kind {0:?}")]
    UnsupportedKind(String),
    /// The object has no `metadata.name` (or a namespaced one no `metadata.namespace`).
    #[error("object has no {0}")]
    MissingField(&'static str),
    /// The object could not be turned into JSON.
    #[error("object is not serialisable: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// Objects, history and resourceVersion counter.
#[derive(Debug)]
pub(crate) struct History {
    objects: BTreeMap<ObjectKey, Value>,
    changes: VecDeque<Arc<Change>>,
    resource_version: u64,
    compacted: u64,
    limit: usize,
}

/// How many changes are kept before the oldest are compacted automatically.
const DEFAULT_HISTORY_LIMIT: usize = 100_000;

impl History {
    pub fn new() -> Self {
        History {
            objects: BTreeMap::new(),
            changes: VecDeque::new(),
            resource_version: 1,
            compacted: 0,
            limit: DEFAULT_HISTORY_LIMIT,
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    /// Creates or replaces an object; stamps it with a new resourceVersion (and a uid on
    /// create).
    pub fn apply(&mut self, mut object: Value) -> Result<Arc<Change>, ApplyError> {
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let resource = ResourceType::of_kind_name(kind)
            .ok_or_else(|| ApplyError::UnsupportedKind(kind.to_string()))?;
        let key = object_key(resource, &object)?;
        let old = self.objects.get(&key).cloned();
        let uid = old
            .as_ref()
            .and_then(|o| o.pointer("/metadata/uid").cloned())
            .unwrap_or_else(|| {
                Value::String(format!("uid-{}-{}", key.name, self.resource_version + 1))
            });
        self.resource_version += 1;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert(
                "resourceVersion".into(),
                self.resource_version.to_string().into(),
            );
            meta.entry("uid").or_insert(uid);
        }
        self.objects.insert(key, object.clone());
        Ok(self.record(resource, old, Some(object)))
    }

    /// Deletes an object; `None` when there is no such object.
    pub fn delete(&mut self, key: &ObjectKey) -> Option<Arc<Change>> {
        let mut old = self.objects.remove(key)?;
        self.resource_version += 1;
        if let Some(meta) = old.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert(
                "resourceVersion".into(),
                self.resource_version.to_string().into(),
            );
        }
        Some(self.record(key.resource, Some(old), None))
    }

    fn record(
        &mut self,
        resource: ResourceType,
        old: Option<Value>,
        new: Option<Value>,
    ) -> Arc<Change> {
        let change = Arc::new(Change {
            resource_version: self.resource_version,
            resource,
            old,
            new,
        });
        self.changes.push_back(change.clone());
        while self.changes.len() > self.limit {
            if let Some(dropped) = self.changes.pop_front() {
                self.compacted = dropped.resource_version;
            }
        }
        change
    }

    /// Forgets all history: a watch from any older resourceVersion gets `410 Gone`.
    pub fn compact(&mut self) {
        self.changes.clear();
        self.compacted = self.resource_version;
    }

    /// The stored objects of one resource type.
    pub fn objects_of(&self, resource: ResourceType) -> impl Iterator<Item = &Value> {
        self.objects
            .iter()
            .filter(move |(key, _)| key.resource == resource)
            .map(|(_, object)| object)
    }

    /// The stored objects with keys in a range, in key order.
    pub fn objects_in(
        &self,
        range: (Bound<&ObjectKey>, Bound<&ObjectKey>),
    ) -> std::collections::btree_map::Range<'_, ObjectKey, Value> {
        self.objects.range::<ObjectKey, _>(range)
    }

    /// One stored object.
    pub fn object(&self, key: &ObjectKey) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Changes after `resource_version`, or [`Expired`] when some of them are compacted.
    pub fn changes_since(&self, resource_version: u64) -> Result<Vec<Arc<Change>>, Expired> {
        if resource_version < self.compacted {
            return Err(Expired {
                requested: resource_version,
                oldest: self.compacted,
            });
        }
        Ok(self
            .changes
            .iter()
            .filter(|c| c.resource_version > resource_version)
            .cloned()
            .collect())
    }
}

fn object_key(resource: ResourceType, object: &Value) -> Result<ObjectKey, ApplyError> {
    let field = |pointer: &str| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let name = field("/metadata/name").ok_or(ApplyError::MissingField("metadata.name"))?;
    let namespace = if resource.namespaced() {
        field("/metadata/namespace").ok_or(ApplyError::MissingField("metadata.namespace"))?
    } else {
        ""
    };
    Ok(ObjectKey {
        resource,
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "ns"}})
    }

    #[test]
    fn changes_get_increasing_versions_and_keep_the_uid() {
        let mut history = History::new();
        let created = history.apply(service("a")).expect("apply");
        let updated = history.apply(service("a")).expect("apply");
        assert!(updated.resource_version > created.resource_version);
        let uid = |c: &Change| {
            c.new
                .as_ref()
                .and_then(|o| o.pointer("/metadata/uid").cloned())
        };
        assert_eq!(uid(&created), uid(&updated));
        assert_eq!(
            updated
                .new
                .as_ref()
                .and_then(|o| o.pointer("/metadata/resourceVersion").cloned()),
            Some(json!(updated.resource_version.to_string()))
        );
    }

    #[test]
    fn compaction_expires_older_versions() {
        let mut history = History::new();
        let first = history.apply(service("a")).expect("apply").resource_version;
        history.apply(service("b")).expect("apply");
        assert_eq!(history.changes_since(first).expect("kept").len(), 1);
        history.compact();
        assert!(history.changes_since(first).is_err());
        assert!(history
            .changes_since(history.resource_version())
            .expect("current")
            .is_empty());
    }

    #[test]
    fn rejects_objects_without_names_or_known_kinds() {
        let mut history = History::new();
        assert!(matches!(
            history.apply(json!({"kind": "Pod", "metadata": {"name": "p"}})),
            Err(ApplyError::UnsupportedKind(_))
        ));
        assert!(matches!(
            history.apply(json!({"kind": "Service", "metadata": {"name": "s"}})),
            Err(ApplyError::MissingField("metadata.namespace"))
        ));
    }
}
