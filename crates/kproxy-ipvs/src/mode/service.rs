//! One service port's share of the desired state: its virtual servers, addresses, set
//! entries and metrics.

use std::net::IpAddr;

use kproxy_model::{select_endpoints, Endpoint, IpFamily, Protocol as ModelProtocol, ServiceEntry};

use crate::ipset::{Cidr, Entry, KubeSet};
use crate::plan::DesiredService;
use crate::types::{Persistence, Protocol, RealServer, ServiceKey, VirtualServer};

use super::desired::{DesiredState, HealthCheck, NodeView};

/// The IPVS protocol of a model protocol.
pub fn ipvs_protocol(protocol: ModelProtocol) -> Protocol {
    match protocol {
        ModelProtocol::Tcp => Protocol::Tcp,
        ModelProtocol::Udp => Protocol::Udp,
        ModelProtocol::Sctp => Protocol::Sctp,
    }
}

/// Facts shared by every virtual server of one port.
struct PortView<'a> {
    entry: &'a ServiceEntry,
    node: &'a NodeView<'a>,
    protocol: Protocol,
}

impl PortView<'_> {
    fn family_ok(&self, ip: &IpAddr) -> bool {
        IpFamily::of(ip) == self.node.settings.family
    }

    fn virtual_server(&self, addr: IpAddr, port: u16) -> VirtualServer {
        let settings = self.node.settings;
        let prefix_len = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        VirtualServer {
            key: ServiceKey {
                addr,
                port,
                protocol: self.protocol,
            },
            scheduler: settings.scheduler.clone(),
            sched_flags: settings.sched_flags(),
            persistence: self
                .entry
                .service
                .affinity_timeout
                .map(|timeout_secs| Persistence {
                    timeout_secs,
                    prefix_len,
                }),
        }
    }

    fn real_servers(&self, endpoints: &[&Endpoint]) -> Vec<RealServer> {
        endpoints
            .iter()
            .filter(|ep| self.family_ok(&ep.ip))
            .map(|ep| RealServer::new(ep.ip, ep.port))
            .collect()
    }

    fn ip_port(&self, addr: IpAddr, port: u16) -> Entry {
        Entry::IpPort(addr, self.protocol, port)
    }
}

fn add_service(state: &mut DesiredState, service: VirtualServer, real_servers: &[RealServer]) {
    state.services.insert(
        service.key,
        DesiredService {
            service,
            real_servers: real_servers.to_vec(),
        },
    );
}

/// Adds one service port's virtual servers, addresses, set entries and metrics to `state`.
pub(crate) fn render_port(entry: &ServiceEntry, node: &NodeView<'_>, state: &mut DesiredState) {
    let sp = &entry.service;
    let view = PortView {
        entry,
        node,
        protocol: ipvs_protocol(sp.name.protocol),
    };
    if !view.family_ok(&sp.cluster_ip) {
        return;
    }
    for ep in entry.endpoints.iter().filter(|ep| ep.is_local) {
        if view.family_ok(&ep.ip) {
            let loop_back = Entry::IpPortIp(ep.ip, view.protocol, ep.port, ep.ip);
            state.sets.add(KubeSet::LoopBack, loop_back);
        }
    }
    let selection = select_endpoints(sp, &entry.endpoints, &node.settings.topology);
    let pick = |local_policy: bool| {
        if local_policy && !selection.local.is_empty() {
            view.real_servers(&selection.local)
        } else {
            view.real_servers(&selection.cluster)
        }
    };
    let internal = pick(sp.internal_policy_local);
    let external = pick(sp.external_policy_local);
    let service_name = &sp.name.service;
    if selection.has_any && selection.local.is_empty() && sp.internal_policy_local {
        state.no_local_internal.insert(service_name.clone());
    }

    state
        .sets
        .add(KubeSet::ClusterIp, view.ip_port(sp.cluster_ip, sp.port));
    add_service(
        state,
        view.virtual_server(sp.cluster_ip, sp.port),
        &internal,
    );
    state.bound.insert(sp.cluster_ip);

    let mut external_used = false;
    for ip in sp.external_ips.iter().filter(|ip| view.family_ok(ip)) {
        let set = if sp.external_policy_local {
            KubeSet::ExternalIpLocal
        } else {
            KubeSet::ExternalIp
        };
        state.sets.add(set, view.ip_port(*ip, sp.port));
        add_service(state, view.virtual_server(*ip, sp.port), &external);
        external_used = true;
        if !node.addresses.contains(ip) {
            state.bound.insert(*ip);
        }
    }
    for ip in sp.load_balancer_ips.iter().filter(|ip| view.family_ok(ip)) {
        load_balancer_entries(&view, *ip, state);
        add_service(state, view.virtual_server(*ip, sp.port), &external);
        external_used = true;
        if !node.addresses.contains(ip) {
            state.bound.insert(*ip);
        }
    }
    if sp.node_port != 0 {
        if node.node_port_ips.is_empty() {
            note_no_local_external(&view, &selection, external_used, state);
            return;
        }
        node_port_entries(&view, state);
        for ip in &node.node_port_ips {
            add_service(state, view.virtual_server(*ip, sp.node_port), &external);
        }
        external_used = true;
    }
    note_no_local_external(&view, &selection, external_used, state);
    if sp.health_check_node_port != 0 {
        state.sets.add(
            KubeSet::HealthCheckNodePort,
            Entry::Port(sp.health_check_node_port),
        );
        let local_endpoints = entry
            .endpoints
            .iter()
            .filter(|ep| ep.is_local && ep.ready)
            .count();
        state.health_checks.insert(
            service_name.clone(),
            HealthCheck {
                port: sp.health_check_node_port,
                local_endpoints,
            },
        );
    }
}

fn note_no_local_external(
    view: &PortView<'_>,
    selection: &kproxy_model::EndpointSelection<'_>,
    external_used: bool,
    state: &mut DesiredState,
) {
    let sp = &view.entry.service;
    if external_used && sp.external_policy_local && selection.has_any && selection.local.is_empty()
    {
        state.no_local_external.insert(sp.name.service.clone());
    }
}

fn load_balancer_entries(view: &PortView<'_>, ip: IpAddr, state: &mut DesiredState) {
    let sp = &view.entry.service;
    let entry = view.ip_port(ip, sp.port);
    state.sets.add(KubeSet::LoadBalancer, entry);
    if sp.external_policy_local {
        state.sets.add(KubeSet::LoadBalancerLocal, entry);
    }
    if sp.load_balancer_source_ranges.is_empty() {
        return;
    }
    state.sets.add(KubeSet::LoadBalancerFw, entry);
    for range in &sp.load_balancer_source_ranges {
        let cidr = Cidr {
            addr: range.network(),
            prefix_len: range.prefix_len(),
        };
        let with_net = Entry::IpPortNet(ip, view.protocol, sp.port, cidr);
        state.sets.add(KubeSet::LoadBalancerSourceCidr, with_net);
    }
    let node_ip = view.node.settings.node_ip;
    let admits_node = node_ip.is_some_and(|n| {
        sp.load_balancer_source_ranges
            .iter()
            .any(|r| r.contains(&n))
    });
    if admits_node {
        let from_self = Entry::IpPortIp(ip, view.protocol, sp.port, ip);
        state.sets.add(KubeSet::LoadBalancerSourceIp, from_self);
    } else {
        state.node_blocked_lbs.insert(ServiceKey {
            addr: ip,
            port: sp.port,
            protocol: view.protocol,
        });
    }
}

fn node_port_entries(view: &PortView<'_>, state: &mut DesiredState) {
    let sp = &view.entry.service;
    let local = sp.external_policy_local;
    let (all, only_local) = match view.protocol {
        Protocol::Tcp => (KubeSet::NodePortTcp, KubeSet::NodePortLocalTcp),
        Protocol::Udp => (KubeSet::NodePortUdp, KubeSet::NodePortLocalUdp),
        Protocol::Sctp => {
            for ip in &view.node.node_port_ips {
                let entry = view.ip_port(*ip, sp.node_port);
                state.sets.add(KubeSet::NodePortSctp, entry);
                if local {
                    state.sets.add(KubeSet::NodePortLocalSctp, entry);
                }
            }
            return;
        }
    };
    state.sets.add(all, Entry::Port(sp.node_port));
    if local {
        state.sets.add(only_local, Entry::Port(sp.node_port));
    }
}
