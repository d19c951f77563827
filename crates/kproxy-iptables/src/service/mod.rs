//! Rules for one service port: the dispatch rules in `KUBE-SERVICES`/`KUBE-NODEPORTS`, the
//! filter rules (REJECT/DROP/health-check ACCEPT), and the per-service chains
//! (`KUBE-EXT/FW/SVC/SVL/SEP`). Pure: model in, text out.

mod chains;
mod dispatch;
mod endpoints;

use crate::chain_name::{write_service_key, ServiceChains};
use crate::chain_names::ChainNames;
use crate::probability::Probabilities;
use crate::rule::RuleText;
use crate::settings::IptablesSettings;
use chains::ChainWriter;
use dispatch::DispatchWriter;
use endpoints::EndpointChains;
use kproxy_model::{
    select_endpoints, EndpointSelection, PackedText, Packer, Protocol, ServiceEntry,
};
use std::fmt::Write;

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
    pub(super) has_endpoints: bool,
    pub(super) has_internal: bool,
    pub(super) has_external: bool,
    pub(super) uses_fw: bool,
    pub(super) internal_chain: &'c str,
    pub(super) external_policy_chain: &'c str,
    pub(super) lb_chain: &'c str,
    /// REJECT without endpoints, DROP without local ones.
    pub(super) filter_target: &'static str,
    /// ` has no endpoints` or ` has no local endpoints`, after the port's name.
    pub(super) filter_reason: &'static str,
    /// `-m tcp -p tcp` and the like.
    pub(super) port_match: &'static str,
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
pub(super) fn port_match(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "-m tcp -p tcp",
        Protocol::Udp => "-m udp -p udp",
        Protocol::Sctp => "-m sctp -p sctp",
    }
}

/// Sets `out` to the text of a comment made of `parts`.
pub(super) fn comment_text<'o>(out: &'o mut String, parts: &[&str]) -> &'o str {
    out.clear();
    parts.iter().for_each(|part| out.push_str(part));
    out
}
