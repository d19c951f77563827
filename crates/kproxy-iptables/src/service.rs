//! Rules for one service port: the dispatch rules in `KUBE-SERVICES`/`KUBE-NODEPORTS`, the
//! filter rules (REJECT/DROP/health-check ACCEPT), and the per-service chains
//! (`KUBE-EXT/FW/SVC/SVL/SEP`). Pure: model in, text out.

use crate::chain_name::{write_service_key, EndpointChainHasher, ServiceChains};
use crate::chain_names::ChainNames;
use crate::probability::Probabilities;
use crate::rule::{RuleLine, RuleText};
use crate::settings::{IptablesSettings, LOCALHOST_NODEPORT_COUNTER};
use kproxy_model::{
    select_endpoints, Endpoint, EndpointSelection, IpFamily, PackedText, Packer, Protocol,
    ServiceEntry,
};
use std::fmt::Write;
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
    /// The local detector's match for "from a local pod".
    if_local: String,
    /// The local detector's match for "not from a local pod".
    if_not_local: String,
}

impl<'a> RenderContext<'a> {
    /// The facts for one sync.
    pub fn new(settings: &'a IptablesSettings, large_cluster: bool) -> Self {
        RenderContext {
            settings,
            large_cluster,
            if_local: settings.local_detector.if_local(),
            if_not_local: settings.local_detector.if_not_local(),
        }
    }
}

/// Buffers reused from one service port to the next, so that rendering a port allocates
/// little beyond what the render cache keeps. One per rendering thread.
#[derive(Default)]
pub struct ServiceRenderer {
    dispatch: RuleText,
    filter: RuleText,
    chain_rules: RuleText,
    chains: ChainNames,
    port_chains: ServiceChains,
    name: String,
    key: String,
    comment: String,
    endpoint_chains: EndpointChains,
    probabilities: Probabilities,
    packer: Packer,
}

impl ServiceRenderer {
    /// Renders the rules of one service port.
    pub fn render(&mut self, ctx: &RenderContext<'_>, entry: &ServiceEntry) -> ServiceRules {
        let svc = &entry.service;
        let selection = select_endpoints(svc, &entry.endpoints, &ctx.settings.topology);
        write_service_key(&mut self.key, &svc.name);
        self.port_chains.fill(&self.key);
        let chains = &self.port_chains;
        self.name.clear();
        let _ = write!(self.name, "{}", svc.name);
        self.dispatch.clear();
        self.filter.clear();
        let facts = PortFacts::of(entry, &selection, chains);
        DispatchWriter {
            ctx,
            entry,
            name: &self.name,
            chains,
            facts: &facts,
            comment: &mut self.comment,
            dispatch: &mut self.dispatch,
            filter: &mut self.filter,
        }
        .write();

        self.chain_rules.clear();
        self.chains.clear();
        self.endpoint_chains
            .fill(&self.key, &entry.endpoints, &selection.all_reachable);
        let mut chain_out = ChainWriter {
            ctx,
            name: &self.name,
            rules: &mut self.chain_rules,
            chains: &mut self.chains,
            comment: &mut self.comment,
            endpoint_chains: &self.endpoint_chains,
            endpoints: &entry.endpoints,
            probabilities: &mut self.probabilities,
        };
        if facts.has_internal {
            chain_out.internal_masquerade(facts.internal_chain, entry);
        }
        if facts.has_endpoints && svc.externally_accessible() {
            chain_out.external_chain(entry, chains, &facts);
        }
        if facts.uses_fw {
            chain_out.firewall_chain(entry, chains);
        }
        let affinity = svc.affinity_timeout;
        if !selection.cluster.is_empty() && svc.uses_cluster_endpoints() {
            chain_out.balance(chains.cluster(), &selection.cluster, affinity);
        }
        if !selection.local.is_empty() && svc.uses_local_endpoints() {
            chain_out.balance(chains.local(), &selection.local, affinity);
        }
        for ep in &selection.all_reachable {
            chain_out.endpoint_chain(entry, ep);
        }
        // The render cache keeps these for every port, so each is copied out at its exact
        // size (spare capacity was about a third of the cache at 10,000 services).
        ServiceRules {
            filter_rules: self.filter.text.clone(),
            dispatch_rules: self.dispatch.text.clone(),
            dispatch_rule_count: self.dispatch.lines,
            chains: self.chains.clone(),
            chain_rules: self.packer.pack(&self.chain_rules.text),
            chain_rule_count: self.chain_rules.lines,
            no_local_internal: facts.has_endpoints && !facts.has_internal,
            no_local_external: facts.has_endpoints && !facts.has_external,
        }
    }
}

/// What one port's rules depend on, worked out once from its endpoint selection.
struct PortFacts<'c> {
    has_endpoints: bool,
    has_internal: bool,
    has_external: bool,
    uses_fw: bool,
    internal_chain: &'c str,
    external_policy_chain: &'c str,
    lb_chain: &'c str,
    /// REJECT without endpoints, DROP without local ones.
    filter_target: &'static str,
    /// ` has no endpoints` or ` has no local endpoints`, after the port's name.
    filter_reason: &'static str,
    /// `-m tcp -p tcp` and the like.
    port_match: &'static str,
}

impl<'c> PortFacts<'c> {
    fn of(
        entry: &ServiceEntry,
        selection: &EndpointSelection<'_>,
        chains: &'c ServiceChains,
    ) -> Self {
        let svc = &entry.service;
        let has_endpoints = selection.has_any;
        let local_empty = selection.local.is_empty();
        let uses_fw = has_endpoints
            && !svc.load_balancer_ips.is_empty()
            && !svc.load_balancer_source_ranges.is_empty();
        let (filter_target, filter_reason) = if has_endpoints {
            ("DROP", " has no local endpoints")
        } else {
            ("REJECT", " has no endpoints")
        };
        PortFacts {
            has_endpoints,
            has_internal: has_endpoints && !(svc.internal_policy_local && local_empty),
            has_external: has_endpoints && !(svc.external_policy_local && local_empty),
            uses_fw,
            internal_chain: if svc.internal_policy_local {
                chains.local()
            } else {
                chains.cluster()
            },
            external_policy_chain: if svc.external_policy_local {
                chains.local()
            } else {
                chains.cluster()
            },
            lb_chain: if uses_fw {
                chains.firewall()
            } else {
                chains.external()
            },
            filter_target,
            filter_reason,
            port_match: port_match(svc.name.protocol),
        }
    }
}

/// `-m tcp -p tcp` and the like.
fn port_match(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "-m tcp -p tcp",
        Protocol::Udp => "-m udp -p udp",
        Protocol::Sctp => "-m sctp -p sctp",
    }
}

/// Sets `out` to the text of a comment made of `parts`.
fn comment_text<'o>(out: &'o mut String, parts: &[&str]) -> &'o str {
    out.clear();
    parts.iter().for_each(|part| out.push_str(part));
    out
}

/// Writes one port's rules in `KUBE-SERVICES`, `KUBE-NODEPORTS` and the filter chains.
struct DispatchWriter<'a> {
    ctx: &'a RenderContext<'a>,
    entry: &'a ServiceEntry,
    name: &'a str,
    chains: &'a ServiceChains,
    facts: &'a PortFacts<'a>,
    comment: &'a mut String,
    dispatch: &'a mut RuleText,
    filter: &'a mut RuleText,
}

impl DispatchWriter<'_> {
    fn write(mut self) {
        let svc = &self.entry.service;
        let facts = self.facts;
        let name = self.name;
        let port_match = facts.port_match;
        if facts.has_internal {
            self.dispatch
                .append("KUBE-SERVICES")
                .comment(comment_text(self.comment, &[name, " cluster IP"]))
                .raw(port_match)
                .ip("-d", &svc.cluster_ip)
                .port("--dport", svc.port)
                .jump(facts.internal_chain);
        } else {
            self.reject_or_drop("KUBE-SERVICES", &svc.cluster_ip);
        }
        for ip in &svc.external_ips {
            if facts.has_endpoints {
                self.dispatch
                    .append("KUBE-SERVICES")
                    .comment(comment_text(self.comment, &[name, " external IP"]))
                    .raw(port_match)
                    .ip("-d", ip)
                    .port("--dport", svc.port)
                    .jump(self.chains.external());
            }
            if !facts.has_external {
                self.reject_or_drop("KUBE-EXTERNAL-SERVICES", ip);
            }
        }
        for ip in &svc.load_balancer_ips {
            if facts.has_endpoints {
                self.dispatch
                    .append("KUBE-SERVICES")
                    .comment(comment_text(self.comment, &[name, " loadbalancer IP"]))
                    .raw(port_match)
                    .ip("-d", ip)
                    .port("--dport", svc.port)
                    .jump(facts.lb_chain);
            }
            if facts.uses_fw {
                self.filter
                    .append("KUBE-PROXY-FIREWALL")
                    .comment(comment_text(
                        self.comment,
                        &[name, " traffic not accepted by ", self.chains.firewall()],
                    ))
                    .raw(port_match)
                    .ip("-d", ip)
                    .port("--dport", svc.port)
                    .jump("DROP");
            }
        }
        if !facts.has_external {
            for ip in &svc.load_balancer_ips {
                self.reject_or_drop("KUBE-EXTERNAL-SERVICES", ip);
            }
        }
        if svc.node_port != 0 {
            self.node_port();
        }
        if svc.health_check_node_port != 0 {
            self.filter
                .append("KUBE-NODEPORTS")
                .comment(comment_text(
                    self.comment,
                    &[name, " health check node port"],
                ))
                .raw("-m tcp -p tcp")
                .port("--dport", svc.health_check_node_port)
                .jump("ACCEPT");
        }
    }

    /// The filter rule that rejects (no endpoints) or drops (no local endpoints) traffic
    /// to one of the port's addresses.
    fn reject_or_drop(&mut self, chain: &str, ip: &IpAddr) {
        let facts = self.facts;
        self.filter
            .append(chain)
            .comment(comment_text(
                self.comment,
                &[self.name, facts.filter_reason],
            ))
            .raw(facts.port_match)
            .ip("-d", ip)
            .port("--dport", self.entry.service.port)
            .jump(facts.filter_target);
    }

    fn node_port(&mut self) {
        let svc = &self.entry.service;
        let facts = self.facts;
        if facts.has_endpoints {
            let settings = self.ctx.settings;
            if settings.localhost_node_ports
                && settings.family == IpFamily::V4
                && settings.has_counter(LOCALHOST_NODEPORT_COUNTER)
            {
                self.dispatch
                    .append("KUBE-NODEPORTS")
                    .comment(self.name)
                    .raw(facts.port_match)
                    .raw("-d 127.0.0.0/8")
                    .port("--dport", svc.node_port)
                    .raw("-m nfacct --nfacct-name")
                    .raw(LOCALHOST_NODEPORT_COUNTER)
                    .jump(self.chains.external());
            }
            self.dispatch
                .append("KUBE-NODEPORTS")
                .comment(self.name)
                .raw(facts.port_match)
                .port("--dport", svc.node_port)
                .jump(self.chains.external());
        }
        if !facts.has_external {
            self.filter
                .append("KUBE-EXTERNAL-SERVICES")
                .comment(comment_text(
                    self.comment,
                    &[self.name, facts.filter_reason],
                ))
                .raw("-m addrtype --dst-type LOCAL")
                .raw(facts.port_match)
                .port("--dport", svc.node_port)
                .jump(facts.filter_target);
        }
    }
}

/// The reachable endpoints of one port: each one's `KUBE-SEP` chain and `ip:port` text,
/// worked out once per render and kept in one buffer.
#[derive(Default)]
struct EndpointChains {
    /// By the endpoint's position in the port's endpoints: where its chain and address
    /// are in `text`, if it is reachable.
    spans: Vec<Option<EndpointSpan>>,
    /// Chain names and addresses, one after the other.
    text: String,
}

/// `text[start..addr]` is the chain, `text[addr..end]` the address.
#[derive(Clone, Copy)]
struct EndpointSpan {
    start: usize,
    addr: usize,
    end: usize,
}

impl EndpointChains {
    /// Names the `reachable` endpoints, which are some of `all`.
    fn fill(&mut self, service_key: &str, all: &[Endpoint], reachable: &[&Endpoint]) {
        self.spans.clear();
        self.spans.resize(all.len(), None);
        self.text.clear();
        let hasher = EndpointChainHasher::new(service_key);
        for ep in reachable {
            let Some(slot) = position(all, ep).and_then(|i| self.spans.get_mut(i)) else {
                continue;
            };
            let addr = ep.addr();
            let addr = addr.as_str();
            let start = self.text.len();
            hasher.push_chain(&mut self.text, addr);
            let addr_start = self.text.len();
            self.text.push_str(addr);
            *slot = Some(EndpointSpan {
                start,
                addr: addr_start,
                end: self.text.len(),
            });
        }
    }

    /// The chain and the `ip:port` text of a reachable endpoint of `all`.
    fn get(&self, all: &[Endpoint], ep: &Endpoint) -> (&str, &str) {
        let span = position(all, ep).and_then(|i| self.spans.get(i).copied().flatten());
        let text = |from: usize, to: usize| self.text.get(from..to).unwrap_or_default();
        span.map_or(("", ""), |span| {
            (text(span.start, span.addr), text(span.addr, span.end))
        })
    }
}

/// Where `ep`, a reference into `all` (as endpoint selection hands them out), sits in it.
fn position(all: &[Endpoint], ep: &Endpoint) -> Option<usize> {
    let size = std::mem::size_of::<Endpoint>().max(1);
    let offset = (ep as *const Endpoint as usize).checked_sub(all.as_ptr() as usize)?;
    let index = offset / size;
    all.get(index)
        .filter(|found| std::ptr::eq(*found, ep))
        .map(|_| index)
}

/// Writes the per-service chains of one port.
struct ChainWriter<'a> {
    ctx: &'a RenderContext<'a>,
    name: &'a str,
    rules: &'a mut RuleText,
    chains: &'a mut ChainNames,
    comment: &'a mut String,
    endpoint_chains: &'a EndpointChains,
    /// The port's endpoints, which the selection's references point into.
    endpoints: &'a [Endpoint],
    probabilities: &'a mut Probabilities,
}

impl ChainWriter<'_> {
    fn internal_masquerade(&mut self, chain: &str, entry: &ServiceEntry) {
        let settings = self.ctx.settings;
        let svc = &entry.service;
        let detector = &settings.local_detector;
        if !settings.masquerade_all && !detector.is_implemented() {
            return;
        }
        let line = self
            .rules
            .append(chain)
            .comment(comment_text(self.comment, &[self.name, " cluster IP"]))
            .raw(port_match(svc.name.protocol))
            .ip("-d", &svc.cluster_ip)
            .port("--dport", svc.port);
        if settings.masquerade_all {
            line.jump("KUBE-MARK-MASQ");
        } else {
            line.raw(&self.ctx.if_not_local).jump("KUBE-MARK-MASQ");
        }
    }

    fn external_chain(
        &mut self,
        entry: &ServiceEntry,
        chains: &ServiceChains,
        facts: &PortFacts<'_>,
    ) {
        let ext = chains.external();
        self.chains.insert(ext);
        let name = self.name;
        if !entry.service.external_policy_local {
            self.rules
                .append(ext)
                .comment(comment_text(
                    self.comment,
                    &["masquerade traffic for ", name, " external destinations"],
                ))
                .jump("KUBE-MARK-MASQ");
        } else {
            let detector = &self.ctx.settings.local_detector;
            if detector.is_implemented() {
                self.rules
                    .append(ext)
                    .comment(comment_text(
                        self.comment,
                        &["pod traffic for ", name, " external destinations"],
                    ))
                    .raw(&self.ctx.if_local)
                    .jump(chains.cluster());
            }
            self.rules
                .append(ext)
                .comment(comment_text(
                    self.comment,
                    &[
                        "masquerade LOCAL traffic for ",
                        name,
                        " external destinations",
                    ],
                ))
                .raw("-m addrtype --src-type LOCAL")
                .jump("KUBE-MARK-MASQ");
            self.rules
                .append(ext)
                .comment(comment_text(
                    self.comment,
                    &["route LOCAL traffic for ", name, " external destinations"],
                ))
                .raw("-m addrtype --src-type LOCAL")
                .jump(chains.cluster());
        }
        if facts.has_external {
            self.rules.append(ext).jump(facts.external_policy_chain);
        }
    }

    fn firewall_chain(&mut self, entry: &ServiceEntry, chains: &ServiceChains) {
        let fw = chains.firewall();
        self.chains.insert(fw);
        let svc = &entry.service;
        let mut allow_from_node = false;
        for cidr in &svc.load_balancer_source_ranges {
            self.rules
                .append(fw)
                .comment(comment_text(self.comment, &[self.name, " loadbalancer IP"]))
                .value("-s", cidr)
                .jump(chains.external());
            allow_from_node |= self
                .ctx
                .settings
                .node_ip
                .is_some_and(|ip| cidr.contains(&ip));
        }
        if allow_from_node {
            for ip in &svc.load_balancer_ips {
                self.rules
                    .append(fw)
                    .comment(comment_text(self.comment, &[self.name, " loadbalancer IP"]))
                    .ip("-s", ip)
                    .jump(chains.external());
            }
        }
        self.rules
            .append(fw)
            .comment(comment_text(
                self.comment,
                &[
                    "other traffic to ",
                    self.name,
                    " will be dropped by KUBE-PROXY-FIREWALL",
                ],
            ))
            .end();
    }

    fn balance(&mut self, chain: &str, endpoints: &[&Endpoint], affinity: Option<u32>) {
        self.chains.insert(chain);
        let large = self.ctx.large_cluster;
        if let Some(seconds) = affinity {
            for ep in endpoints {
                let (sep, addr) = self.endpoint_chains.get(self.endpoints, ep);
                let line = self.rules.append(chain);
                endpoint_comment(line, large, self.comment, self.name, addr)
                    .raw("-m recent --name")
                    .raw(sep)
                    .port("--rcheck --seconds", seconds)
                    .raw("--reap")
                    .jump(sep);
            }
        }
        let count = endpoints.len();
        for (index, ep) in endpoints.iter().enumerate() {
            let (sep, addr) = self.endpoint_chains.get(self.endpoints, ep);
            let line = self.rules.append(chain);
            let mut line = endpoint_comment(line, large, self.comment, self.name, addr);
            if index + 1 < count {
                line = line
                    .raw("-m statistic --mode random --probability")
                    .raw(self.probabilities.get(count - index));
            }
            line.jump(sep);
        }
    }

    fn endpoint_chain(&mut self, entry: &ServiceEntry, ep: &Endpoint) {
        let svc = &entry.service;
        let (sep, addr) = self.endpoint_chains.get(self.endpoints, ep);
        self.chains.push_new(sep);
        let large = self.ctx.large_cluster;
        let line = self.rules.append(sep);
        maybe_comment(line, large, self.name)
            .ip("-s", &ep.ip)
            .jump("KUBE-MARK-MASQ");
        let line = self.rules.append(sep);
        let mut line = maybe_comment(line, large, self.name);
        if svc.affinity_timeout.is_some() {
            line = line.raw("-m recent --name").raw(sep).raw("--set");
        }
        let dnat = match svc.name.protocol {
            Protocol::Tcp => "-m tcp -p tcp -j DNAT --to-destination",
            Protocol::Udp => "-m udp -p udp -j DNAT --to-destination",
            Protocol::Sctp => "-m sctp -p sctp -j DNAT --to-destination",
        };
        line.raw(dnat).raw(addr).end();
    }
}

/// `-m comment --comment "NAME -> ADDR"` on a balancing rule, unless the cluster is large.
fn endpoint_comment<'r>(
    line: RuleLine<'r>,
    large_cluster: bool,
    text: &mut String,
    name: &str,
    addr: &str,
) -> RuleLine<'r> {
    if large_cluster {
        return line;
    }
    line.comment(comment_text(text, &[name, " -> ", addr]))
}
/// Per-endpoint comments are left out in large clusters, as upstream does.
fn maybe_comment<'r>(line: RuleLine<'r>, large_cluster: bool, text: &str) -> RuleLine<'r> {
    if large_cluster {
        line
    } else {
        line.comment(text)
    }
}
