//! The generated cluster (pure: a size in, manifest text out): the lab's node, N-1 filler
//! Services each with one dummy endpoint on another node, and the measured Service, named
//! so that it sorts after every filler and so is the last ClusterIP rule of iptables'
//! `KUBE-SERVICES` (the worst case of its linear walk). The measured Service's endpoints
//! are the lab's first pods, serving on [`BENCH_PORT`].

use kproxy_lab::plan::{self, NODE_NAME};
use kproxy_model::IpFamily;
use std::fmt::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// The port the benchmark's echo servers listen on in the pods (the measured Service's
/// target port).
pub const BENCH_PORT: u16 = 9000;
/// The port every Service exposes.
pub const SERVICE_PORT: u16 = 80;
/// The measured Service's namespace; sorts after [`FILLER_NAMESPACE`].
pub const MEASURED_NAMESPACE: &str = "zz-bench";
/// The measured Service's name.
pub const MEASURED_NAME: &str = "measured";
/// The name of every Service's one port.
pub const PORT_NAME: &str = "http";
/// The measured Service's ClusterIP: the top of 10.96.0.0/12, above every filler.
pub const MEASURED_CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 111, 255, 200);
/// The namespace of the filler Services.
const FILLER_NAMESPACE: &str = "bench";
/// The first filler ClusterIP.
const FIRST_FILLER_IP: u32 = u32::from_be_bytes([10, 96, 0, 16]);
/// The first dummy endpoint of a filler (outside the lab's pod network; never reached).
const FIRST_DUMMY_ENDPOINT: u32 = u32::from_be_bytes([10, 192, 0, 1]);
/// The node the dummy endpoints claim to run on (not the lab's node).
const OTHER_NODE: &str = "node-1";
/// Most Services the address ranges hold (fillers stay below [`MEASURED_CLUSTER_IP`]).
pub const MAX_SERVICES: u32 = 1_000_000;

/// The cluster to program: how many Services in all (the measured one included) and how
/// many lab pods back the measured one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchCluster {
    /// Services in all, at least 1 and at most [`MAX_SERVICES`].
    pub services: u32,
    /// Lab pods (`pod-0`..) behind the measured Service.
    pub backends: u8,
}

impl BenchCluster {
    /// The measured Service's address, as clients connect to it.
    pub fn measured_target() -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(MEASURED_CLUSTER_IP, SERVICE_PORT))
    }

    /// The comment iptables rules of the measured Service's ClusterIP carry.
    pub fn measured_comment() -> String {
        format!("{MEASURED_NAMESPACE}/{MEASURED_NAME}:{PORT_NAME} cluster IP")
    }

    /// The whole cluster as YAML documents, for `--cluster-file`.
    pub fn manifest(&self) -> String {
        let mut text = node_yaml();
        for index in 0..self.services.saturating_sub(1) {
            let ip = Ipv4Addr::from(FIRST_FILLER_IP + index);
            let endpoint = Ipv4Addr::from(FIRST_DUMMY_ENDPOINT + index);
            let name = format!("svc-{index:06}");
            push_service(&mut text, FILLER_NAMESPACE, &name, ip, SERVICE_PORT);
            push_slice(&mut text, FILLER_NAMESPACE, &name, &[endpoint], OTHER_NODE);
        }
        let pods: Vec<Ipv4Addr> = (0..self.backends).filter_map(pod_ipv4).collect();
        push_service(
            &mut text,
            MEASURED_NAMESPACE,
            MEASURED_NAME,
            MEASURED_CLUSTER_IP,
            BENCH_PORT,
        );
        push_slice(
            &mut text,
            MEASURED_NAMESPACE,
            MEASURED_NAME,
            &pods,
            NODE_NAME,
        );
        text
    }
}

/// Lab pod `index`'s IPv4 address.
pub fn pod_ipv4(index: u8) -> Option<Ipv4Addr> {
    match plan::pod_ip(IpFamily::V4, index) {
        std::net::IpAddr::V4(ip) => Some(ip),
        std::net::IpAddr::V6(_) => None,
    }
}

fn node_yaml() -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {NODE_NAME}}}\n\
         spec: {{podCIDRs: [10.244.0.0/24]}}\n\
         status: {{addresses: [{{type: InternalIP, address: {}}}]}}\n",
        plan::node_ip(IpFamily::V4),
    )
}

fn push_service(text: &mut String, namespace: &str, name: &str, ip: Ipv4Addr, target: u16) {
    // Writing to a String cannot fail.
    let _ = write!(
        text,
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         spec: {{clusterIP: {ip}, ports: [{{name: {PORT_NAME}, port: {SERVICE_PORT}, protocol: TCP, targetPort: {target}}}]}}\n"
    );
}

fn push_slice(text: &mut String, namespace: &str, name: &str, ips: &[Ipv4Addr], node: &str) {
    let endpoints: Vec<String> = ips
        .iter()
        .map(|ip| format!("{{addresses: [{ip}], conditions: {{ready: true}}, nodeName: {node}}}"))
        .collect();
    let port = if namespace == MEASURED_NAMESPACE {
        BENCH_PORT
    } else {
        SERVICE_PORT
    };
    // Writing to a String cannot fail.
    let _ = write!(
        text,
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}-v4, namespace: {namespace}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nports: [{{name: {PORT_NAME}, port: {port}, protocol: TCP}}]\n\
         endpoints: [{}]\n",
        endpoints.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services_in(text: &str) -> Vec<&str> {
        text.lines()
            .filter_map(|l| l.strip_prefix("spec: {clusterIP: "))
            .collect()
    }

    #[test]
    fn n_services_with_the_measured_one_last_and_backed_by_lab_pods() {
        let text = BenchCluster {
            services: 3,
            backends: 2,
        }
        .manifest();
        let services = services_in(&text);
        assert_eq!(services.len(), 3);
        assert!(services[0].starts_with("10.96.0.16, "), "{text}");
        assert!(services[2].starts_with("10.111.255.200, "), "{text}");
        assert!(text.ends_with(
            "endpoints: [{addresses: [10.244.0.2], conditions: {ready: true}, nodeName: node-0}, \
             {addresses: [10.244.0.3], conditions: {ready: true}, nodeName: node-0}]\n"
        ));
        assert!(text.contains("ports: [{name: http, port: 9000, protocol: TCP}]"));
    }

    #[test]
    fn the_measured_service_sorts_after_every_filler() {
        assert!(MEASURED_NAMESPACE > FILLER_NAMESPACE);
        let last_filler = FIRST_FILLER_IP + MAX_SERVICES;
        assert!(last_filler < u32::from(MEASURED_CLUSTER_IP));
    }

    #[test]
    fn one_service_is_only_the_measured_one() {
        let text = BenchCluster {
            services: 1,
            backends: 1,
        }
        .manifest();
        assert_eq!(services_in(&text).len(), 1);
        assert_eq!(
            BenchCluster::measured_comment(),
            "zz-bench/measured:http cluster IP"
        );
    }
}
