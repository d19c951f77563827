//! The kinds the API source watches, with the selectors kube-proxy uses for them, and the
//! wrapper that lets kube-runtime's watcher decode them straight into the model's slim
//! objects.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kproxy_model::slim::{SlimEndpointSlice, SlimNode, SlimService};
use kproxy_model::{KubeObject, ObjectKind};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;
use std::fmt::Debug;

/// The label selector for Services and EndpointSlices: skip headless services' slices and
/// objects that ask for another service proxy (kube-proxy's, in its canonical order).
pub const PROXY_LABEL_SELECTOR: &str =
    "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name";

/// The field selector for the agent's own Node.
pub fn node_field_selector(node_name: &str) -> String {
    format!("metadata.name={node_name}")
}

/// A model object type the API source watches.
pub(crate) trait WatchedKind:
    DeserializeOwned + Clone + Debug + Send + Sync + 'static
{
    /// Its kind in the model.
    const KIND: ObjectKind;
    /// Its API group (empty for the core group).
    const GROUP: &'static str;
    /// Its resource name in URLs.
    const PLURAL: &'static str;
    /// Namespaced or cluster-wide.
    type Scope;

    /// Takes the resource version out of the object (the store does not keep it).
    fn take_resource_version(&mut self) -> Option<String>;

    /// Wraps it for the model.
    fn into_object(self) -> KubeObject;
}

impl WatchedKind for SlimService {
    const KIND: ObjectKind = ObjectKind::Service;
    const GROUP: &'static str = "";
    const PLURAL: &'static str = "services";
    type Scope = NamespaceResourceScope;

    fn take_resource_version(&mut self) -> Option<String> {
        self.metadata.resource_version.take()
    }

    fn into_object(self) -> KubeObject {
        KubeObject::Service(Box::new(self))
    }
}

impl WatchedKind for SlimEndpointSlice {
    const KIND: ObjectKind = ObjectKind::EndpointSlice;
    const GROUP: &'static str = "discovery.k8s.io";
    const PLURAL: &'static str = "endpointslices";
    type Scope = NamespaceResourceScope;

    fn take_resource_version(&mut self) -> Option<String> {
        self.metadata.resource_version.take()
    }

    fn into_object(self) -> KubeObject {
        KubeObject::EndpointSlice(Box::new(self))
    }
}

impl WatchedKind for SlimNode {
    const KIND: ObjectKind = ObjectKind::Node;
    const GROUP: &'static str = "";
    const PLURAL: &'static str = "nodes";
    type Scope = ClusterResourceScope;

    fn take_resource_version(&mut self) -> Option<String> {
        self.metadata.resource_version.take()
    }

    fn into_object(self) -> KubeObject {
        KubeObject::Node(Box::new(self))
    }
}

/// A slim object as the watcher handles it: kube-runtime reads the resource version from
/// `kube::Resource::meta`, so it moves there; nothing else of the object's metadata does.
#[derive(Debug, Clone)]
pub(crate) struct Watched<K> {
    meta: ObjectMeta,
    object: K,
}

impl<K: WatchedKind> Watched<K> {
    /// Wraps an object.
    pub fn new(mut object: K) -> Self {
        let meta = ObjectMeta {
            resource_version: object.take_resource_version(),
            ..ObjectMeta::default()
        };
        Watched { meta, object }
    }

    /// The model object.
    pub fn into_object(self) -> KubeObject {
        self.object.into_object()
    }
}

impl<'de, K: WatchedKind> Deserialize<'de> for Watched<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        K::deserialize(deserializer).map(Watched::new)
    }
}

impl<K: WatchedKind> kube::Resource for Watched<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Owned(K::KIND.to_string())
    }

    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(K::GROUP)
    }

    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }

    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(K::PLURAL)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    #[test]
    fn urls_and_resource_versions_are_the_api_servers() {
        assert_eq!(
            Watched::<SlimEndpointSlice>::url_path(&(), None),
            "/apis/discovery.k8s.io/v1/endpointslices"
        );
        assert_eq!(
            Watched::<SlimService>::url_path(&(), None),
            "/api/v1/services"
        );
        assert_eq!(Watched::<SlimNode>::api_version(&()), "v1");
        let node: Watched<SlimNode> = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1", "resourceVersion": "12"}
        }))
        .expect("node");
        assert_eq!(node.meta().resource_version.as_deref(), Some("12"));
        let KubeObject::Node(node) = node.into_object() else {
            panic!("a node");
        };
        assert_eq!(node.metadata.name, "n1");
        assert_eq!(node.metadata.resource_version, None);
    }
}
