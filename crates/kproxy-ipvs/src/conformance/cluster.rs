//! A case's `cluster.yaml` as JSON documents, and turning them into store events.

use std::path::Path;

use kproxy_model::objects::decode_object;
use kproxy_model::{KubeObject, ObjectKind, ObjectRef};
use serde::Deserialize;
use serde_json::Value;

use super::harness::Harness;

/// The documents of `cluster.yaml`, in file order.
pub(crate) fn read_documents(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut docs = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value = Value::deserialize(document).map_err(|e| format!("cluster.yaml: {e}"))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// The `kind` of a document.
pub(crate) fn kind_of(doc: &Value) -> &str {
    doc.get("kind").and_then(Value::as_str).unwrap_or("")
}

/// Decodes a document into an object kproxy watches.
pub(crate) fn object(doc: &Value) -> Result<KubeObject, String> {
    let kind = kind_of(doc);
    decode_object(kind, doc.clone(), 1)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("cluster.yaml: kind {kind:?} is not watched"))
}

/// Applies documents to the harness's store.
pub(crate) fn apply_all<'a>(
    h: &mut Harness,
    docs: impl IntoIterator<Item = &'a Value>,
) -> Result<(), String> {
    for doc in docs {
        h.apply(object(doc)?);
    }
    Ok(())
}

/// Deletes every object of `kind` among the documents.
pub(crate) fn delete_all(h: &mut Harness, docs: &[Value], kind: ObjectKind) {
    let name = kind.to_string();
    for doc in docs.iter().filter(|d| kind_of(d) == name) {
        let field = |f: &str| {
            doc.pointer(&format!("/metadata/{f}"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        h.delete(ObjectRef {
            kind,
            namespace: field("namespace"),
            name: field("name"),
        });
    }
}
