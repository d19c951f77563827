//! Endpoint selection, shared by every mode: which endpoints serve cluster traffic and
//! which serve node-local traffic, with the fall-back to serving-terminating endpoints and
//! topology hints.

use crate::addr::HostPort;
use crate::endpoint::Endpoint;
use crate::service::ServicePort;
use std::collections::BTreeMap;

/// The node facts endpoint selection depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeTopology {
    /// The node's name (for node hints).
    pub node_name: String,
    /// The node's `topology.kubernetes.io/zone` label, if any.
    pub zone: Option<String>,
}

/// The endpoints a service port uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointSelection<'a> {
    /// Endpoints for traffic policy Cluster.
    pub cluster: Vec<&'a Endpoint>,
    /// Endpoints for traffic policy Local.
    pub local: Vec<&'a Endpoint>,
    /// Every endpoint that some traffic can reach (the SEP chains to write), sorted.
    pub all_reachable: Vec<&'a Endpoint>,
    /// Whether any usable endpoint exists anywhere in the cluster.
    pub has_any: bool,
}

/// Selects endpoints for one service port, as upstream's `CategorizeEndpoints` does.
pub fn select_endpoints<'a>(
    service: &ServicePort,
    endpoints: &'a [Endpoint],
    topology: &NodeTopology,
) -> EndpointSelection<'a> {
    let mut selection = EndpointSelection::default();
    let mut use_topology = false;
    if service.uses_cluster_endpoints() {
        let hint = topology_hint(endpoints, topology);
        use_topology = hint.is_some();
        selection.cluster = filter(endpoints, |ep| {
            ep.ready && hint.as_ref().is_none_or(|h| h.admits(ep))
        });
        if selection.cluster.is_empty() {
            selection.cluster = filter(endpoints, |ep| ep.serving && ep.terminating);
        }
        selection.has_any = !selection.cluster.is_empty();
    }
    if !service.uses_local_endpoints() {
        selection.all_reachable = selection.cluster.clone();
        return selection;
    }
    let usable = |ep: &Endpoint| ep.ready || (ep.serving && ep.terminating);
    selection.has_any |= endpoints.iter().any(usable);
    let local_ready = endpoints.iter().any(|ep| ep.is_local && ep.ready);
    let local_terminating = !local_ready
        && endpoints
            .iter()
            .any(|ep| ep.is_local && !ep.ready && ep.serving && ep.terminating);
    if local_ready {
        selection.local = filter(endpoints, |ep| ep.is_local && ep.ready);
    } else if local_terminating {
        selection.local = filter(endpoints, |ep| ep.is_local && ep.serving && ep.terminating);
    }
    if !service.uses_cluster_endpoints() {
        selection.all_reachable = selection.local.clone();
        return selection;
    }
    if !use_topology && !local_terminating {
        selection.all_reachable = selection.cluster.clone();
        return selection;
    }
    let mut merged: BTreeMap<HostPort, &Endpoint> = BTreeMap::new();
    for ep in selection.cluster.iter().chain(selection.local.iter()) {
        merged.insert(ep.addr(), ep);
    }
    selection.all_reachable = merged.into_values().collect();
    selection
}

fn filter(endpoints: &[Endpoint], keep: impl Fn(&Endpoint) -> bool) -> Vec<&Endpoint> {
    endpoints.iter().filter(|ep| keep(ep)).collect()
}

/// Which hint filters cluster endpoints, when every ready endpoint carries hints.
enum TopologyHint<'a> {
    SameNode(&'a str),
    SameZone(&'a str),
}

impl TopologyHint<'_> {
    fn admits(&self, ep: &Endpoint) -> bool {
        match self {
            TopologyHint::SameNode(node) => ep.node_hints().iter().any(|n| n == node),
            TopologyHint::SameZone(zone) => ep.zone_hints().iter().any(|z| z == zone),
        }
    }
}

fn topology_hint<'a>(
    endpoints: &[Endpoint],
    topology: &'a NodeTopology,
) -> Option<TopologyHint<'a>> {
    let ready = || endpoints.iter().filter(|ep| ep.ready);
    ready().next()?;
    let node = topology.node_name.as_str();
    if !node.is_empty()
        && ready().all(|ep| !ep.node_hints().is_empty())
        && ready().any(|ep| ep.node_hints().iter().any(|n| n == node))
    {
        return Some(TopologyHint::SameNode(node));
    }
    let zone = topology.zone.as_deref()?;
    if ready().all(|ep| !ep.zone_hints().is_empty())
        && ready().any(|ep| ep.zone_hints().iter().any(|z| z == zone))
    {
        return Some(TopologyHint::SameZone(zone));
    }
    None
}
