//! Per-service-port objects: policy, external, firewall and endpoint chains, affinity
//! sets, and the elements that steer traffic into them. Pure: a service port and its
//! endpoints in, typed objects out.

use super::base::{
    family_of, local_traffic_match, CLUSTER_IPS, FIREWALL_IPS, MARK_FOR_MASQUERADE,
    NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES, REJECT_CHAIN, SERVICE_IPS, SERVICE_NODEPORTS,
};
use super::expr::{self, concat, Expr};
use crate::naming::ServiceChainNames;
use crate::nft::text::is_valid_name;
use crate::nft::{Element, Rule, Set};
use crate::settings::ProxierSettings;
use kproxy_model::{
    join_host_port, select_endpoints, Endpoint, IpFamily, NodeTopology, ServiceEntry, ServicePort,
};
use std::net::IpAddr;

/// A chain and the rules it should hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainContent {
    /// The chain name.
    pub name: String,
    /// Its rules, in order.
    pub rules: Vec<Rule>,
}

/// Everything kproxy writes for one service port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceObjects {
    /// `service-`, `local-`, `external-` and `firewall-` chains.
    pub service_chains: Vec<ChainContent>,
    /// `endpoint-` chains.
    pub endpoint_chains: Vec<ChainContent>,
    /// `affinity-` sets.
    pub affinity_sets: Vec<Set>,
    /// Elements of the shared sets and maps.
    pub elements: Vec<Element>,
    /// Internal policy is Local, endpoints exist, none is local.
    pub no_local_internal: bool,
    /// External policy is Local, endpoints exist, none is local.
    pub no_local_external: bool,
}

impl ServiceObjects {
    /// Every chain, service chains first.
    pub fn chains(&self) -> impl Iterator<Item = &ChainContent> {
        self.service_chains
            .iter()
            .chain(self.endpoint_chains.iter())
    }
}

/// Why a service port was not rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A name built from the service would not be a safe nft identifier.
    #[error("{service}: name {name:?} is not a valid nftables identifier; service skipped")]
    BadName {
        /// The service port.
        service: String,
        /// The offending name.
        name: String,
    },
    /// The ClusterIP is not of the proxier's family.
    #[error("{service}: ClusterIP {ip} is not of this proxier's family; service skipped")]
    WrongFamily {
        /// The service port.
        service: String,
        /// The address.
        ip: IpAddr,
    },
}

/// Which traffic classes have endpoints, and where they go.
struct Plan<'a> {
    names: ServiceChainNames,
    cluster: Vec<&'a Endpoint>,
    local: Vec<&'a Endpoint>,
    reachable: Vec<&'a Endpoint>,
    has_endpoints: bool,
    has_internal: bool,
    has_external: bool,
    uses_cluster_chain: bool,
    uses_local_chain: bool,
    uses_external_chain: bool,
    uses_firewall: bool,
}

impl Plan<'_> {
    fn internal_chain(&self, svc: &ServicePort) -> &str {
        if svc.internal_policy_local {
            &self.names.local
        } else {
            &self.names.cluster
        }
    }

    fn external_policy_chain(&self, svc: &ServicePort) -> &str {
        if svc.external_policy_local {
            &self.names.local
        } else {
            &self.names.cluster
        }
    }

    /// Verdict for traffic that has no endpoint to go to: drop when endpoints exist but
    /// the policy excludes them, reject when there are none at all.
    fn no_endpoint_verdict(&self) -> String {
        if self.has_endpoints {
            "drop".to_string()
        } else {
            expr::goto(REJECT_CHAIN)
        }
    }
}

/// Renders one service port.
pub fn render_service(
    settings: &ProxierSettings,
    entry: &ServiceEntry,
    topology: &NodeTopology,
) -> Result<ServiceObjects, RenderError> {
    let svc = &entry.service;
    if IpFamily::of(&svc.cluster_ip) != settings.family {
        return Err(RenderError::WrongFamily {
            service: svc.name.to_string(),
            ip: svc.cluster_ip,
        });
    }
    let names = ServiceChainNames::new(&svc.name);
    for name in [
        &names.cluster,
        &names.local,
        &names.external,
        &names.firewall,
    ] {
        if !is_valid_name(name) {
            return Err(RenderError::BadName {
                service: svc.name.to_string(),
                name: name.clone(),
            });
        }
    }
    let endpoints: Vec<Endpoint> = entry
        .endpoints
        .iter()
        .filter(|ep| IpFamily::of(&ep.ip) == settings.family && ep.port != 0)
        .cloned()
        .collect();
    let plan = plan(svc, &endpoints, topology, names);
    let mut out = ServiceObjects {
        no_local_internal: svc.internal_policy_local && plan.has_endpoints && plan.local.is_empty(),
        no_local_external: svc.external_policy_local
            && svc.externally_accessible()
            && plan.has_endpoints
            && plan.local.is_empty(),
        ..ServiceObjects::default()
    };
    write_endpoint_chains(settings, svc, &plan, &mut out);
    write_policy_chains(settings, svc, &plan, &mut out);
    write_external_chain(settings, svc, &plan, &mut out);
    write_firewall_chain(settings, svc, &plan, &mut out);
    write_elements(settings, svc, &plan, &mut out);
    Ok(out)
}

fn plan<'a>(
    svc: &ServicePort,
    endpoints: &'a [Endpoint],
    topology: &NodeTopology,
    names: ServiceChainNames,
) -> Plan<'a> {
    let sel = select_endpoints(svc, endpoints, topology);
    let has_endpoints = sel.has_any;
    let has_local = !sel.local.is_empty();
    Plan {
        has_internal: if svc.internal_policy_local {
            has_local
        } else {
            has_endpoints
        },
        has_external: if svc.external_policy_local {
            has_local
        } else {
            has_endpoints
        },
        uses_cluster_chain: !sel.cluster.is_empty() && svc.uses_cluster_endpoints(),
        uses_local_chain: has_local && svc.uses_local_endpoints(),
        uses_external_chain: has_endpoints && svc.externally_accessible(),
        uses_firewall: !svc.load_balancer_ips.is_empty()
            && !svc.load_balancer_source_ranges.is_empty(),
        has_endpoints,
        names,
        cluster: sel.cluster,
        local: sel.local,
        reachable: sel.all_reachable,
    }
}

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

fn write_endpoint_chains(
    settings: &ProxierSettings,
    svc: &ServicePort,
    plan: &Plan<'_>,
    out: &mut ServiceObjects,
) {
    let e = Expr::new(family_of(settings));
    for ep in &plan.reachable {
        let names = plan.names.endpoint(ep);
        let mut rules = vec![rule(
            &names.chain,
            concat(&[&e.saddr_is(&ep.ip), &expr::jump(MARK_FOR_MASQUERADE)]),
        )];
        if let Some(timeout) = svc.affinity_timeout {
            rules.push(rule(&names.chain, e.update_affinity(&names.affinity_set)));
            out.affinity_sets.push(Set {
                name: names.affinity_set.clone(),
                key_type: family_of(settings).addr_type().to_string(),
                flags: vec!["dynamic".to_string(), "timeout".to_string()],
                timeout: Some(timeout),
                comment: None,
            });
        }
        rules.push(rule(
            &names.chain,
            expr::dnat(svc.name.protocol.lower(), &join_host_port(&ep.ip, ep.port)),
        ));
        out.endpoint_chains.push(ChainContent {
            name: names.chain,
            rules,
        });
    }
}

/// The ClusterIP masquerade rule for the internal traffic chain, if any.
fn cluster_ip_masquerade(settings: &ProxierSettings, svc: &ServicePort) -> Option<String> {
    let e = Expr::new(family_of(settings));
    let daddr = e.daddr_is(&svc.cluster_ip);
    let jump = expr::jump(MARK_FOR_MASQUERADE);
    if settings.masquerade_all {
        return Some(concat(&[&daddr, &jump]));
    }
    local_traffic_match(settings, true).map(|not_local| concat(&[&daddr, &not_local, &jump]))
}

fn write_policy_chains(
    settings: &ProxierSettings,
    svc: &ServicePort,
    plan: &Plan<'_>,
    out: &mut ServiceObjects,
) {
    let chains = [
        (&plan.names.cluster, &plan.cluster, plan.uses_cluster_chain),
        (&plan.names.local, &plan.local, plan.uses_local_chain),
    ];
    for (name, endpoints, used) in chains {
        if !used {
            continue;
        }
        let mut rules = Vec::new();
        if plan.has_internal && plan.internal_chain(svc) == name.as_str() {
            if let Some(body) = cluster_ip_masquerade(settings, svc) {
                rules.push(rule(name, body));
            }
        }
        let e = Expr::new(family_of(settings));
        let endpoint_names: Vec<_> = endpoints.iter().map(|ep| plan.names.endpoint(ep)).collect();
        if svc.affinity_timeout.is_some() {
            for names in &endpoint_names {
                rules.push(rule(
                    name,
                    concat(&[
                        &e.saddr_in_set(&names.affinity_set),
                        &expr::goto(&names.chain),
                    ]),
                ));
            }
        }
        let targets: Vec<&str> = endpoint_names.iter().map(|n| n.chain.as_str()).collect();
        rules.push(rule(name, expr::numgen_vmap(&targets)));
        out.service_chains.push(ChainContent {
            name: name.clone(),
            rules,
        });
    }
}

fn write_external_chain(
    settings: &ProxierSettings,
    svc: &ServicePort,
    plan: &Plan<'_>,
    out: &mut ServiceObjects,
) {
    if !plan.uses_external_chain {
        return;
    }
    let name = &plan.names.external;
    let cluster = &plan.names.cluster;
    let mut rules = Vec::new();
    if !svc.external_policy_local {
        rules.push(rule(name, expr::jump(MARK_FOR_MASQUERADE)));
    } else if plan.uses_cluster_chain {
        if let Some(local) = local_traffic_match(settings, false) {
            rules.push(commented(
                name,
                concat(&[&local, &expr::goto(cluster)]),
                "short-circuit pod traffic",
            ));
        }
        rules.push(commented(
            name,
            concat(&["fib saddr type local", &expr::jump(MARK_FOR_MASQUERADE)]),
            "masquerade local traffic",
        ));
        rules.push(commented(
            name,
            concat(&["fib saddr type local", &expr::goto(cluster)]),
            "short-circuit local traffic",
        ));
    }
    let policy_chain_exists = if svc.external_policy_local {
        plan.uses_local_chain
    } else {
        plan.uses_cluster_chain
    };
    if plan.has_external && policy_chain_exists {
        rules.push(rule(name, expr::goto(plan.external_policy_chain(svc))));
    }
    out.service_chains.push(ChainContent {
        name: name.clone(),
        rules,
    });
}

fn write_firewall_chain(
    settings: &ProxierSettings,
    svc: &ServicePort,
    plan: &Plan<'_>,
    out: &mut ServiceObjects,
) {
    if !plan.uses_firewall {
        return;
    }
    let e = Expr::new(family_of(settings));
    let ranges = &svc.load_balancer_source_ranges;
    let mut sources: Vec<String> = ranges.iter().map(|n| n.to_string()).collect();
    let allow_from_node = settings
        .node_ip
        .is_some_and(|ip| ranges.iter().any(|n| n.contains(&ip)));
    if allow_from_node {
        sources.extend(svc.load_balancer_ips.iter().map(IpAddr::to_string));
    }
    let name = &plan.names.firewall;
    out.service_chains.push(ChainContent {
        name: name.clone(),
        rules: vec![rule(name, e.saddr_not_in_drop(&sources))],
    });
}

fn element(
    container: &str,
    key: String,
    comment: Option<String>,
    value: Option<String>,
) -> Element {
    Element {
        container: container.to_string(),
        key,
        comment,
        value,
    }
}

fn write_elements(
    settings: &ProxierSettings,
    svc: &ServicePort,
    plan: &Plan<'_>,
    out: &mut ServiceObjects,
) {
    let proto = svc.name.protocol.lower();
    let key = |ip: &IpAddr| format!("{ip} . {proto} . {}", svc.port);
    let comment = Some(svc.name.to_string());
    let own = |ip: &&IpAddr| IpFamily::of(ip) == settings.family;
    let els = &mut out.elements;
    els.push(element(CLUSTER_IPS, svc.cluster_ip.to_string(), None, None));
    if plan.has_internal {
        let target = expr::goto(plan.internal_chain(svc));
        els.push(element(
            SERVICE_IPS,
            key(&svc.cluster_ip),
            None,
            Some(target),
        ));
    } else {
        let verdict = Some(plan.no_endpoint_verdict());
        els.push(element(
            NO_ENDPOINT_SERVICES,
            key(&svc.cluster_ip),
            comment.clone(),
            verdict,
        ));
    }
    let external = expr::goto(&plan.names.external);
    for ip in svc
        .external_ips
        .iter()
        .chain(svc.load_balancer_ips.iter())
        .filter(own)
    {
        if plan.uses_external_chain {
            els.push(element(SERVICE_IPS, key(ip), None, Some(external.clone())));
        }
        if !plan.has_external {
            let verdict = Some(plan.no_endpoint_verdict());
            els.push(element(
                NO_ENDPOINT_SERVICES,
                key(ip),
                comment.clone(),
                verdict,
            ));
        }
    }
    if plan.uses_firewall {
        for ip in svc.load_balancer_ips.iter().filter(own) {
            let target = Some(expr::goto(&plan.names.firewall));
            els.push(element(FIREWALL_IPS, key(ip), None, target));
        }
    }
    if svc.node_port != 0 {
        let port_key = format!("{proto} . {}", svc.node_port);
        if plan.uses_external_chain {
            els.push(element(
                SERVICE_NODEPORTS,
                port_key.clone(),
                None,
                Some(external),
            ));
        }
        if !plan.has_external {
            let verdict = Some(plan.no_endpoint_verdict());
            els.push(element(NO_ENDPOINT_NODEPORTS, port_key, comment, verdict));
        }
    }
}
