//! The kinds the API source watches, with the selectors kube-proxy uses for them.

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kproxy_model::{KubeObject, ObjectKind};
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// The label selector for Services and EndpointSlices: skip headless services' slices and
/// objects that ask for another service proxy (kube-proxy's, in its canonical order).
pub const PROXY_LABEL_SELECTOR: &str =
    "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name";

/// The field selector for the agent's own Node.
pub fn node_field_selector(node_name: &str) -> String {
    format!("metadata.name={node_name}")
}

/// A Kubernetes type the API source watches and turns into a [`KubeObject`].
pub(crate) trait WatchedKind:
    kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    /// Its kind in the model.
    const KIND: ObjectKind;

    /// Wraps it for the model.
    fn into_object(self) -> KubeObject;
}

impl WatchedKind for Service {
    const KIND: ObjectKind = ObjectKind::Service;

    fn into_object(self) -> KubeObject {
        KubeObject::Service(Box::new(self))
    }
}

impl WatchedKind for EndpointSlice {
    const KIND: ObjectKind = ObjectKind::EndpointSlice;

    fn into_object(self) -> KubeObject {
        KubeObject::EndpointSlice(Box::new(self))
    }
}

impl WatchedKind for Node {
    const KIND: ObjectKind = ObjectKind::Node;

    fn into_object(self) -> KubeObject {
        KubeObject::Node(Box::new(self))
    }
}
