//! The resources the fake server serves, and how their URL paths are spelled.

use kproxy_model::ObjectKind;

/// A resource type the fake server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// `v1 services`, namespaced.
    Services,
    /// `discovery.k8s.io/v1 endpointslices`, namespaced.
    EndpointSlices,
    /// `v1 nodes`, cluster-scoped.
    Nodes,
}

impl ResourceType {
    /// Every resource type, in a fixed order.
    pub const ALL: [ResourceType; 3] = [
        ResourceType::Services,
        ResourceType::EndpointSlices,
        ResourceType::Nodes,
    ];

    /// The resource type holding objects of this kind.
    pub fn of_kind(kind: ObjectKind) -> Self {
        match kind {
            ObjectKind::Service => ResourceType::Services,
            ObjectKind::EndpointSlice => ResourceType::EndpointSlices,
            ObjectKind::Node => ResourceType::Nodes,
        }
    }

    /// The resource type whose objects have this `kind` field.
    pub fn of_kind_name(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.kind() == kind)
    }

    /// The `kind` of its objects.
    pub fn kind(self) -> &'static str {
        match self {
            ResourceType::Services => "Service",
            ResourceType::EndpointSlices => "EndpointSlice",
            ResourceType::Nodes => "Node",
        }
    }

    /// The `apiVersion` of its objects.
    pub fn api_version(self) -> &'static str {
        match self {
            ResourceType::EndpointSlices => "discovery.k8s.io/v1",
            ResourceType::Services | ResourceType::Nodes => "v1",
        }
    }

    /// The plural name used in URL paths.
    pub fn plural(self) -> &'static str {
        match self {
            ResourceType::Services => "services",
            ResourceType::EndpointSlices => "endpointslices",
            ResourceType::Nodes => "nodes",
        }
    }

    /// Whether its objects live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(self, ResourceType::Nodes)
    }

    /// The URL prefix of its API group version: `/api/v1` or `/apis/GROUP/VERSION`.
    pub fn group_prefix(self) -> &'static str {
        match self {
            ResourceType::EndpointSlices => "/apis/discovery.k8s.io/v1",
            ResourceType::Services | ResourceType::Nodes => "/api/v1",
        }
    }
}

/// What a request path names: a collection (optionally in a namespace) or one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    /// The resource type.
    pub resource: ResourceType,
    /// The namespace in the path, if any.
    pub namespace: Option<String>,
    /// The object name, for a single-object path.
    pub name: Option<String>,
}

impl ResourcePath {
    /// Reads `/api/v1/services`, `/api/v1/namespaces/NS/services[/NAME]`,
    /// `/apis/discovery.k8s.io/v1/[namespaces/NS/]endpointslices[/NAME]` and
    /// `/api/v1/nodes[/NAME]`.
    pub fn parse(path: &str) -> Option<Self> {
        let path = path.trim_end_matches('/');
        ResourceType::ALL.into_iter().find_map(|resource| {
            let rest = path
                .strip_prefix(resource.group_prefix())?
                .strip_prefix('/')?;
            let segments: Vec<&str> = rest.split('/').collect();
            let (namespace, tail) = match segments.as_slice() {
                ["namespaces", ns, tail @ ..] if resource.namespaced() => {
                    (Some(ns.to_string()), tail)
                }
                tail => (None, tail),
            };
            match tail {
                [plural] if *plural == resource.plural() => Some(ResourcePath {
                    resource,
                    namespace,
                    name: None,
                }),
                [plural, name] if *plural == resource.plural() => Some(ResourcePath {
                    resource,
                    namespace,
                    name: Some(name.to_string()),
                }),
                _ => None,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_collection_namespaced_and_object_paths() {
        let all = ResourcePath::parse("/api/v1/services").expect("services");
        assert_eq!(
            (all.resource, all.namespace, all.name),
            (ResourceType::Services, None, None)
        );
        let ns = ResourcePath::parse("/apis/discovery.k8s.io/v1/namespaces/ns1/endpointslices")
            .expect("namespaced slices");
        assert_eq!(ns.resource, ResourceType::EndpointSlices);
        assert_eq!(ns.namespace.as_deref(), Some("ns1"));
        let node = ResourcePath::parse("/api/v1/nodes/node-a").expect("node");
        assert_eq!(node.name.as_deref(), Some("node-a"));
        assert_eq!(ResourcePath::parse("/api/v1/namespaces/ns1/nodes"), None);
        assert_eq!(ResourcePath::parse("/api/v1/pods"), None);
    }
}
