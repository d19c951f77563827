//! The fixed part of the `kube-proxy` table: base chains and their jumps, the helper
//! chains, and the sets and maps that per-service elements go into.

use super::expr::{self, Expr};
use crate::nft::{BaseChain, Chain, ChainType, Hook, Map, Named, Rule, Set, Table, Transaction};
use crate::settings::{LocalTrafficDetector, ProxierSettings};
use kproxy_model::IpFamily;

/// Set of every active ClusterIP.
pub const CLUSTER_IPS: &str = "cluster-ips";
/// Set of the node IPs that accept NodePort traffic.
pub const NODEPORT_IPS: &str = "nodeport-ips";
/// Verdict map for ClusterIP, external IP and LB IP traffic.
pub const SERVICE_IPS: &str = "service-ips";
/// Verdict map for NodePort traffic.
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
/// Verdict map for LB IPs subject to source ranges.
pub const FIREWALL_IPS: &str = "firewall-ips";
/// Verdict map dropping or rejecting traffic to services without endpoints.
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
/// Verdict map dropping or rejecting traffic to NodePorts without endpoints.
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
/// Chain that sets the masquerade mark.
pub const MARK_FOR_MASQUERADE: &str = "mark-for-masquerade";
/// Chain that rejects.
pub const REJECT_CHAIN: &str = "reject-chain";

const CLUSTER_IPS_CHECK: &str = "cluster-ips-check";
const FIREWALL_CHECK: &str = "firewall-check";
const MASQUERADING: &str = "masquerading";
const NODEPORT_ENDPOINTS_CHECK: &str = "nodeport-endpoints-check";
const SERVICES: &str = "services";
const SERVICE_ENDPOINTS_CHECK: &str = "service-endpoints-check";

/// The base chains: name, type, hook, priority.
const BASE_CHAINS: [(&str, ChainType, Hook, i32); 8] = [
    (
        "filter-prerouting-pre-dnat",
        ChainType::Filter,
        Hook::Prerouting,
        -110,
    ),
    (
        "filter-output-pre-dnat",
        ChainType::Filter,
        Hook::Output,
        -110,
    ),
    ("filter-forward", ChainType::Filter, Hook::Forward, 0),
    ("filter-input", ChainType::Filter, Hook::Input, 0),
    ("filter-output", ChainType::Filter, Hook::Output, 0),
    ("nat-prerouting", ChainType::Nat, Hook::Prerouting, -100),
    ("nat-output", ChainType::Nat, Hook::Output, -100),
    ("nat-postrouting", ChainType::Nat, Hook::Postrouting, 100),
];

/// Jumps from base chains, in rule order: source, `ct state new` or not, destination.
const JUMPS: [(&str, bool, &str); 11] = [
    ("filter-prerouting-pre-dnat", true, FIREWALL_CHECK),
    ("filter-output-pre-dnat", true, FIREWALL_CHECK),
    ("filter-forward", true, SERVICE_ENDPOINTS_CHECK),
    ("filter-forward", true, CLUSTER_IPS_CHECK),
    ("filter-input", true, NODEPORT_ENDPOINTS_CHECK),
    ("filter-input", true, SERVICE_ENDPOINTS_CHECK),
    ("filter-output", true, SERVICE_ENDPOINTS_CHECK),
    ("filter-output", true, CLUSTER_IPS_CHECK),
    ("nat-prerouting", false, SERVICES),
    ("nat-output", false, SERVICES),
    ("nat-postrouting", false, MASQUERADING),
];

const HELPER_CHAINS: [&str; 8] = [
    CLUSTER_IPS_CHECK,
    FIREWALL_CHECK,
    MARK_FOR_MASQUERADE,
    MASQUERADING,
    NODEPORT_ENDPOINTS_CHECK,
    REJECT_CHAIN,
    SERVICES,
    SERVICE_ENDPOINTS_CHECK,
];

/// The element containers a full sync reconciles.
pub const ELEMENT_CONTAINERS: [&str; 6] = [
    CLUSTER_IPS,
    SERVICE_IPS,
    SERVICE_NODEPORTS,
    FIREWALL_IPS,
    NO_ENDPOINT_SERVICES,
    NO_ENDPOINT_NODEPORTS,
];

fn rule(chain: &str, body: String) -> Rule {
    Rule {
        chain: chain.to_string(),
        body,
        comment: None,
    }
}

fn commented(chain: &str, body: String, comment: &str) -> Rule {
    Rule {
        comment: Some(comment.to_string()),
        ..rule(chain, body)
    }
}

/// Writes the fixed objects. `first_sync` adds and deletes each base chain once, so a
/// base chain left by an older version with another priority is recreated.
pub fn render_fixed(settings: &ProxierSettings, first_sync: bool, tx: &mut Transaction) {
    tx.add(Table {
        comment: Some("rules for kube-proxy".to_string()),
    });
    render_containers(settings, tx);
    if first_sync {
        for (name, ..) in BASE_CHAINS {
            tx.add(Chain::regular(name));
            tx.delete(Named::Chain(name.to_string()));
        }
    }
    for (name, kind, hook, priority) in BASE_CHAINS {
        tx.add(Chain {
            name: name.to_string(),
            base: Some(BaseChain {
                kind,
                hook,
                priority,
            }),
            comment: None,
        });
        tx.flush(Named::Chain(name.to_string()));
    }
    for name in HELPER_CHAINS {
        let comment = (name == REJECT_CHAIN)
            .then(|| "helper for @no-endpoint-services / @no-endpoint-nodeports".to_string());
        tx.add(Chain {
            name: name.to_string(),
            base: None,
            comment,
        });
        tx.flush(Named::Chain(name.to_string()));
    }
    render_node_port_ips(settings, tx);
    fixed_rules(settings).into_iter().for_each(|r| tx.add(r));
}

fn render_containers(settings: &ProxierSettings, tx: &mut Transaction) {
    let addr = family_of(settings).addr_type();
    let service_key = format!("{addr} . inet_proto . inet_service");
    let port_key = "inet_proto . inet_service".to_string();
    let set = |name: &str, comment: &str| Set {
        name: name.to_string(),
        key_type: addr.to_string(),
        flags: Vec::new(),
        timeout: None,
        comment: Some(comment.to_string()),
    };
    let map = |name: &str, key: &str, comment: &str| Map {
        name: name.to_string(),
        key_type: key.to_string(),
        value_type: "verdict".to_string(),
        flags: Vec::new(),
        comment: Some(comment.to_string()),
    };
    tx.add(set(CLUSTER_IPS, "Active ClusterIPs"));
    tx.add(set(NODEPORT_IPS, "IPs that accept NodePort traffic"));
    tx.add(map(
        SERVICE_IPS,
        &service_key,
        "ClusterIP, ExternalIP and LoadBalancer IP traffic",
    ));
    tx.add(map(SERVICE_NODEPORTS, &port_key, "NodePort traffic"));
    tx.add(map(
        FIREWALL_IPS,
        &service_key,
        "destinations that are subject to LoadBalancerSourceRanges",
    ));
    tx.add(map(
        NO_ENDPOINT_SERVICES,
        &service_key,
        "vmap to drop or reject packets to services with no endpoints",
    ));
    tx.add(map(
        NO_ENDPOINT_NODEPORTS,
        &port_key,
        "vmap to drop or reject packets to service nodeports with no endpoints",
    ));
}

/// Refills `nodeport-ips`, or removes it when NodePorts are open on every address (the
/// chains that used it were flushed earlier in the same transaction).
fn render_node_port_ips(settings: &ProxierSettings, tx: &mut Transaction) {
    if settings.node_ports_on_all_addresses() {
        tx.delete(Named::Set(NODEPORT_IPS.to_string()));
        return;
    }
    tx.flush(Named::Set(NODEPORT_IPS.to_string()));
    for ip in settings.node_port_ips() {
        tx.add(crate::nft::Element {
            container: NODEPORT_IPS.to_string(),
            key: ip.to_string(),
            comment: None,
            value: None,
        });
    }
}

/// The nft family of the settings' IP family.
pub fn family_of(settings: &ProxierSettings) -> crate::nft::Family {
    match settings.family {
        IpFamily::V4 => crate::nft::Family::Ip,
        IpFamily::V6 => crate::nft::Family::Ip6,
    }
}

fn fixed_rules(settings: &ProxierSettings) -> Vec<Rule> {
    let e = Expr::new(family_of(settings));
    let mark = format!("{:#x}", settings.masquerade_mark());
    let all_addresses = settings.node_ports_on_all_addresses();
    let mut rules = vec![commented(
        CLUSTER_IPS_CHECK,
        format!("{} reject", e.daddr_in_set(CLUSTER_IPS)),
        "Reject traffic to invalid ports of ClusterIPs",
    )];
    let cidrs = settings.own_service_cidrs();
    if !cidrs.is_empty() {
        rules.push(commented(
            CLUSTER_IPS_CHECK,
            e.daddr_in_drop(&cidrs),
            "Drop traffic to unallocated ClusterIPs",
        ));
    }
    for (from, new_only, to) in JUMPS {
        let ct = if new_only { "ct state new " } else { "" };
        rules.push(rule(from, format!("{ct}{}", expr::jump(to))));
    }
    rules.push(rule(FIREWALL_CHECK, e.service_vmap(FIREWALL_IPS)));
    rules.push(rule(
        MARK_FOR_MASQUERADE,
        format!("mark set mark or {mark}"),
    ));
    rules.push(rule(MASQUERADING, format!("mark and {mark} == 0 return")));
    rules.push(rule(MASQUERADING, format!("mark set mark xor {mark}")));
    rules.push(rule(MASQUERADING, "masquerade fully-random".to_string()));
    rules.push(rule(SERVICES, e.service_vmap(SERVICE_IPS)));
    let (nodeport_dest, nodeport_check) = if all_addresses {
        (
            format!("fib daddr type local {}", e.daddr_not_loopback()),
            e.daddr_not_loopback(),
        )
    } else {
        (e.daddr_in_set(NODEPORT_IPS), e.daddr_in_set(NODEPORT_IPS))
    };
    rules.push(rule(
        SERVICES,
        format!("{nodeport_dest} {}", Expr::port_vmap(SERVICE_NODEPORTS)),
    ));
    rules.push(rule(
        SERVICE_ENDPOINTS_CHECK,
        e.service_vmap(NO_ENDPOINT_SERVICES),
    ));
    rules.push(rule(
        NODEPORT_ENDPOINTS_CHECK,
        format!(
            "{nodeport_check} {}",
            Expr::port_vmap(NO_ENDPOINT_NODEPORTS)
        ),
    ));
    rules.push(rule(REJECT_CHAIN, "reject".to_string()));
    rules
}

/// The match for traffic from local pods (`negate`: from anything else), or `None`
/// without a detector.
pub fn local_traffic_match(settings: &ProxierSettings, negate: bool) -> Option<String> {
    let e = Expr::new(family_of(settings));
    let not = if negate { "!= " } else { "" };
    match &settings.local_detector {
        LocalTrafficDetector::None => None,
        LocalTrafficDetector::ClusterCidr(net) => Some(e.saddr_in_net(net, negate)),
        LocalTrafficDetector::BridgeInterface(name) => Some(format!("iifname {not}\"{name}\"")),
        LocalTrafficDetector::InterfaceNamePrefix(prefix) => {
            Some(format!("iifname {not}\"{prefix}*\""))
        }
    }
}
