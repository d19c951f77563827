//! A Service as kproxy keeps it: the fields some mode reads, decoded straight from the API
//! server's JSON or a manifest.

use super::decode::{list_or_default, or_default, IpText, ProtocolField};
use serde::{Deserialize, Deserializer};

/// A Service's metadata: its name and namespace, and the resource version the watcher
/// resumes from (the store drops it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimMeta {
    /// `metadata.name`.
    #[serde(default, deserialize_with = "or_default")]
    pub name: String,
    /// `metadata.namespace`; empty when unset.
    #[serde(default, deserialize_with = "or_default")]
    pub namespace: String,
    /// `metadata.resourceVersion`.
    #[serde(default)]
    pub resource_version: Option<String>,
}

/// A `v1 Service`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SlimService {
    /// Name, namespace and resource version.
    #[serde(default, deserialize_with = "or_default")]
    pub metadata: SlimMeta,
    /// The spec; a Service without one has no ports.
    #[serde(default)]
    pub spec: Option<SlimServiceSpec>,
    /// `status.loadBalancer.ingress`.
    #[serde(default, rename = "status", deserialize_with = "ingress_of_status")]
    pub load_balancer_ingress: Vec<LoadBalancerIngress>,
}

/// `spec.type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ServiceType {
    /// `ClusterIP`, unset, or a type kproxy does not know.
    #[default]
    ClusterIp,
    /// `NodePort`.
    NodePort,
    /// `LoadBalancer`.
    LoadBalancer,
    /// `ExternalName`.
    ExternalName,
}

impl<'de> Deserialize<'de> for ServiceType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        Ok(match text.as_deref() {
            Some("NodePort") => ServiceType::NodePort,
            Some("LoadBalancer") => ServiceType::LoadBalancer,
            Some("ExternalName") => ServiceType::ExternalName,
            _ => ServiceType::ClusterIp,
        })
    }
}

/// The part of a Service's spec kproxy reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimServiceSpec {
    /// `spec.type`.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// `spec.clusterIP` (`None` and empty mean headless or unset).
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: Option<IpText>,
    /// `spec.clusterIPs`.
    #[serde(default, rename = "clusterIPs", deserialize_with = "list_or_default")]
    pub cluster_ips: Vec<IpText>,
    /// `spec.ports`.
    #[serde(default, deserialize_with = "list_or_default")]
    pub ports: Vec<SlimServicePort>,
    /// `spec.externalIPs`.
    #[serde(default, rename = "externalIPs", deserialize_with = "list_or_default")]
    pub external_ips: Vec<IpText>,
    /// `spec.loadBalancerSourceRanges`, as written.
    #[serde(default, deserialize_with = "list_or_default")]
    pub load_balancer_source_ranges: Vec<String>,
    /// `spec.externalTrafficPolicy` is `Local`.
    #[serde(
        default,
        rename = "externalTrafficPolicy",
        deserialize_with = "is_local"
    )]
    pub external_policy_local: bool,
    /// `spec.internalTrafficPolicy` is `Local`.
    #[serde(
        default,
        rename = "internalTrafficPolicy",
        deserialize_with = "is_local"
    )]
    pub internal_policy_local: bool,
    /// `spec.healthCheckNodePort`.
    #[serde(default)]
    pub health_check_node_port: Option<i32>,
    /// `spec.sessionAffinity` is `ClientIP`.
    #[serde(default, rename = "sessionAffinity", deserialize_with = "is_client_ip")]
    pub client_ip_affinity: bool,
    /// `spec.sessionAffinityConfig.clientIP.timeoutSeconds`.
    #[serde(
        default,
        rename = "sessionAffinityConfig",
        deserialize_with = "affinity_timeout"
    )]
    pub affinity_timeout_seconds: Option<i32>,
}

/// One entry of `spec.ports`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimServicePort {
    /// The port's name; empty when unset.
    #[serde(default, deserialize_with = "or_default")]
    pub name: String,
    /// The protocol (TCP when unset).
    #[serde(default)]
    pub protocol: ProtocolField,
    /// The port number (0 when unset).
    #[serde(default, deserialize_with = "or_default")]
    pub port: i32,
    /// The node port.
    #[serde(default)]
    pub node_port: Option<i32>,
}

/// One entry of `status.loadBalancer.ingress`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerIngress {
    /// The IP, as written.
    #[serde(default)]
    pub ip: Option<String>,
    /// `VIP` or `Proxy`.
    #[serde(default)]
    pub ip_mode: Option<String>,
}

fn is_local<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.as_deref() == Some("Local"))
}

fn is_client_ip<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.as_deref() == Some("ClientIP"))
}

#[derive(Deserialize)]
struct AffinityConfig {
    #[serde(default, rename = "clientIP")]
    client_ip: Option<ClientIpConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClientIpConfig {
    #[serde(default)]
    timeout_seconds: Option<i32>,
}

fn affinity_timeout<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i32>, D::Error> {
    let config = Option::<AffinityConfig>::deserialize(deserializer)?;
    Ok(config
        .and_then(|c| c.client_ip)
        .and_then(|c| c.timeout_seconds))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    #[serde(default)]
    load_balancer: Option<LoadBalancerStatus>,
}

#[derive(Deserialize)]
struct LoadBalancerStatus {
    #[serde(default, deserialize_with = "or_default")]
    ingress: Vec<LoadBalancerIngress>,
}

fn ingress_of_status<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<LoadBalancerIngress>, D::Error> {
    let status = Option::<Status>::deserialize(deserializer)?;
    let mut ingress = status
        .and_then(|s| s.load_balancer)
        .map(|lb| lb.ingress)
        .unwrap_or_default();
    ingress.shrink_to_fit();
    Ok(ingress)
}
