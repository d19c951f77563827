//! A port's rules in `KUBE-SERVICES`, `KUBE-NODEPORTS` and the filter chains.

use super::{comment_text, PortFacts, RenderContext};
use crate::chain_name::ServiceChains;
use crate::rule::RuleText;
use crate::settings::LOCALHOST_NODEPORT_COUNTER;
use kproxy_model::{IpFamily, ServiceEntry};
use std::net::IpAddr;

/// Writes one port's rules in `KUBE-SERVICES`, `KUBE-NODEPORTS` and the filter chains.
pub(super) struct DispatchWriter<'a> {
    pub(super) ctx: &'a RenderContext<'a>,
    pub(super) entry: &'a ServiceEntry,
    pub(super) name: &'a str,
    pub(super) chains: &'a ServiceChains,
    pub(super) facts: &'a PortFacts<'a>,
    pub(super) comment: &'a mut String,
    pub(super) dispatch: &'a mut RuleText,
    pub(super) filter: &'a mut RuleText,
}

impl DispatchWriter<'_> {
    pub(super) fn write(mut self) {
        let svc = &self.entry.service;
        let facts = self.facts;
        let chains = self.chains;
        if facts.has_internal {
            self.dispatch_to(" cluster IP", &svc.cluster_ip, facts.internal_chain);
        } else {
            self.reject_or_drop("KUBE-SERVICES", &svc.cluster_ip);
        }
        for ip in &svc.external_ips {
            if facts.has_endpoints {
                self.dispatch_to(" external IP", ip, chains.external());
            }
            if !facts.has_external {
                self.reject_or_drop("KUBE-EXTERNAL-SERVICES", ip);
            }
        }
        for ip in &svc.load_balancer_ips {
            if facts.has_endpoints {
                self.dispatch_to(" loadbalancer IP", ip, facts.lb_chain);
            }
            if facts.uses_fw {
                self.filter
                    .append("KUBE-PROXY-FIREWALL")
                    .comment(comment_text(
                        self.comment,
                        &[self.name, " traffic not accepted by ", chains.firewall()],
                    ))
                    .raw(facts.port_match)
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
                    &[self.name, " health check node port"],
                ))
                .raw("-m tcp -p tcp")
                .port("--dport", svc.health_check_node_port)
                .jump("ACCEPT");
        }
    }

    /// The `KUBE-SERVICES` rule that sends the port's traffic to `ip` on to `target`.
    fn dispatch_to(&mut self, suffix: &str, ip: &IpAddr, target: &str) {
        let facts = self.facts;
        self.dispatch
            .append("KUBE-SERVICES")
            .comment(comment_text(self.comment, &[self.name, suffix]))
            .raw(facts.port_match)
            .ip("-d", ip)
            .port("--dport", self.entry.service.port)
            .jump(target);
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
