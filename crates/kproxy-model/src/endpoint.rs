//! Endpoints: the backends of a service port, merged from all of a Service's
//! EndpointSlices.

use crate::addr::{HostPort, IpFamily};
use crate::service::ServicePortName;
use crate::slim::{Hints, IpText, ProtocolField, SlimEndpoint, SlimEndpointSlice};
use crate::store::NamespacedName;
use crate::warning::WarningSink;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// One backend of a service port. Small and without allocations of its own (100,000 of
/// them at 10,000 services, per family): the `ip:port` text is written where a rule needs
/// it ([`Endpoint::addr`]) and the topology hints are shared with the EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The address.
    pub ip: IpAddr,
    /// The target port.
    pub port: u16,
    /// Ready to receive new connections.
    pub ready: bool,
    /// Serving (possibly while terminating).
    pub serving: bool,
    /// Terminating.
    pub terminating: bool,
    /// Runs on this node.
    pub is_local: bool,
    /// The zones and nodes this endpoint is hinted for; `None` without hints.
    pub hints: Option<Arc<Hints>>,
}

impl Endpoint {
    /// `ip:port` or `[ip]:port`: the DNAT destination, and part of the chain-name hash.
    pub fn addr(&self) -> HostPort {
        HostPort::new(&self.ip, self.port)
    }

    /// Zones this endpoint is hinted for.
    pub fn zone_hints(&self) -> &[String] {
        self.hints.as_deref().map_or(&[], |h| &h.for_zones)
    }

    /// Nodes this endpoint is hinted for.
    pub fn node_hints(&self) -> &[String] {
        self.hints.as_deref().map_or(&[], |h| &h.for_nodes)
    }
}

/// The endpoints of every port of one Service, sorted by [`Endpoint::addr`], without
/// duplicates.
pub(crate) type EndpointsByPort = BTreeMap<ServicePortName, Vec<Endpoint>>;

/// Merges a Service's EndpointSlices of one family into endpoints per service port.
pub(crate) fn endpoints_of_service<'a>(
    service: &NamespacedName,
    slices: impl Iterator<Item = &'a SlimEndpointSlice>,
    family: IpFamily,
    node_name: &str,
    warnings: &mut Vec<crate::ModelWarning>,
) -> EndpointsByPort {
    let mut merged: BTreeMap<ServicePortName, BTreeMap<HostPort, Endpoint>> = BTreeMap::new();
    for slice in slices {
        if slice.address_type.family() != Some(family) {
            continue;
        }
        let mut sink = WarningSink {
            object: format!(
                "EndpointSlice {}/{}",
                service.namespace, slice.metadata.name
            ),
            out: warnings,
        };
        for (port_name, port) in slice_ports(service, slice, &mut sink) {
            let entry = merged.entry(port_name).or_default();
            for (index, api_endpoint) in slice.endpoints.iter().enumerate() {
                let Some(endpoint) = endpoint(api_endpoint, index, port, node_name, &mut sink)
                else {
                    continue;
                };
                let addr = endpoint.addr();
                let keep_existing = entry.get(&addr).is_some_and(|old| old.ready);
                if !keep_existing {
                    entry.insert(addr, endpoint);
                }
            }
        }
    }
    merged
        .into_iter()
        .map(|(name, endpoints)| (name, endpoints.into_values().collect()))
        .collect()
}

fn slice_ports(
    service: &NamespacedName,
    slice: &SlimEndpointSlice,
    sink: &mut WarningSink<'_>,
) -> Vec<(ServicePortName, u16)> {
    let mut ports = Vec::new();
    for (index, api_port) in slice.ports.iter().enumerate() {
        let protocol = match &api_port.protocol {
            ProtocolField::Known(protocol) => *protocol,
            ProtocolField::Unknown(text) => {
                sink.warn(
                    format!("ports[{index}].protocol"),
                    format!("unknown protocol {text:?}; port skipped"),
                );
                continue;
            }
        };
        let Some(raw_port) = api_port.port else {
            continue;
        };
        let port = match u16::try_from(raw_port) {
            Ok(p) if p != 0 => p,
            _ => {
                sink.warn(
                    format!("ports[{index}].port"),
                    format!("{raw_port} is not a valid port (1-65535); port skipped"),
                );
                continue;
            }
        };
        let name = ServicePortName {
            service: service.clone(),
            port: api_port.name.clone(),
            protocol,
        };
        ports.push((name, port));
    }
    ports
}

fn endpoint(
    api: &SlimEndpoint,
    index: usize,
    port: u16,
    node_name: &str,
    sink: &mut WarningSink<'_>,
) -> Option<Endpoint> {
    let ip = match api.address.as_ref()? {
        IpText::Ip(ip) => *ip,
        IpText::Invalid(text) => {
            sink.warn(
                format!("endpoints[{index}].addresses[0]"),
                format!("{text:?} is not an IP address; endpoint skipped"),
            );
            return None;
        }
    };
    let conditions = api.conditions;
    let ready = conditions.ready.unwrap_or(true);
    let serving = conditions.serving.unwrap_or(ready);
    let terminating = conditions.terminating.unwrap_or(false);
    Some(Endpoint {
        ip,
        port,
        ready,
        serving,
        terminating,
        is_local: !node_name.is_empty() && api.node_name.as_deref() == Some(node_name),
        hints: api.hints.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_stays_small() {
        // Every snapshot holds one per endpoint and family: 100,000 at 10,000 services.
        assert!(std::mem::size_of::<Endpoint>() <= 32);
    }
}
