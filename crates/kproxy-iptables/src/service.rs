//! Rules for one service port: the dispatch rules in `KUBE-SERVICES`/`KUBE-NODEPORTS`, the
//! filter rules (REJECT/DROP/health-check ACCEPT), and the per-service chains
//! (`KUBE-EXT/FW/SVC/SVL/SEP`). Pure: model in, text out.

use crate::chain_name::{endpoint_chain, ServiceChains};
use crate::chain_names::ChainNames;
use crate::probability::probability;
use crate::rule::RuleLine;
use crate::settings::{IptablesSettings, LOCALHOST_NODEPORT_COUNTER};
use kproxy_model::PackedText;
use kproxy_model::{select_endpoints, Endpoint, IpFamily, ServiceEntry};
use rustc_hash::FxHashMap;
use std::net::IpAddr;

/// The rendered text of one service port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceRules {
    /// Rules for the filter table (written on every sync).
    pub filter_rules: String,
    /// nat rules in `KUBE-SERVICES` and `KUBE-NODEPORTS` (written on every sync).
    pub dispatch_rules: String,
    /// Number of `-A` lines in `dispatch_rules`.
    pub dispatch_rule_count: usize,
    /// The per-service nat chains this port uses.
    pub chains: ChainNames,
    /// Rules of those chains (written when the service changed, or on a full sync), kept
    /// compressed.
    pub chain_rules: PackedText,
    /// Number of `-A` lines in `chain_rules`.
    pub chain_rule_count: usize,
    /// Internal traffic policy Local without local endpoints.
    pub no_local_internal: bool,
    /// External traffic policy Local without local endpoints.
    pub no_local_external: bool,
}

/// Per-sync facts that every service's rules depend on.
pub struct RenderContext<'a> {
    /// The node settings.
    pub settings: &'a IptablesSettings,
    /// Drop per-endpoint comments (over 1000 endpoints).
    pub large_cluster: bool,
}

/// Renders the rules of one service port.
pub fn render_service(ctx: &RenderContext<'_>, entry: &ServiceEntry) -> ServiceRules {
    let svc = &entry.service;
    let selection = select_endpoints(svc, &entry.endpoints, &ctx.settings.topology);
    let chains = ServiceChains::of(&svc.name);
    let name = svc.name.to_string();
    let proto = svc.name.protocol.lower();
    let has_endpoints = selection.has_any;
    let local_empty = selection.local.is_empty();
    let has_internal = has_endpoints && !(svc.internal_policy_local && local_empty);
    let has_external = has_endpoints && !(svc.external_policy_local && local_empty);
    let internal_chain = if svc.internal_policy_local {
        &chains.local
    } else {
        &chains.cluster
    };
    let external_policy_chain = if svc.external_policy_local {
        &chains.local
    } else {
        &chains.cluster
    };
    let uses_fw = has_endpoints
        && !svc.load_balancer_ips.is_empty()
        && !svc.load_balancer_source_ranges.is_empty();
    let lb_chain = if uses_fw {
        &chains.firewall
    } else {
        &chains.external
    };
    let (filter_target, internal_comment, external_comment) = if !has_endpoints {
        let comment = format!("{name} has no endpoints");
        ("REJECT", comment.clone(), comment)
    } else {
        let comment = format!("{name} has no local endpoints");
        ("DROP", comment.clone(), comment)
    };
    let port_match = format!("-m {proto} -p {proto}");
    let mut out = ServiceRules {
        no_local_internal: has_endpoints && !has_internal,
        no_local_external: has_endpoints && !has_external,
        ..ServiceRules::default()
    };
    let dispatch = &mut out.dispatch_rules;
    let filter = &mut out.filter_rules;

    if has_internal {
        RuleLine::append(dispatch, "KUBE-SERVICES")
            .comment(&format!("{name} cluster IP"))
            .raw(&port_match)
            .value("-d", svc.cluster_ip)
            .value("--dport", svc.port)
            .jump(internal_chain);
    } else {
        RuleLine::append(filter, "KUBE-SERVICES")
            .comment(&internal_comment)
            .raw(&port_match)
            .value("-d", svc.cluster_ip)
            .value("--dport", svc.port)
            .jump(filter_target);
    }
    for ip in &svc.external_ips {
        if has_endpoints {
            RuleLine::append(dispatch, "KUBE-SERVICES")
                .comment(&format!("{name} external IP"))
                .raw(&port_match)
                .value("-d", ip)
                .value("--dport", svc.port)
                .jump(&chains.external);
        }
        if !has_external {
            RuleLine::append(filter, "KUBE-EXTERNAL-SERVICES")
                .comment(&external_comment)
                .raw(&port_match)
                .value("-d", ip)
                .value("--dport", svc.port)
                .jump(filter_target);
        }
    }
    for ip in &svc.load_balancer_ips {
        if has_endpoints {
            RuleLine::append(dispatch, "KUBE-SERVICES")
                .comment(&format!("{name} loadbalancer IP"))
                .raw(&port_match)
                .value("-d", ip)
                .value("--dport", svc.port)
                .jump(lb_chain);
        }
        if uses_fw {
            RuleLine::append(filter, "KUBE-PROXY-FIREWALL")
                .comment(&format!(
                    "{name} traffic not accepted by {}",
                    chains.firewall
                ))
                .raw(&port_match)
                .value("-d", ip)
                .value("--dport", svc.port)
                .jump("DROP");
        }
    }
    if !has_external {
        for ip in &svc.load_balancer_ips {
            RuleLine::append(filter, "KUBE-EXTERNAL-SERVICES")
                .comment(&external_comment)
                .raw(&port_match)
                .value("-d", ip)
                .value("--dport", svc.port)
                .jump(filter_target);
        }
    }
    if svc.node_port != 0 {
        if has_endpoints {
            let settings = ctx.settings;
            if settings.localhost_node_ports
                && settings.family == IpFamily::V4
                && settings.has_counter(LOCALHOST_NODEPORT_COUNTER)
            {
                RuleLine::append(dispatch, "KUBE-NODEPORTS")
                    .comment(&name)
                    .raw(&port_match)
                    .raw("-d 127.0.0.0/8")
                    .value("--dport", svc.node_port)
                    .raw("-m nfacct --nfacct-name")
                    .raw(LOCALHOST_NODEPORT_COUNTER)
                    .jump(&chains.external);
            }
            RuleLine::append(dispatch, "KUBE-NODEPORTS")
                .comment(&name)
                .raw(&port_match)
                .value("--dport", svc.node_port)
                .jump(&chains.external);
        }
        if !has_external {
            RuleLine::append(filter, "KUBE-EXTERNAL-SERVICES")
                .comment(&external_comment)
                .raw("-m addrtype --dst-type LOCAL")
                .raw(&port_match)
                .value("--dport", svc.node_port)
                .jump(filter_target);
        }
    }
    if svc.health_check_node_port != 0 {
        RuleLine::append(filter, "KUBE-NODEPORTS")
            .comment(&format!("{name} health check node port"))
            .raw("-m tcp -p tcp")
            .value("--dport", svc.health_check_node_port)
            .jump("ACCEPT");
    }
    out.dispatch_rule_count = out.dispatch_rules.matches('\n').count();

    let mut chain_out = ChainWriter {
        ctx,
        name: &name,
        rules: String::with_capacity(256 + 400 * entry.endpoints.len()),
        chains: ChainNames::default(),
        endpoint_chains: selection
            .all_reachable
            .iter()
            .map(|ep| ((ep.ip, ep.port), endpoint_chain(&svc.name, ep)))
            .collect(),
    };
    if has_internal {
        chain_out.internal_masquerade(internal_chain, &port_match, entry);
    }
    if has_endpoints && svc.externally_accessible() {
        chain_out.external_chain(entry, &chains, has_external, external_policy_chain);
    }
    if uses_fw {
        chain_out.firewall_chain(entry, &chains);
    }
    let affinity = svc.affinity_timeout;
    if !selection.cluster.is_empty() && svc.uses_cluster_endpoints() {
        chain_out.balance(&chains.cluster, &selection.cluster, affinity);
    }
    if !selection.local.is_empty() && svc.uses_local_endpoints() {
        chain_out.balance(&chains.local, &selection.local, affinity);
    }
    for ep in &selection.all_reachable {
        chain_out.endpoint_chain(entry, ep);
    }
    out.chain_rule_count = chain_out.rules.matches('\n').count();
    out.chains = chain_out.chains;
    out.chain_rules = PackedText::pack(&chain_out.rules);
    // The render cache keeps these for every port: no spare capacity (at 10,000 services
    // it was about a third of the cache).
    out.chains.shrink_to_fit();
    out.dispatch_rules.shrink_to_fit();
    out.filter_rules.shrink_to_fit();
    out
}

/// Writes the per-service chains of one port.
struct ChainWriter<'a> {
    ctx: &'a RenderContext<'a>,
    name: &'a str,
    rules: String,
    chains: ChainNames,
    endpoint_chains: FxHashMap<(IpAddr, u16), String>,
}

impl<'a> ChainWriter<'a> {
    /// The KUBE-SEP name of a reachable endpoint (hashed once per render).
    fn sep(&self, ep: &Endpoint) -> &str {
        self.endpoint_chains
            .get(&(ep.ip, ep.port))
            .map_or("", String::as_str)
    }

    fn declare(&mut self, chain: &str) {
        self.chains.insert(chain);
    }

    fn internal_masquerade(&mut self, chain: &str, port_match: &str, entry: &ServiceEntry) {
        let settings = self.ctx.settings;
        let svc = &entry.service;
        let detector = &settings.local_detector;
        if !settings.masquerade_all && !detector.is_implemented() {
            return;
        }
        let line = RuleLine::append(&mut self.rules, chain)
            .comment(&format!("{} cluster IP", self.name))
            .raw(port_match)
            .value("-d", svc.cluster_ip)
            .value("--dport", svc.port);
        if settings.masquerade_all {
            line.jump("KUBE-MARK-MASQ");
        } else {
            line.raw(&detector.if_not_local()).jump("KUBE-MARK-MASQ");
        }
    }

    fn external_chain(
        &mut self,
        entry: &ServiceEntry,
        chains: &ServiceChains,
        has_external: bool,
        policy_chain: &str,
    ) {
        let ext = chains.external.as_str();
        self.declare(ext);
        let name = self.name;
        if !entry.service.external_policy_local {
            RuleLine::append(&mut self.rules, ext)
                .comment(&format!(
                    "masquerade traffic for {name} external destinations"
                ))
                .jump("KUBE-MARK-MASQ");
        } else {
            let detector = &self.ctx.settings.local_detector;
            if detector.is_implemented() {
                RuleLine::append(&mut self.rules, ext)
                    .comment(&format!("pod traffic for {name} external destinations"))
                    .raw(&detector.if_local())
                    .jump(&chains.cluster);
            }
            RuleLine::append(&mut self.rules, ext)
                .comment(&format!(
                    "masquerade LOCAL traffic for {name} external destinations"
                ))
                .raw("-m addrtype --src-type LOCAL")
                .jump("KUBE-MARK-MASQ");
            RuleLine::append(&mut self.rules, ext)
                .comment(&format!(
                    "route LOCAL traffic for {name} external destinations"
                ))
                .raw("-m addrtype --src-type LOCAL")
                .jump(&chains.cluster);
        }
        if has_external {
            RuleLine::append(&mut self.rules, ext).jump(policy_chain);
        }
    }

    fn firewall_chain(&mut self, entry: &ServiceEntry, chains: &ServiceChains) {
        let fw = chains.firewall.as_str();
        self.declare(fw);
        let svc = &entry.service;
        let comment = format!("{} loadbalancer IP", self.name);
        let mut allow_from_node = false;
        for cidr in &svc.load_balancer_source_ranges {
            RuleLine::append(&mut self.rules, fw)
                .comment(&comment)
                .value("-s", cidr)
                .jump(&chains.external);
            allow_from_node |= self
                .ctx
                .settings
                .node_ip
                .is_some_and(|ip| cidr.contains(&ip));
        }
        if allow_from_node {
            for ip in &svc.load_balancer_ips {
                RuleLine::append(&mut self.rules, fw)
                    .comment(&comment)
                    .value("-s", ip)
                    .jump(&chains.external);
            }
        }
        RuleLine::append(&mut self.rules, fw)
            .comment(&format!(
                "other traffic to {} will be dropped by KUBE-PROXY-FIREWALL",
                self.name
            ))
            .end();
    }

    fn balance(&mut self, chain: &str, endpoints: &[&'a Endpoint], affinity: Option<u32>) {
        self.declare(chain);
        if let Some(seconds) = affinity {
            for ep in endpoints {
                let sep = self.sep(ep).to_string();
                let text = format!("{} -> {}", self.name, ep.addr());
                let line = RuleLine::append(&mut self.rules, chain);
                maybe_comment(line, self.ctx.large_cluster, &text)
                    .raw("-m recent --name")
                    .raw(&sep)
                    .raw("--rcheck --seconds")
                    .raw(&seconds.to_string())
                    .raw("--reap")
                    .jump(&sep);
            }
        }
        let count = endpoints.len();
        for (index, ep) in endpoints.iter().enumerate() {
            let sep = self.sep(ep).to_string();
            let text = format!("{} -> {}", self.name, ep.addr());
            let line = RuleLine::append(&mut self.rules, chain);
            let mut line = maybe_comment(line, self.ctx.large_cluster, &text);
            if index + 1 < count {
                line = line
                    .raw("-m statistic --mode random --probability")
                    .raw(&probability(count - index));
            }
            line.jump(&sep);
        }
    }

    fn endpoint_chain(&mut self, entry: &ServiceEntry, ep: &'a Endpoint) {
        let svc = &entry.service;
        let sep = self.sep(ep).to_string();
        self.declare(&sep);
        let proto = svc.name.protocol.lower();
        let name = self.name;
        let large = self.ctx.large_cluster;
        let line = RuleLine::append(&mut self.rules, &sep);
        maybe_comment(line, large, name)
            .value("-s", ep.ip)
            .jump("KUBE-MARK-MASQ");
        let line = RuleLine::append(&mut self.rules, &sep);
        let mut line = maybe_comment(line, large, name);
        if svc.affinity_timeout.is_some() {
            line = line.raw("-m recent --name").raw(&sep).raw("--set");
        }
        line.raw(&format!("-m {proto} -p {proto} -j DNAT --to-destination"))
            .raw(&ep.addr())
            .end();
    }
}

/// Per-endpoint comments are left out in large clusters, as upstream does.
fn maybe_comment<'r>(line: RuleLine<'r>, large_cluster: bool, text: &str) -> RuleLine<'r> {
    if large_cluster {
        line
    } else {
        line.comment(text)
    }
}
