//! Which objects a list or watch request sees, and how one change looks to a watcher.

use crate::history::Change;
use crate::resource::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use serde_json::{json, Value};

/// The objects a request selects: resource, namespace, labels and fields.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub resource: ResourceType,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    /// Whether the request sees this object.
    pub fn matches(&self, object: &Value) -> bool {
        let in_namespace = self.namespace.as_deref().is_none_or(|ns| {
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                == Some(ns)
        });
        in_namespace && self.labels.matches(object) && self.fields.matches(object)
    }

    /// The watch event a watcher of this filter receives for a change, if any. An update
    /// that moves an object out of the selection is a `DELETED`, into it an `ADDED`.
    pub fn event_for(&self, change: &Change) -> Option<Value> {
        if change.resource != self.resource {
            return None;
        }
        let old = change.old.as_ref().filter(|o| self.matches(o));
        let new = change.new.as_ref().filter(|o| self.matches(o));
        match (old, new) {
            (Some(_), Some(new)) => Some(watch_event("MODIFIED", new)),
            (None, Some(new)) => Some(watch_event("ADDED", new)),
            (Some(old), None) => {
                let mut gone = change.new.clone().unwrap_or_else(|| old.clone());
                set_resource_version(&mut gone, change.resource_version);
                Some(watch_event("DELETED", &gone))
            }
            (None, None) => None,
        }
    }
}

/// A watch event object: `{"type": ..., "object": ...}`.
pub(crate) fn watch_event(kind: &str, object: &Value) -> Value {
    json!({"type": kind, "object": object})
}

/// A `BOOKMARK` event for this resource at this resourceVersion.
pub(crate) fn bookmark_event(resource: ResourceType, resource_version: u64) -> Value {
    watch_event(
        "BOOKMARK",
        &json!({
            "kind": resource.kind(),
            "apiVersion": resource.api_version(),
            "metadata": {"resourceVersion": resource_version.to_string()},
        }),
    )
}

fn set_resource_version(object: &mut Value, resource_version: u64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            resource_version.to_string().into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(labels: Value) -> Value {
        json!({"kind": "Service", "metadata": {"name": "a", "namespace": "ns", "labels": labels}})
    }

    fn filter() -> Filter {
        Filter {
            resource: ResourceType::Services,
            namespace: None,
            labels: LabelSelector::parse("!service.kubernetes.io/headless").expect("valid"),
            fields: FieldSelector::default(),
        }
    }

    fn change(old: Option<Value>, new: Option<Value>) -> Change {
        Change {
            resource_version: 7,
            resource: ResourceType::Services,
            old,
            new,
        }
    }

    fn event_type(event: Option<Value>) -> Option<String> {
        event.and_then(|e| e["type"].as_str().map(str::to_string))
    }

    #[test]
    fn relabelling_moves_objects_in_and_out_of_the_selection() {
        let plain = service(json!({}));
        let headless = service(json!({"service.kubernetes.io/headless": ""}));
        let f = filter();
        assert_eq!(
            event_type(f.event_for(&change(None, Some(plain.clone())))).as_deref(),
            Some("ADDED")
        );
        assert_eq!(
            event_type(f.event_for(&change(Some(plain.clone()), Some(plain.clone())))).as_deref(),
            Some("MODIFIED")
        );
        assert_eq!(
            event_type(f.event_for(&change(Some(plain.clone()), Some(headless.clone()))))
                .as_deref(),
            Some("DELETED")
        );
        assert_eq!(
            event_type(f.event_for(&change(Some(headless.clone()), Some(plain)))).as_deref(),
            Some("ADDED")
        );
        assert_eq!(f.event_for(&change(None, Some(headless))), None);
    }

    #[test]
    fn deletions_carry_the_deletion_resource_version() {
        let event = filter()
            .event_for(&change(Some(service(json!({}))), None))
            .expect("deleted");
        assert_eq!(event["type"], "DELETED");
        assert_eq!(event["object"]["metadata"]["resourceVersion"], "7");
    }
}
