//! The agent's own Node as kproxy keeps it.

use super::decode::or_default;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// A Node's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeMeta {
    /// `metadata.name`.
    #[serde(default, deserialize_with = "or_default")]
    pub name: String,
    /// `metadata.resourceVersion`.
    #[serde(default)]
    pub resource_version: Option<String>,
    /// `metadata.labels`.
    #[serde(default, deserialize_with = "or_default")]
    pub labels: BTreeMap<String, String>,
    /// Whether `metadata.deletionTimestamp` is set (the Node is being deleted).
    #[serde(default, rename = "deletionTimestamp", deserialize_with = "is_set")]
    pub deleting: bool,
}

/// A `v1 Node`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SlimNode {
    /// Name, labels, deletion.
    #[serde(default, deserialize_with = "or_default")]
    pub metadata: NodeMeta,
    /// Pod CIDRs and taints.
    #[serde(default, deserialize_with = "or_default")]
    pub spec: SlimNodeSpec,
    /// `status.addresses`.
    #[serde(default, rename = "status", deserialize_with = "addresses_of_status")]
    pub addresses: Vec<NodeAddress>,
}

/// The part of a Node's spec kproxy reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimNodeSpec {
    /// `spec.podCIDR`.
    #[serde(default, rename = "podCIDR")]
    pub pod_cidr: Option<String>,
    /// `spec.podCIDRs`.
    #[serde(default, rename = "podCIDRs", deserialize_with = "or_default")]
    pub pod_cidrs: Vec<String>,
    /// `spec.taints[].key`.
    #[serde(default, rename = "taints", deserialize_with = "taint_keys")]
    pub taint_keys: Vec<String>,
}

/// One entry of `status.addresses`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, ...
    #[serde(default, rename = "type", deserialize_with = "or_default")]
    pub type_: String,
    /// The address, as written.
    #[serde(default, deserialize_with = "or_default")]
    pub address: String,
}

fn is_set<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(Option::<serde::de::IgnoredAny>::deserialize(deserializer)?.is_some())
}

#[derive(Deserialize)]
struct Taint {
    #[serde(default, deserialize_with = "or_default")]
    key: String,
}

fn taint_keys<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let taints = Option::<Vec<Taint>>::deserialize(deserializer)?;
    Ok(taints.into_iter().flatten().map(|t| t.key).collect())
}

#[derive(Deserialize)]
struct Status {
    #[serde(default, deserialize_with = "or_default")]
    addresses: Vec<NodeAddress>,
}

fn addresses_of_status<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<NodeAddress>, D::Error> {
    Ok(Option::<Status>::deserialize(deserializer)?
        .map(|s| s.addresses)
        .unwrap_or_default())
}
