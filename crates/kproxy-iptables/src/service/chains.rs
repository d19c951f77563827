//! A port's own nat chains: `KUBE-EXT`, `KUBE-FW`, `KUBE-SVC`/`KUBE-SVL` and `KUBE-SEP`.

use super::endpoints::EndpointChains;
use super::{comment_text, port_match, PortFacts, RenderContext};
use crate::chain_name::ServiceChains;
use crate::chain_names::ChainNames;
use crate::probability::Probabilities;
use crate::rule::{RuleLine, RuleText};
use kproxy_model::{Endpoint, ServiceEntry};

/// Writes the per-service chains of one port.
pub(super) struct ChainWriter<'a> {
    pub(super) ctx: &'a RenderContext<'a>,
    pub(super) name: &'a str,
    pub(super) rules: &'a mut RuleText,
    pub(super) chains: &'a mut ChainNames,
    pub(super) comment: &'a mut String,
    pub(super) endpoint_chains: &'a EndpointChains,
    /// The port's endpoints, which the selection's references point into.
    pub(super) endpoints: &'a [Endpoint],
    pub(super) probabilities: &'a mut Probabilities,
}

impl ChainWriter<'_> {
    pub(super) fn internal_masquerade(&mut self, chain: &str, entry: &ServiceEntry) {
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

    pub(super) fn external_chain(
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

    pub(super) fn firewall_chain(&mut self, entry: &ServiceEntry, chains: &ServiceChains) {
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

    pub(super) fn balance(&mut self, chain: &str, endpoints: &[&Endpoint], affinity: Option<u32>) {
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

    pub(super) fn endpoint_chain(&mut self, entry: &ServiceEntry, ep: &Endpoint) {
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
        line.raw(port_match(svc.name.protocol))
            .raw("-j DNAT --to-destination")
            .raw(addr)
            .end();
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
