//! An EndpointSlice as kproxy keeps it: its owner, its ports, and per endpoint the first
//! address (parsed), the conditions, the node and the topology hints.

use super::decode::{first_address, map_entry, or_default, shared_str, IpText, ProtocolField};
use crate::addr::IpFamily;
use crate::store::SERVICE_NAME_LABEL;
use serde::{Deserialize, Deserializer};
use std::sync::Arc;

/// The EndpointSlice annotation with the time of the change that triggered it, kept for
/// the network programming latency metric.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// An EndpointSlice's metadata: name, namespace, the owning Service (its
/// `kubernetes.io/service-name` label), the trigger time annotation, and the resource
/// version the watcher resumes from (the store drops it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SliceMeta {
    /// `metadata.name`.
    #[serde(default, deserialize_with = "or_default")]
    pub name: String,
    /// `metadata.namespace`; empty when unset.
    #[serde(default, deserialize_with = "or_default")]
    pub namespace: String,
    /// `metadata.resourceVersion`.
    #[serde(default)]
    pub resource_version: Option<String>,
    /// The `kubernetes.io/service-name` label.
    #[serde(default, rename = "labels", deserialize_with = "service_name_label")]
    pub service_name: Option<String>,
    /// The [`TRIGGER_TIME_ANNOTATION`].
    #[serde(default, rename = "annotations", deserialize_with = "trigger_time")]
    pub trigger_time: Option<String>,
}

/// `addressType`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AddressType {
    /// `IPv4`.
    V4,
    /// `IPv6`.
    V6,
    /// `FQDN`, unset, or anything else: no mode uses these slices.
    #[default]
    Other,
}

impl AddressType {
    /// The IP family of the slice's addresses, if it has one.
    pub fn family(self) -> Option<IpFamily> {
        match self {
            AddressType::V4 => Some(IpFamily::V4),
            AddressType::V6 => Some(IpFamily::V6),
            AddressType::Other => None,
        }
    }
}

impl<'de> Deserialize<'de> for AddressType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        Ok(match text.as_deref() {
            Some("IPv4") => AddressType::V4,
            Some("IPv6") => AddressType::V6,
            _ => AddressType::Other,
        })
    }
}

/// A `discovery.k8s.io/v1 EndpointSlice`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimEndpointSlice {
    /// Name, namespace, owner and trigger time.
    #[serde(default, deserialize_with = "or_default")]
    pub metadata: SliceMeta,
    /// `addressType`.
    #[serde(default)]
    pub address_type: AddressType,
    /// `ports`.
    #[serde(default, deserialize_with = "or_default")]
    pub ports: Box<[SlimEndpointPort]>,
    /// `endpoints`.
    #[serde(default, deserialize_with = "or_default")]
    pub endpoints: Box<[SlimEndpoint]>,
}

/// One entry of `ports`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SlimEndpointPort {
    /// The name of the Service port it serves; empty when unset.
    #[serde(default, deserialize_with = "or_default")]
    pub name: String,
    /// The protocol (TCP when unset).
    #[serde(default)]
    pub protocol: ProtocolField,
    /// The port number; a port without one is skipped.
    #[serde(default)]
    pub port: Option<i32>,
}

/// One endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimEndpoint {
    /// `addresses[0]`; an endpoint without addresses is skipped.
    #[serde(default, rename = "addresses", deserialize_with = "first_address")]
    pub address: Option<IpText>,
    /// `conditions`.
    #[serde(default, deserialize_with = "or_default")]
    pub conditions: Conditions,
    /// `nodeName`.
    #[serde(default, deserialize_with = "shared_str")]
    pub node_name: Option<Arc<str>>,
    /// `hints`; behind a pointer because few endpoints have them, shared with the
    /// snapshots' endpoints.
    #[serde(default, deserialize_with = "hints")]
    pub hints: Option<Arc<Hints>>,
}

/// `conditions`: unset ones are `None` (their defaults depend on each other).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct Conditions {
    /// `ready`.
    #[serde(default)]
    pub ready: Option<bool>,
    /// `serving`.
    #[serde(default)]
    pub serving: Option<bool>,
    /// `terminating`.
    #[serde(default)]
    pub terminating: Option<bool>,
}

/// Topology hints: the zones and nodes an endpoint is meant for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// `forZones[].name`.
    pub for_zones: Vec<String>,
    /// `forNodes[].name`.
    pub for_nodes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HintsFields {
    #[serde(default, deserialize_with = "or_default")]
    for_zones: Vec<NameField>,
    #[serde(default, deserialize_with = "or_default")]
    for_nodes: Vec<NameField>,
}

#[derive(Deserialize)]
struct NameField {
    #[serde(default, deserialize_with = "or_default")]
    name: String,
}

fn hints<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Arc<Hints>>, D::Error> {
    let Some(fields) = Option::<HintsFields>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if fields.for_zones.is_empty() && fields.for_nodes.is_empty() {
        return Ok(None);
    }
    let names = |list: Vec<NameField>| list.into_iter().map(|n| n.name).collect();
    Ok(Some(Arc::new(Hints {
        for_zones: names(fields.for_zones),
        for_nodes: names(fields.for_nodes),
    })))
}

fn service_name_label<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    map_entry(deserializer, SERVICE_NAME_LABEL)
}

fn trigger_time<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    map_entry(deserializer, TRIGGER_TIME_ANNOTATION)
}
