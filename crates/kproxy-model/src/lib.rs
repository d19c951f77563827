//! kproxy's service model: Kubernetes Services, EndpointSlices and the local Node in,
//! per-family service ports with their endpoints out, plus the change tracking and
//! endpoint selection every mode shares. Pure: no I/O.
//!
//! Data flow: a source emits [`StoreEvent`]s into a [`ClusterStore`]; the store reports
//! which services changed ([`StoreChanges`]); each mode's [`Snapshot`] refreshes those
//! services and reports the changed service ports ([`SnapshotChanges`]); renderers call
//! [`select_endpoints`] per port.

pub mod addr;
pub mod endpoint;
pub mod node;
pub mod objects;
pub mod packed_text;
pub mod selection;
pub mod service;
pub mod slim;
pub mod snapshot;
pub mod store;
pub mod warning;

pub use addr::{join_host_port, parse_cidr_sloppy, parse_ip_sloppy, Decimal, HostPort, IpFamily};
pub use endpoint::Endpoint;
pub use node::NodeFacts;
pub use objects::{
    manifest_documents, parse_manifest, KubeObject, Manifest, ManifestError, ObjectKind, ObjectRef,
};
pub use packed_text::{CorruptText, PackedText, Packer};
pub use selection::{select_endpoints, EndpointSelection, NodeTopology};
pub use service::{IngressMode, Protocol, ServicePort, ServicePortName};
pub use slim::TRIGGER_TIME_ANNOTATION;
pub use snapshot::{ServiceEntry, Snapshot, SnapshotChanges};
pub use store::{ClusterStore, NamespacedName, StoreChanges, StoreEvent};
pub use warning::ModelWarning;
