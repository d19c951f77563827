//! Stale UDP conntrack entries: what to delete after a sync (pure, from the snapshot before
//! and after), and what deletes them (ctnetlink through `kproxy-conntrack`, behind a trait).
//!
//! As kube-proxy does: a deleted UDP service's ClusterIP is cleared; a UDP service port that
//! goes from no usable endpoint to some has entries to its ClusterIP, external IPs,
//! load-balancer IPs and node port cleared (they were created while traffic was rejected);
//! an endpoint that stops serving has the flows NATed to it from each service IP and the
//! node port cleared.

use kproxy_conntrack::{Conntrack, Deleted, Error, Family, Filter};
use kproxy_model::{
    Endpoint, IpFamily, NamespacedName, Protocol, ServiceEntry, ServicePortName, Snapshot,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

/// One kind of UDP flows to delete.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum StaleFlows {
    /// Every UDP flow to this service IP (original destination).
    ToServiceIp(IpAddr),
    /// Every UDP flow to this node port (original destination port).
    ToNodePort(u16),
    /// Flows to a service IP NATed to an endpoint (the reply comes from the endpoint).
    ServiceIpToEndpoint(IpAddr, IpAddr),
    /// Flows to a node port NATed to an endpoint.
    NodePortToEndpoint(u16, IpAddr),
}

impl StaleFlows {
    /// The conntrack filter selecting these flows.
    pub fn filter(&self) -> Filter {
        match *self {
            StaleFlows::ToServiceIp(ip) => Filter {
                orig_dst: Some(ip),
                ..Filter::default()
            },
            StaleFlows::ToNodePort(port) => Filter {
                orig_dst_port: Some(port),
                ..Filter::default()
            },
            StaleFlows::ServiceIpToEndpoint(ip, endpoint) => Filter {
                orig_dst: Some(ip),
                reply_src: Some(endpoint),
                ..Filter::default()
            },
            StaleFlows::NodePortToEndpoint(port, endpoint) => Filter {
                orig_dst_port: Some(port),
                reply_src: Some(endpoint),
                ..Filter::default()
            },
        }
    }
}

/// The UDP service ports of the services about to be refreshed, as they were before.
#[derive(Debug, Clone)]
pub struct PortsBefore<'a> {
    services: &'a BTreeSet<NamespacedName>,
    ports: BTreeMap<ServicePortName, Arc<ServiceEntry>>,
}

/// Copies the entries of the given services out of a snapshot (cheap: entries are shared).
pub fn udp_ports_of<'a>(
    snapshot: &Snapshot,
    services: &'a BTreeSet<NamespacedName>,
) -> PortsBefore<'a> {
    let ports = snapshot
        .entries()
        .filter(|(name, _)| name.protocol == Protocol::Udp && services.contains(&name.service))
        .map(|(name, entry)| (name.clone(), Arc::clone(entry)))
        .collect();
    PortsBefore { services, ports }
}

fn serving(endpoint: &Endpoint) -> bool {
    endpoint.ready || endpoint.serving
}

fn service_ips(entry: &ServiceEntry) -> Vec<IpAddr> {
    let service = &entry.service;
    std::iter::once(service.cluster_ip)
        .chain(service.external_ips.iter().copied())
        .chain(service.load_balancer_ips.iter().copied())
        .collect()
}

/// The flows to delete after `after` replaced `before` for the refreshed services.
pub fn stale_flows(before: &PortsBefore, after: &Snapshot) -> BTreeSet<StaleFlows> {
    let mut flows = BTreeSet::new();
    for (name, old) in &before.ports {
        let Some(new) = after.entry(name) else {
            flows.insert(StaleFlows::ToServiceIp(old.service.cluster_ip));
            continue;
        };
        let new_serving: BTreeSet<(IpAddr, u16)> = new
            .endpoints
            .iter()
            .filter(|e| serving(e))
            .map(|e| (e.ip, e.port))
            .collect();
        for gone in old
            .endpoints
            .iter()
            .filter(|e| serving(e) && !new_serving.contains(&(e.ip, e.port)))
        {
            for ip in service_ips(new) {
                flows.insert(StaleFlows::ServiceIpToEndpoint(ip, gone.ip));
            }
            if new.service.node_port != 0 {
                flows.insert(StaleFlows::NodePortToEndpoint(
                    new.service.node_port,
                    gone.ip,
                ));
            }
        }
    }
    let refreshed = after.entries().filter(|(name, _)| {
        name.protocol == Protocol::Udp && before.services.contains(&name.service)
    });
    for (name, new) in refreshed {
        let had_none = before
            .ports
            .get(name)
            .is_none_or(|old| !old.endpoints.iter().any(|e| e.ready));
        if had_none && new.endpoints.iter().any(|e| e.ready) {
            flows.extend(service_ips(new).into_iter().map(StaleFlows::ToServiceIp));
            if new.service.node_port != 0 {
                flows.insert(StaleFlows::ToNodePort(new.service.node_port));
            }
        }
    }
    flows
}

/// Deletes conntrack entries.
pub trait ConntrackTool: Send {
    /// Deletes the UDP flows of `family` matching any of `flows` (one pass over the
    /// table); finding none is success.
    fn delete(&mut self, family: IpFamily, flows: &BTreeSet<StaleFlows>) -> Result<Deleted, Error>;
}

/// Deletes over ctnetlink, in the network namespace the agent was started in.
#[derive(Debug)]
pub struct NetlinkConntrack {
    socket: Conntrack,
}

impl NetlinkConntrack {
    /// Opens the ctnetlink socket.
    pub fn open() -> Result<Self, Error> {
        Conntrack::open().map(|socket| NetlinkConntrack { socket })
    }
}

impl ConntrackTool for NetlinkConntrack {
    fn delete(&mut self, family: IpFamily, flows: &BTreeSet<StaleFlows>) -> Result<Deleted, Error> {
        let filters: Vec<Filter> = flows.iter().map(StaleFlows::filter).collect();
        let family = match family {
            IpFamily::V4 => Family::V4,
            IpFamily::V6 => Family::V6,
        };
        self.socket.delete_udp(family, &filters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kproxy_model::{ClusterStore, StoreEvent};

    fn store(manifest: &str) -> ClusterStore {
        let manifest = kproxy_model::parse_manifest(manifest).expect("manifest");
        ClusterStore::from_objects(manifest.objects)
    }

    const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: kube-system}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  externalIPs: [192.0.2.10]
  ports: [{name: dns, port: 53, protocol: UDP, nodePort: 30053}]
"#;

    fn slice(ips: &[&str]) -> String {
        let endpoints: Vec<String> = ips
            .iter()
            .map(|ip| format!("  - addresses: [\"{ip}\"]\n    conditions: {{ready: true}}\n"))
            .collect();
        format!(
            r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: dns-1
  namespace: kube-system
  labels: {{kubernetes.io/service-name: dns}}
addressType: IPv4
ports: [{{name: dns, port: 5353, protocol: UDP}}]
endpoints:
{}"#,
            endpoints.concat()
        )
    }

    fn refresh(
        snapshot: &mut Snapshot,
        store: &mut ClusterStore,
        text: &str,
    ) -> BTreeSet<StaleFlows> {
        for object in kproxy_model::parse_manifest(text)
            .expect("manifest")
            .objects
        {
            store.apply(StoreEvent::Apply(object));
        }
        let changes = store.take_changes();
        let before = udp_ports_of(snapshot, &changes.services);
        snapshot.refresh(store, &changes.services, &mut Vec::new());
        stale_flows(&before, snapshot)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn a_removed_endpoint_has_its_nat_flows_deleted() {
        let mut store = store(&format!(
            "{SERVICE}---{}",
            slice(&["10.244.1.5", "10.244.2.6"])
        ));
        let mut snapshot = Snapshot::build(&store, IpFamily::V4, "node-0", &mut Vec::new());
        store.take_changes();
        let flows = refresh(&mut snapshot, &mut store, &slice(&["10.244.2.6"]));
        let gone = ip("10.244.1.5");
        assert_eq!(
            flows.into_iter().collect::<Vec<_>>(),
            [
                StaleFlows::ServiceIpToEndpoint(ip("10.96.0.10"), gone),
                StaleFlows::ServiceIpToEndpoint(ip("192.0.2.10"), gone),
                StaleFlows::NodePortToEndpoint(30053, gone),
            ]
        );
    }

    #[test]
    fn a_service_getting_its_first_endpoint_has_rejected_flows_cleared() {
        let mut store = store(SERVICE);
        let mut snapshot = Snapshot::build(&store, IpFamily::V4, "node-0", &mut Vec::new());
        store.take_changes();
        let flows = refresh(&mut snapshot, &mut store, &slice(&["10.244.1.5"]));
        assert_eq!(
            flows.into_iter().collect::<Vec<_>>(),
            [
                StaleFlows::ToServiceIp(ip("10.96.0.10")),
                StaleFlows::ToServiceIp(ip("192.0.2.10")),
                StaleFlows::ToNodePort(30053),
            ]
        );
    }

    #[test]
    fn a_deleted_service_has_its_cluster_ip_cleared() {
        let mut store = store(&format!("{SERVICE}---{}", slice(&["10.244.1.5"])));
        let mut snapshot = Snapshot::build(&store, IpFamily::V4, "node-0", &mut Vec::new());
        store.take_changes();
        store.apply(StoreEvent::Delete(kproxy_model::ObjectRef {
            kind: kproxy_model::ObjectKind::Service,
            namespace: "kube-system".into(),
            name: "dns".into(),
        }));
        let changes = store.take_changes();
        assert!(changes
            .services
            .contains(&NamespacedName::new("kube-system", "dns")));
        let before = udp_ports_of(&snapshot, &changes.services);
        snapshot.refresh(&store, &changes.services, &mut Vec::new());
        assert_eq!(
            stale_flows(&before, &snapshot)
                .into_iter()
                .collect::<Vec<_>>(),
            [StaleFlows::ToServiceIp(ip("10.96.0.10"))]
        );
    }

    #[test]
    fn each_kind_of_flows_is_a_filter_on_the_original_destination_or_the_nat_target() {
        let (service, endpoint) = (ip("fd00::10"), ip("fd00:1::5"));
        let filters = [
            StaleFlows::ToServiceIp(service),
            StaleFlows::ToNodePort(30053),
            StaleFlows::ServiceIpToEndpoint(service, endpoint),
            StaleFlows::NodePortToEndpoint(30053, endpoint),
        ]
        .map(|flows| flows.filter());
        let expected = [
            (Some(service), None, None),
            (None, Some(30053), None),
            (Some(service), None, Some(endpoint)),
            (None, Some(30053), Some(endpoint)),
        ];
        for (filter, (orig_dst, orig_dst_port, reply_src)) in filters.iter().zip(expected) {
            assert_eq!(
                *filter,
                Filter {
                    orig_dst,
                    orig_dst_port,
                    reply_src
                }
            );
        }
    }
}
