//! Health-check node port servers for `externalTrafficPolicy: Local` load balancers: one
//! listener per service on its `healthCheckNodePort`, answering GET on any path with 200
//! and the local endpoint count when the node has ready local endpoints and the proxy is
//! healthy, 503 otherwise, as kube-proxy does.

use crate::healthz::ProxierHealth;
use crate::http::{listener_from_std, spawn_server, Handler, Reply};
use hyper::Method;
use kproxy_model::{NamespacedName, Snapshot};
use socket2::{Domain, Socket, Type};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;
use tokio::task::JoinHandle;

/// A service that needs a health-check server: its port and local endpoint count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheckTarget {
    /// The `healthCheckNodePort`.
    pub port: u16,
    /// Ready local endpoints (distinct addresses; the largest count over the families).
    pub local_endpoints: usize,
}

/// The services with a health check node port in these snapshots.
pub fn health_check_targets(snapshots: &[Snapshot]) -> BTreeMap<NamespacedName, HealthCheckTarget> {
    let mut targets: BTreeMap<NamespacedName, HealthCheckTarget> = BTreeMap::new();
    for snapshot in snapshots {
        let mut local: BTreeMap<&NamespacedName, BTreeSet<IpAddr>> = BTreeMap::new();
        let mut ports: BTreeMap<&NamespacedName, u16> = BTreeMap::new();
        for (name, entry) in snapshot.entries() {
            if entry.service.health_check_node_port == 0 {
                continue;
            }
            ports.insert(&name.service, entry.service.health_check_node_port);
            let ips = local.entry(&name.service).or_default();
            ips.extend(
                entry
                    .endpoints
                    .iter()
                    .filter(|e| e.is_local && e.ready)
                    .map(|e| e.ip),
            );
        }
        for (service, port) in ports {
            let count = local.get(service).map_or(0, BTreeSet::len);
            let target = targets.entry(service.clone()).or_insert(HealthCheckTarget {
                port,
                local_endpoints: 0,
            });
            target.local_endpoints = target.local_endpoints.max(count);
        }
    }
    targets
}

/// The body kube-proxy writes (tab-indented JSON).
pub fn service_health_body(service: &NamespacedName, count: usize, healthy: bool) -> String {
    format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": {:?},\n\t\t\"name\": {:?}\n\t}},\n\t\"localEndpoints\": {count},\n\t\"serviceProxyHealthy\": {healthy}\n}}",
        service.namespace, service.name
    )
}

struct Running {
    port: u16,
    tasks: Vec<JoinHandle<()>>,
}

/// The running health-check servers.
pub struct ServiceHealthServers {
    addresses: Option<Vec<IpAddr>>,
    counts: Arc<RwLock<BTreeMap<NamespacedName, usize>>>,
    health: Arc<ProxierHealth>,
    running: BTreeMap<NamespacedName, Running>,
}

impl ServiceHealthServers {
    /// Servers listening on these node addresses (`None`: every address).
    pub fn new(addresses: Option<Vec<IpAddr>>, health: Arc<ProxierHealth>) -> Self {
        ServiceHealthServers {
            addresses,
            counts: Arc::default(),
            health,
            running: BTreeMap::new(),
        }
    }

    /// Starts and stops servers to match `targets`, and updates the counts they report.
    /// Must run inside the tokio runtime. Returns warnings for ports that cannot be bound.
    pub fn sync(&mut self, targets: &BTreeMap<NamespacedName, HealthCheckTarget>) -> Vec<String> {
        if let Ok(mut counts) = self.counts.write() {
            *counts = targets
                .iter()
                .map(|(service, t)| (service.clone(), t.local_endpoints))
                .collect();
        }
        let stale: Vec<NamespacedName> = self
            .running
            .iter()
            .filter(|(service, r)| targets.get(*service).is_none_or(|t| t.port != r.port))
            .map(|(service, _)| service.clone())
            .collect();
        for service in stale {
            if let Some(running) = self.running.remove(&service) {
                running.tasks.iter().for_each(JoinHandle::abort);
            }
        }
        let mut warnings = Vec::new();
        for (service, target) in targets {
            if self.running.contains_key(service) {
                continue;
            }
            match self.start(service, target.port) {
                Ok(tasks) => {
                    self.running.insert(
                        service.clone(),
                        Running {
                            port: target.port,
                            tasks,
                        },
                    );
                }
                Err(e) => warnings.push(format!(
                    "health check node port {} for {service}: {e}",
                    target.port
                )),
            }
        }
        warnings
    }

    /// The ports being served.
    pub fn ports(&self) -> BTreeMap<NamespacedName, u16> {
        self.running
            .iter()
            .map(|(service, r)| (service.clone(), r.port))
            .collect()
    }

    fn start(&self, service: &NamespacedName, port: u16) -> std::io::Result<Vec<JoinHandle<()>>> {
        let listeners = match &self.addresses {
            None => vec![bind_every_address(port)?],
            Some(ips) => ips
                .iter()
                .map(|ip| std::net::TcpListener::bind(SocketAddr::new(*ip, port)))
                .collect::<Result<_, _>>()?,
        };
        let handler = self.handler(service.clone());
        listeners
            .into_iter()
            .map(|l| Ok(spawn_server(listener_from_std(l)?, Arc::clone(&handler))))
            .collect()
    }

    fn handler(&self, service: NamespacedName) -> Handler {
        let counts = Arc::clone(&self.counts);
        let health = Arc::clone(&self.health);
        Arc::new(move |method: &Method, _path: &str| {
            if method != Method::GET {
                return Reply::method_not_allowed();
            }
            let Some(count) = counts.read().ok().and_then(|c| c.get(&service).copied()) else {
                return Reply::new(503, "text/plain; charset=utf-8", "service is gone\n");
            };
            let healthy = health.status(SystemTime::now()).healthy;
            let status = if count > 0 && healthy { 200 } else { 503 };
            let mut reply = Reply::new(
                status,
                "application/json",
                service_health_body(&service, count, healthy),
            );
            reply
                .headers
                .push(("X-Content-Type-Options", "nosniff".into()));
            reply
                .headers
                .push(("X-Load-Balancing-Endpoint-Weight", count.to_string()));
            reply
        })
    }
}

impl Drop for ServiceHealthServers {
    fn drop(&mut self) {
        for running in self.running.values() {
            running.tasks.iter().for_each(JoinHandle::abort);
        }
    }
}

/// Listens on every IPv4 and IPv6 address (`[::]` dual-stack), or every IPv4 address
/// when IPv6 is unavailable.
pub fn bind_every_address(port: u16) -> std::io::Result<std::net::TcpListener> {
    let dual = || -> std::io::Result<std::net::TcpListener> {
        let socket = Socket::new(Domain::IPV6, Type::STREAM, None)?;
        socket.set_only_v6(false)?;
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port).into())?;
        socket.listen(128)?;
        Ok(socket.into())
    };
    dual().or_else(|_| std::net::TcpListener::bind(("0.0.0.0", port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_kube_proxys() {
        let body = service_health_body(&NamespacedName::new("ns", "web"), 2, true);
        assert_eq!(
            body,
            "{\n\t\"service\": {\n\t\t\"namespace\": \"ns\",\n\t\t\"name\": \"web\"\n\t},\n\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}"
        );
    }
}
