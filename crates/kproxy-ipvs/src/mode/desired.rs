//! The renderer: a snapshot and the node's addresses in, the state the ipvs mode wants out
//! (virtual servers, kube-ipvs0 addresses, set entries, firewall facts). Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use kproxy_model::{NamespacedName, Snapshot};

use crate::ipset::{Entry, KubeSet};
use crate::plan::DesiredService;
use crate::types::ServiceKey;

use super::node_addresses::{node_addresses, node_port_ips};
use super::service::render_port;
use super::sets::SetEntries;
use super::settings::IpvsSettings;

/// The health check a Service with `externalTrafficPolicy: Local` needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheck {
    /// The health check node port.
    pub port: u16,
    /// Ready endpoints of the Service on this node.
    pub local_endpoints: usize,
}

/// What the ipvs mode wants the node to hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DesiredState {
    /// Virtual servers with their real servers, one per key (the last port that asks wins).
    pub services: BTreeMap<ServiceKey, DesiredService>,
    /// Addresses kube-ipvs0 must hold.
    pub bound: BTreeSet<IpAddr>,
    /// Wanted ipset entries.
    pub sets: SetEntries,
    /// Load balancers with source ranges that do not admit the node: the node may not
    /// reach them (a `KUBE-IPVS-OUT-FILTER` DROP rule each).
    pub node_blocked_lbs: BTreeSet<ServiceKey>,
    /// Services with internal policy Local, endpoints, and none on this node.
    pub no_local_internal: BTreeSet<NamespacedName>,
    /// Services with external policy Local, endpoints, and none on this node.
    pub no_local_external: BTreeSet<NamespacedName>,
    /// Health checks per Service.
    pub health_checks: BTreeMap<NamespacedName, HealthCheck>,
}

/// Node facts one render uses.
pub(crate) struct NodeView<'a> {
    pub(crate) settings: &'a IpvsSettings,
    /// Node addresses of this family (kube-ipvs0 excluded).
    pub(crate) addresses: BTreeSet<IpAddr>,
    /// Addresses NodePorts listen on.
    pub(crate) node_port_ips: BTreeSet<IpAddr>,
}

/// Renders the desired state of every service port in `snapshot`. `host_addresses` are the
/// addresses on the host's interfaces other than kube-ipvs0, any family.
pub fn render(
    snapshot: &Snapshot,
    settings: &IpvsSettings,
    host_addresses: &[IpAddr],
) -> DesiredState {
    let addresses = node_addresses(settings.family, host_addresses);
    let node = NodeView {
        settings,
        node_port_ips: node_port_ips(settings, &addresses),
        addresses,
    };
    let mut state = DesiredState::default();
    for (_, entry) in snapshot.entries() {
        render_port(entry, &node, &mut state);
    }
    for addr in &state.bound {
        state.sets.add(KubeSet::IpvsIps, Entry::Ip(*addr));
    }
    state
}
