//! Kubernetes objects kproxy reads, and the manifest parser that turns YAML or JSON text
//! into them.

use crate::slim::{SlimEndpointSlice, SlimNode, SlimService};
use serde::Deserialize;
use std::fmt;

/// The kinds of object kproxy watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// A `v1 Service`.
    Service,
    /// A `discovery.k8s.io/v1 EndpointSlice`.
    EndpointSlice,
    /// A `v1 Node`.
    Node,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Service => "Service",
            ObjectKind::EndpointSlice => "EndpointSlice",
            ObjectKind::Node => "Node",
        })
    }
}

impl ObjectKind {
    /// The `apiVersion` of this kind.
    pub fn api_version(self) -> &'static str {
        match self {
            ObjectKind::Service | ObjectKind::Node => "v1",
            ObjectKind::EndpointSlice => "discovery.k8s.io/v1",
        }
    }
}

/// One object kproxy watches, as it keeps it (see [`crate::slim`]).
#[derive(Debug, Clone, PartialEq)]
pub enum KubeObject {
    /// A Service.
    Service(Box<SlimService>),
    /// An EndpointSlice.
    EndpointSlice(Box<SlimEndpointSlice>),
    /// A Node.
    Node(Box<SlimNode>),
}

/// Names one object: kind, namespace (empty for Nodes) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    /// The object's kind.
    pub kind: ObjectKind,
    /// The namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

impl KubeObject {
    /// The kind of this object.
    pub fn kind(&self) -> ObjectKind {
        match self {
            KubeObject::Service(_) => ObjectKind::Service,
            KubeObject::EndpointSlice(_) => ObjectKind::EndpointSlice,
            KubeObject::Node(_) => ObjectKind::Node,
        }
    }

    /// The reference (kind, namespace, name) of this object.
    pub fn object_ref(&self) -> ObjectRef {
        let (namespace, name) = match self {
            KubeObject::Service(s) => (s.metadata.namespace.as_str(), &s.metadata.name),
            KubeObject::EndpointSlice(s) => (s.metadata.namespace.as_str(), &s.metadata.name),
            KubeObject::Node(n) => ("", &n.metadata.name),
        };
        ObjectRef {
            kind: self.kind(),
            namespace: namespace.to_string(),
            name: name.clone(),
        }
    }
}

/// An error in a manifest file, naming the document and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The text is not valid YAML or JSON.
    #[error("document {document}: not valid YAML/JSON: {message}")]
    Syntax {
        /// 1-based index of the document in the file.
        document: usize,
        /// The parser's message, with its line and column.
        message: String,
    },
    /// A document is missing `kind` or `apiVersion`.
    #[error("document {document}: missing field `{field}`")]
    MissingField {
        /// 1-based index of the document.
        document: usize,
        /// The missing field.
        field: &'static str,
    },
    /// A Service, EndpointSlice or Node whose fields do not fit the Kubernetes schema.
    #[error("document {document} ({kind} {name}): {message}")]
    Schema {
        /// 1-based index of the document.
        document: usize,
        /// The object's kind.
        kind: String,
        /// The object's name as written, or `<unnamed>`.
        name: String,
        /// What the decoder said, naming the field.
        message: String,
    },
}

/// Objects read from a manifest, plus the documents that were skipped because kproxy does
/// not watch their kind.
#[derive(Debug, Default)]
pub struct Manifest {
    /// The Services, EndpointSlices and Nodes, in file order.
    pub objects: Vec<KubeObject>,
    /// `kind` of every document that was ignored (ConfigMaps, Deployments, ...).
    pub ignored_kinds: Vec<String>,
}

/// Parses multi-document YAML, a JSON document, or a `List` of objects (what `kubectl get
/// -o yaml` prints). Returns an error naming the document and field on the first bad one.
pub fn parse_manifest(text: &str) -> Result<Manifest, ManifestError> {
    let mut manifest = Manifest::default();
    walk_manifest(text, &mut |document| match document {
        Document::Watched(object, _) => manifest.objects.push(object),
        Document::Ignored(kind) => manifest.ignored_kinds.push(kind),
    })?;
    Ok(manifest)
}

/// The documents of a manifest whose kinds kproxy watches, as JSON (items of a list with
/// their kind and apiVersion filled in), each checked as [`parse_manifest`] checks it. The
/// fake API server serves these, unabridged.
pub fn manifest_documents(text: &str) -> Result<Vec<serde_json::Value>, ManifestError> {
    let mut documents = Vec::new();
    walk_manifest(text, &mut |document| {
        if let Document::Watched(_, value) = document {
            documents.push(value);
        }
    })?;
    Ok(documents)
}

/// One document of a manifest.
enum Document {
    /// Of a kind kproxy watches: the object and the JSON it was read from.
    Watched(KubeObject, serde_json::Value),
    /// Of another kind.
    Ignored(String),
}

fn walk_manifest(text: &str, sink: &mut dyn FnMut(Document)) -> Result<(), ManifestError> {
    if let Some(documents) = json_documents(text) {
        for (index, value) in documents.into_iter().enumerate() {
            collect_document(value, index + 1, sink)?;
        }
        return Ok(());
    }
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let number = index + 1;
        let value =
            serde_json::Value::deserialize(document).map_err(|e| ManifestError::Syntax {
                document: number,
                message: e.to_string(),
            })?;
        collect_document(value, number, sink)?;
    }
    Ok(())
}

/// The documents of a manifest written as JSON (one or more values one after the other),
/// or `None` when it is not JSON. The YAML parser would read JSON too, but holds about a
/// hundred times the text in memory (745 MB for a 5 MB list of 10,000 Services).
fn json_documents(text: &str) -> Option<Vec<serde_json::Value>> {
    if !text.trim_start().starts_with(['{', '[']) {
        return None;
    }
    serde_json::Deserializer::from_str(text)
        .into_iter::<serde_json::Value>()
        .collect::<Result<Vec<_>, _>>()
        .ok()
}

fn collect_document(
    mut value: serde_json::Value,
    number: usize,
    sink: &mut dyn FnMut(Document),
) -> Result<(), ManifestError> {
    if value.is_null() {
        return Ok(());
    }
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .ok_or(ManifestError::MissingField {
            document: number,
            field: "kind",
        })?
        .to_string();
    if kind.ends_with("List") {
        if let Some(serde_json::Value::Array(items)) = value.get_mut("items").map(std::mem::take) {
            for item in items {
                collect_document(with_item_defaults(item, &kind), number, sink)?;
            }
        }
        return Ok(());
    }
    if value.get("apiVersion").and_then(|v| v.as_str()).is_none() {
        return Err(ManifestError::MissingField {
            document: number,
            field: "apiVersion",
        });
    }
    match decode_value(&kind, &value, number)? {
        Some(object) => sink(Document::Watched(object, value)),
        None => sink(Document::Ignored(kind)),
    }
    Ok(())
}

/// Items of a typed list (`ServiceList`) may omit their own kind and apiVersion.
fn with_item_defaults(mut item: serde_json::Value, list_kind: &str) -> serde_json::Value {
    if let serde_json::Value::Object(map) = &mut item {
        let item_kind = list_kind.trim_end_matches("List");
        if !map.contains_key("kind") && !item_kind.is_empty() {
            map.insert("kind".into(), item_kind.into());
        }
        if !map.contains_key("apiVersion") {
            let api_version = if item_kind == "EndpointSlice" {
                "discovery.k8s.io/v1"
            } else {
                "v1"
            };
            map.insert("apiVersion".into(), api_version.into());
        }
    }
    item
}

/// Decodes one object of a kind kproxy watches; `Ok(None)` for other kinds.
pub fn decode_object(
    kind: &str,
    value: serde_json::Value,
    document: usize,
) -> Result<Option<KubeObject>, ManifestError> {
    decode_value(kind, &value, document)
}

fn decode_value(
    kind: &str,
    value: &serde_json::Value,
    document: usize,
) -> Result<Option<KubeObject>, ManifestError> {
    let name = value
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .unwrap_or("<unnamed>")
        .to_string();
    let schema_error = |e: serde_path_to_error::Error<serde_json::Error>| ManifestError::Schema {
        document,
        kind: kind.to_string(),
        name: name.clone(),
        message: format!("field `{}`: {}", e.path(), e.inner()),
    };
    let object_kind = match kind {
        "Service" => ObjectKind::Service,
        "EndpointSlice" => ObjectKind::EndpointSlice,
        "Node" => ObjectKind::Node,
        _ => return Ok(None),
    };
    if let Some(api_version) = value.get("apiVersion").and_then(|v| v.as_str()) {
        let expected = object_kind.api_version();
        if api_version != expected {
            return Err(ManifestError::Schema {
                document,
                kind: kind.to_string(),
                name,
                message: format!(
                    "field `apiVersion`: invalid value: string {api_version:?}, expected {expected}"
                ),
            });
        }
    }
    let object = match object_kind {
        ObjectKind::Service => KubeObject::Service(Box::new(
            serde_path_to_error::deserialize(value).map_err(schema_error)?,
        )),
        ObjectKind::EndpointSlice => KubeObject::EndpointSlice(Box::new(
            serde_path_to_error::deserialize(value).map_err(schema_error)?,
        )),
        ObjectKind::Node => KubeObject::Node(Box::new(
            serde_path_to_error::deserialize(value).map_err(schema_error)?,
        )),
    };
    Ok(Some(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_multi_document_yaml_and_lists() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: ns}\nspec: {}\n---\n\
                    apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Node\n  metadata: {name: n1}\n\
                    - apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c}\n";
        let manifest = parse_manifest(text).expect("valid manifest");
        assert_eq!(manifest.objects.len(), 2);
        assert_eq!(manifest.objects[1].object_ref().to_string(), "Node n1");
        assert_eq!(manifest.ignored_kinds, vec!["ConfigMap".to_string()]);
    }

    #[test]
    fn reads_json_documents_and_json_lists() {
        let text = r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "ns"}, "spec": {}}
            {"apiVersion": "v1", "kind": "NodeList", "items": [{"metadata": {"name": "n1"}}]}"#;
        let manifest = parse_manifest(text).expect("valid manifest");
        assert_eq!(manifest.objects.len(), 2);
        assert_eq!(manifest.objects[1].object_ref().to_string(), "Node n1");
        let text = r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"}, "spec": {"ports": [{"port": "eighty"}]}}"#;
        let message = parse_manifest(text).expect_err("bad port").to_string();
        assert!(message.starts_with("document 1 (Service b)"), "{message}");
        let flow_yaml = "{apiVersion: v1, kind: Node, metadata: {name: n2}}";
        let manifest = parse_manifest(flow_yaml).expect("YAML flow style");
        assert_eq!(manifest.objects[0].object_ref().to_string(), "Node n2");
    }

    #[test]
    fn schema_errors_name_document_and_field() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {ports: [{port: eighty}]}\n";
        let err = parse_manifest(text).expect_err("bad port");
        let message = err.to_string();
        assert!(message.starts_with("document 2 (Service b)"), "{message}");
        assert!(message.contains("field `spec.ports[0].port`"), "{message}");
        let text =
            "apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata: {name: s}\n";
        let message = parse_manifest(text).expect_err("old version").to_string();
        assert_eq!(
            message,
            "document 1 (EndpointSlice s): field `apiVersion`: invalid value: string \"discovery.k8s.io/v1beta1\", expected discovery.k8s.io/v1"
        );
    }
}
