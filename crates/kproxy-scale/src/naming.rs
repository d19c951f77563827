//! The kernel objects a probe looks for: the chain of one Service and of one endpoint, as
//! each mode names them (the modes' own naming functions, so the harness and the agent
//! cannot disagree).

use crate::args::Mode;
use crate::cluster::ServiceSpec;
use kproxy_model::{NamespacedName, Protocol, ServicePortName};
use std::net::Ipv4Addr;

/// Where a mode's chains live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainTable {
    /// The iptables `nat` table.
    IptablesNat,
    /// The nftables `ip kube-proxy` table.
    NftKubeProxy,
}

impl ChainTable {
    /// The table a mode programs.
    pub fn of(mode: Mode) -> ChainTable {
        match mode {
            Mode::Iptables => ChainTable::IptablesNat,
            Mode::Nftables => ChainTable::NftKubeProxy,
        }
    }
}

fn port_name(spec: &ServiceSpec) -> ServicePortName {
    ServicePortName {
        service: NamespacedName::new(spec.namespace.clone(), spec.name.clone()),
        port: spec.port_name.to_string(),
        protocol: Protocol::Tcp,
    }
}

/// The chain that balances over a Service's endpoints (`KUBE-SVC-…` / `service-…`).
pub fn service_chain(table: ChainTable, spec: &ServiceSpec) -> String {
    let name = port_name(spec);
    match table {
        ChainTable::IptablesNat => kproxy_iptables::ServiceChains::of(&name)
            .cluster()
            .to_string(),
        ChainTable::NftKubeProxy => kproxy_nftables::naming::ServiceChainNames::new(&name).cluster,
    }
}

/// The chain of one endpoint of a Service (`KUBE-SEP-…` / `endpoint-…`).
pub fn endpoint_chain(table: ChainTable, spec: &ServiceSpec, ip: Ipv4Addr) -> String {
    let name = port_name(spec);
    let endpoint = format!("{ip}:{}", spec.target_port);
    match table {
        ChainTable::IptablesNat => {
            // Upstream's key: service port name, protocol, then the endpoint's ip:port.
            let key = format!("{name}{}{endpoint}", name.protocol.lower());
            format!("KUBE-SEP-{}", kproxy_iptables::hash16(&key))
        }
        ChainTable::NftKubeProxy => {
            use kproxy_nftables::naming::{endpoint_base, hashed, service_base};
            format!(
                "endpoint-{}",
                hashed(&endpoint_base(&service_base(&name), &endpoint))
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_names_match_upstream() {
        // From upstream kube-proxy's TestOverallIPTablesRules: ns1/svc1:p80 with 10.180.0.1:80.
        let spec = ServiceSpec {
            index: 0,
            namespace: "ns1".into(),
            name: "svc1".into(),
            port_name: "p80",
            port: 80,
            target_port: 80,
            node_port: None,
        };
        assert_eq!(
            service_chain(ChainTable::IptablesNat, &spec),
            "KUBE-SVC-XPGD46QRK7WJZT7O"
        );
        assert_eq!(
            endpoint_chain(ChainTable::IptablesNat, &spec, Ipv4Addr::new(10, 180, 0, 1)),
            "KUBE-SEP-SXIVWICOYRO3J4NJ"
        );
        assert!(endpoint_chain(
            ChainTable::NftKubeProxy,
            &spec,
            Ipv4Addr::new(10, 180, 0, 1)
        )
        .starts_with("endpoint-"));
    }
}
