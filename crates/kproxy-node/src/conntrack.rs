//! Stale UDP conntrack entries: what to delete after a sync (pure, from the snapshot before
//! and after), and the tool that deletes them (the `conntrack` CLI, behind a trait).
//!
//! As kube-proxy does: a deleted UDP service's ClusterIP is cleared; a UDP service port that
//! goes from no usable endpoint to some has entries to its ClusterIP, external IPs,
//! load-balancer IPs and node port cleared (they were created while traffic was rejected);
//! an endpoint that stops serving has the flows NATed to it from each service IP and the
//! node port cleared.

use crate::kernel::exec::{find_tool, run_tool, KernelError};
use kproxy_model::{
    Endpoint, IpFamily, NamespacedName, Protocol, ServiceEntry, ServicePortName, Snapshot,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One `conntrack -D -p udp …` filter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum StaleFlows {
    /// Every UDP flow to this service IP (`--orig-dst IP`).
    ToServiceIp(IpAddr),
    /// Every UDP flow to this node port (`--dport PORT`).
    ToNodePort(u16),
    /// Flows to a service IP NATed to an endpoint (`--orig-dst IP --dst-nat EP`).
    ServiceIpToEndpoint(IpAddr, IpAddr),
    /// Flows to a node port NATed to an endpoint (`--dport PORT --dst-nat EP`).
    NodePortToEndpoint(u16, IpAddr),
}

impl StaleFlows {
    /// The `conntrack` arguments deleting these flows.
    pub fn conntrack_args(&self, family: IpFamily) -> Vec<String> {
        let mut args: Vec<String> = ["-D", "-p", "udp"].map(String::from).to_vec();
        match self {
            StaleFlows::ToServiceIp(ip) => args.extend(["--orig-dst".into(), ip.to_string()]),
            StaleFlows::ToNodePort(port) => args.extend(["--dport".into(), port.to_string()]),
            StaleFlows::ServiceIpToEndpoint(ip, ep) => args.extend([
                "--orig-dst".into(),
                ip.to_string(),
                "--dst-nat".into(),
                ep.to_string(),
            ]),
            StaleFlows::NodePortToEndpoint(port, ep) => args.extend([
                "--dport".into(),
                port.to_string(),
                "--dst-nat".into(),
                ep.to_string(),
            ]),
        }
        if family == IpFamily::V6 {
            args.extend(["-f".to_string(), "ipv6".to_string()]);
        }
        args
    }
}

/// The UDP service ports of the services about to be refreshed, as they were before.
#[derive(Debug, Clone, Default)]
pub struct PortsBefore {
    services: BTreeSet<NamespacedName>,
    ports: BTreeMap<ServicePortName, Arc<ServiceEntry>>,
}

/// Copies the entries of the given services out of a snapshot (cheap: entries are shared).
pub fn udp_ports_of(snapshot: &Snapshot, services: &BTreeSet<NamespacedName>) -> PortsBefore {
    let ports = snapshot
        .entries()
        .filter(|(name, _)| name.protocol == Protocol::Udp && services.contains(&name.service))
        .map(|(name, entry)| (name.clone(), Arc::clone(entry)))
        .collect();
    PortsBefore {
        services: services.clone(),
        ports,
    }
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
        let new_serving: BTreeSet<&str> = new
            .endpoints
            .iter()
            .filter(|e| serving(e))
            .map(|e| e.addr.as_str())
            .collect();
        for gone in old
            .endpoints
            .iter()
            .filter(|e| serving(e) && !new_serving.contains(e.addr.as_str()))
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
    /// Deletes the flows matching one filter; finding none is success.
    fn delete(&mut self, family: IpFamily, flows: &StaleFlows) -> Result<(), KernelError>;
}

/// The `conntrack` command-line tool.
#[derive(Debug, Clone)]
pub struct ConntrackCli {
    program: PathBuf,
}

impl ConntrackCli {
    /// Finds `conntrack`; `None` when it is not installed.
    pub fn find() -> Option<Self> {
        find_tool("conntrack").map(|program| ConntrackCli { program })
    }
}

impl ConntrackTool for ConntrackCli {
    fn delete(&mut self, family: IpFamily, flows: &StaleFlows) -> Result<(), KernelError> {
        let args = flows.conntrack_args(family);
        let output = run_tool(&self.program, &args, None, Duration::from_secs(30))?;
        if output.success() || output.stderr.contains("0 flow entries") {
            Ok(())
        } else {
            Err(KernelError::failed(&self.program, &args, &output))
        }
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
    fn cli_arguments_match_kube_proxys() {
        let flows = StaleFlows::ServiceIpToEndpoint(ip("fd00::10"), ip("fd00:1::5"));
        assert_eq!(
            flows.conntrack_args(IpFamily::V6).join(" "),
            "-D -p udp --orig-dst fd00::10 --dst-nat fd00:1::5 -f ipv6"
        );
        assert_eq!(
            StaleFlows::ToNodePort(30053)
                .conntrack_args(IpFamily::V4)
                .join(" "),
            "-D -p udp --dport 30053"
        );
    }
}
