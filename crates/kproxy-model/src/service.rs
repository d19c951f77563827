//! Service ports: what every mode needs to know about one port of one Service, for one IP
//! family.

use crate::addr::{parse_cidr_sloppy, parse_ip_sloppy, IpFamily};
use crate::slim::{
    IpText, ProtocolField, ServiceType, SlimService, SlimServicePort, SlimServiceSpec,
};
use crate::store::NamespacedName;
use crate::warning::WarningSink;
use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;

/// Session affinity timeout used when a ClientIP service does not set one.
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10800;

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Parses the API spelling (`TCP`, `UDP`, `SCTP`).
    pub fn from_api(text: &str) -> Option<Protocol> {
        match text {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// Lowercase name, as iptables and nftables write it.
    pub fn lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// Parses the lowercase name ([`lower`](Self::lower)).
    pub fn from_lower(text: &str) -> Option<Protocol> {
        [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
            .into_iter()
            .find(|p| p.lower() == text)
    }

    /// The IP protocol number (`IPPROTO_TCP` 6, `IPPROTO_UDP` 17, `IPPROTO_SCTP` 132).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

/// Names one port of one Service: `namespace/name:port` (the protocol is part of the
/// identity but not of the display form, as upstream).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePortName {
    /// The Service's namespace and name.
    pub service: NamespacedName,
    /// The port's name; may be empty.
    pub port: String,
    /// The port's protocol.
    pub protocol: Protocol,
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port.is_empty() {
            write!(f, "{}", self.service)
        } else {
            write!(f, "{}:{}", self.service, self.port)
        }
    }
}

/// A load-balancer ingress address and how the load balancer delivers traffic to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngressMode {
    /// The load balancer delivers packets with the LB IP as destination: kproxy handles it.
    Vip,
    /// The load balancer proxies: packets arrive for the node, kproxy adds no LB-IP rule.
    Proxy,
}

/// One port of one Service, for one IP family.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicePort {
    /// The name.
    pub name: ServicePortName,
    /// The service port number.
    pub port: u16,
    /// The ClusterIP of this family.
    pub cluster_ip: IpAddr,
    /// The node port, or 0.
    pub node_port: u16,
    /// External IPs of this family.
    pub external_ips: Vec<IpAddr>,
    /// Load-balancer ingress IPs of this family in VIP mode (Proxy-mode IPs are left out).
    pub load_balancer_ips: Vec<IpAddr>,
    /// Source ranges of this family allowed to reach the LB IPs; empty means all.
    pub load_balancer_source_ranges: Vec<IpNet>,
    /// ClientIP session affinity timeout in seconds, or `None` without affinity.
    pub affinity_timeout: Option<u32>,
    /// `externalTrafficPolicy: Local` on a NodePort or LoadBalancer service.
    pub external_policy_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_policy_local: bool,
    /// The health check node port of a LoadBalancer service with external policy Local, or 0.
    pub health_check_node_port: u16,
}

impl ServicePort {
    /// Whether traffic can reach this port from outside the cluster network.
    pub fn externally_accessible(&self) -> bool {
        self.node_port != 0 || !self.load_balancer_ips.is_empty() || !self.external_ips.is_empty()
    }

    /// Whether the port routes to cluster-wide endpoints for some traffic.
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_policy_local || self.externally_accessible()
    }

    /// Whether the port routes to node-local endpoints for some traffic.
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_policy_local || (self.external_policy_local && self.externally_accessible())
    }
}

/// Builds the service ports of one Service for one family. Headless and ExternalName
/// Services, and Services without a ClusterIP of this family, yield none. Bad fields are
/// reported through `warnings`; a bad port skips only that port.
pub(crate) fn service_ports(
    key: &NamespacedName,
    service: &SlimService,
    family: IpFamily,
    warnings: &mut WarningSink<'_>,
) -> Vec<ServicePort> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    if !is_valid_object_name(&key.namespace) || !is_valid_object_name(&key.name) {
        warnings.warn(
            "metadata.name",
            "namespace or name is not a valid Kubernetes name; service skipped",
        );
        return Vec::new();
    }
    if spec.type_ == ServiceType::ExternalName {
        return Vec::new();
    }
    let Some(cluster_ip) = cluster_ip_of_family(service, family, warnings) else {
        return Vec::new();
    };
    let common = ServiceCommon::new(service, family, warnings);
    let mut ports: Vec<ServicePort> = Vec::new();
    for (index, api_port) in spec.ports.iter().enumerate() {
        let Some(name) = port_name(key, api_port, index, warnings) else {
            continue;
        };
        if ports.iter().any(|p| p.name == name) {
            warnings.warn(
                format!("spec.ports[{index}]"),
                format!("duplicate port {name}/{}; skipped", name.protocol.lower()),
            );
            continue;
        }
        let Some((port, node_port)) = port_numbers(api_port, index, warnings) else {
            continue;
        };
        ports.push(common.port(name, cluster_ip, port, node_port));
    }
    ports
}

/// The fields shared by every port of a Service.
#[derive(Clone)]
struct ServiceCommon {
    external_ips: Vec<IpAddr>,
    load_balancer_ips: Vec<IpAddr>,
    load_balancer_source_ranges: Vec<IpNet>,
    affinity_timeout: Option<u32>,
    external_policy_local: bool,
    internal_policy_local: bool,
    health_check_node_port: u16,
}

impl ServiceCommon {
    fn new(
        service: &SlimService,
        family: IpFamily,
        warnings: &mut WarningSink<'_>,
    ) -> ServiceCommon {
        let default_spec = SlimServiceSpec::default();
        let spec = service.spec.as_ref().unwrap_or(&default_spec);
        let load_balancer = spec.type_ == ServiceType::LoadBalancer;
        let externally_typed = spec.type_ == ServiceType::NodePort || load_balancer;
        let external_policy_local = externally_typed && spec.external_policy_local;
        let mut health_check_node_port = 0;
        if load_balancer && external_policy_local {
            match spec.health_check_node_port.map(u16::try_from) {
                Some(Ok(p)) if p != 0 => health_check_node_port = p,
                _ => warnings.warn(
                    "spec.healthCheckNodePort",
                    "missing or out of range; no health check server for this service",
                ),
            }
        }
        let affinity_timeout = spec.client_ip_affinity.then(|| {
            spec.affinity_timeout_seconds
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
        });
        ServiceCommon {
            external_ips: external_ips(&spec.external_ips, family, warnings),
            load_balancer_ips: ingress_ips(service, family, warnings),
            load_balancer_source_ranges: source_ranges(
                &spec.load_balancer_source_ranges,
                family,
                warnings,
            ),
            affinity_timeout,
            external_policy_local,
            internal_policy_local: spec.internal_policy_local,
            health_check_node_port,
        }
    }

    fn port(
        &self,
        name: ServicePortName,
        cluster_ip: IpAddr,
        port: u16,
        node_port: u16,
    ) -> ServicePort {
        ServicePort {
            name,
            port,
            cluster_ip,
            node_port,
            external_ips: self.external_ips.clone(),
            load_balancer_ips: self.load_balancer_ips.clone(),
            load_balancer_source_ranges: self.load_balancer_source_ranges.clone(),
            affinity_timeout: self.affinity_timeout,
            external_policy_local: self.external_policy_local,
            internal_policy_local: self.internal_policy_local,
            health_check_node_port: self.health_check_node_port,
        }
    }
}

fn cluster_ip_of_family(
    service: &SlimService,
    family: IpFamily,
    warnings: &mut WarningSink<'_>,
) -> Option<IpAddr> {
    let spec = service.spec.as_ref()?;
    let primary = spec.cluster_ip.as_ref()?;
    if matches!(primary, IpText::Invalid(text) if text.is_empty() || &**text == "None") {
        return None;
    }
    let candidates = if spec.cluster_ips.is_empty() {
        std::slice::from_ref(primary)
    } else {
        &spec.cluster_ips[..]
    };
    for (index, address) in candidates.iter().enumerate() {
        match address {
            IpText::Ip(ip) if IpFamily::of(ip) == family => return Some(*ip),
            IpText::Ip(_) => {}
            IpText::Invalid(text) => warnings.warn(
                format!("spec.clusterIPs[{index}]"),
                format!("{text:?} is not an IP address; service skipped"),
            ),
        }
    }
    None
}

/// Whether a namespace or object name is one the API server accepts (a DNS-1123
/// subdomain). kproxy also reads manifests from files, so it checks for itself.
pub fn is_valid_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.'])
}

/// Whether a port name is valid (lowercase letters, digits and `-`, at most 63; may be empty).
pub fn is_valid_port_name(name: &str) -> bool {
    name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn port_name(
    key: &NamespacedName,
    api_port: &SlimServicePort,
    index: usize,
    warnings: &mut WarningSink<'_>,
) -> Option<ServicePortName> {
    let name = api_port.name.clone();
    if !is_valid_port_name(&name) {
        warnings.warn(
            format!("spec.ports[{index}].name"),
            format!("{name:?} is not a valid port name; port skipped"),
        );
        return None;
    }
    let protocol = match &api_port.protocol {
        ProtocolField::Known(protocol) => *protocol,
        ProtocolField::Unknown(text) => {
            warnings.warn(
                format!("spec.ports[{index}].protocol"),
                format!("unknown protocol {text:?}; port skipped"),
            );
            return None;
        }
    };
    Some(ServicePortName {
        service: key.clone(),
        port: name,
        protocol,
    })
}

fn port_numbers(
    api_port: &SlimServicePort,
    index: usize,
    warnings: &mut WarningSink<'_>,
) -> Option<(u16, u16)> {
    let Ok(port) = u16::try_from(api_port.port) else {
        warnings.warn(
            format!("spec.ports[{index}].port"),
            format!(
                "{} is not a valid port (0-65535); port skipped",
                api_port.port
            ),
        );
        return None;
    };
    if port == 0 {
        warnings.warn(
            format!("spec.ports[{index}].port"),
            "port 0 (unset) is rejected by the API server; programmed as upstream kube-proxy does",
        );
    }
    let raw_node_port = api_port.node_port.unwrap_or(0);
    let Ok(node_port) = u16::try_from(raw_node_port) else {
        warnings.warn(
            format!("spec.ports[{index}].nodePort"),
            format!("{raw_node_port} is not a valid port (0-65535); port skipped"),
        );
        return None;
    };
    Some((port, node_port))
}

fn external_ips(texts: &[IpText], family: IpFamily, warnings: &mut WarningSink<'_>) -> Vec<IpAddr> {
    let mut ips = Vec::new();
    for (index, address) in texts.iter().enumerate() {
        match address {
            IpText::Ip(ip) if IpFamily::of(ip) == family => ips.push(*ip),
            IpText::Ip(_) => {}
            IpText::Invalid(text) => warnings.warn(
                format!("spec.externalIPs[{index}]"),
                format!("{text:?} is not an IP address; ignored"),
            ),
        }
    }
    ips
}

fn ingress_ips(
    service: &SlimService,
    family: IpFamily,
    warnings: &mut WarningSink<'_>,
) -> Vec<IpAddr> {
    let mut ips = Vec::new();
    for (index, entry) in service.load_balancer_ingress.iter().enumerate() {
        let Some(text) = entry.ip.as_deref().filter(|t| !t.is_empty()) else {
            continue;
        };
        if ingress_mode(entry.ip_mode.as_deref()) == IngressMode::Proxy {
            continue;
        }
        match parse_ip_sloppy(text) {
            Some(ip) if IpFamily::of(&ip) == family => ips.push(ip),
            Some(_) => {}
            None => warnings.warn(
                format!("status.loadBalancer.ingress[{index}].ip"),
                format!("{text:?} is not an IP address; ignored"),
            ),
        }
    }
    ips
}

/// The delivery mode of a load-balancer ingress entry; unset means VIP.
pub fn ingress_mode(ip_mode: Option<&str>) -> IngressMode {
    if ip_mode == Some("Proxy") {
        IngressMode::Proxy
    } else {
        IngressMode::Vip
    }
}

fn source_ranges(texts: &[String], family: IpFamily, warnings: &mut WarningSink<'_>) -> Vec<IpNet> {
    let mut nets = Vec::new();
    for (index, text) in texts.iter().enumerate() {
        match parse_cidr_sloppy(text.trim()) {
            Some(net) if IpFamily::of_net(&net) == family => nets.push(net),
            Some(_) => {}
            None => warnings.warn(
                format!("spec.loadBalancerSourceRanges[{index}]"),
                format!("{text:?} is not a CIDR; ignored"),
            ),
        }
    }
    if nets.iter().any(|n| n.prefix_len() == 0) {
        nets.clear();
    }
    nets
}
