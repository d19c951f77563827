//! The iptables proxier: a pure state machine that turns a snapshot and the set of changed
//! services into `iptables-restore` input, remembering what it believes the kernel holds.

use crate::chain_name::is_service_chain;
use crate::rule::RuleLine;
use crate::service::{render_service, RenderContext, ServiceRules};
use crate::settings::{
    IptablesSettings, INVALID_DROPPED_COUNTER, LARGE_CLUSTER_ENDPOINTS_THRESHOLD,
};
use kproxy_model::{IpFamily, NamespacedName, ServicePortName, Snapshot};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

/// The text to feed `iptables-restore --noflush`, and facts about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncPlan {
    /// The restore input: a `*filter` and a `*nat` section.
    pub restore: String,
    /// Whether this is a full sync (every chain written).
    pub full: bool,
    /// nat `-A` lines written by this sync.
    pub nat_rules_written: usize,
    /// nat rules kproxy believes are installed once this sync is applied.
    pub nat_rules_total: usize,
    /// filter `-A` lines written (the filter table is always written whole).
    pub filter_rules: usize,
    /// Chains this sync deletes.
    pub deleted_chains: Vec<String>,
    /// Service ports with internal policy Local and no local endpoints.
    pub no_local_internal: usize,
    /// Service ports with external policy Local and no local endpoints.
    pub no_local_external: usize,
}

struct CachedService {
    rules: Arc<ServiceRules>,
    large_cluster: bool,
}

/// Chains a sync will have written once it succeeds.
struct PendingBelief {
    written: Vec<String>,
    deleted: Vec<String>,
    full: bool,
}

/// Renders syncs for one IP family and tracks kernel state between them.
pub struct IptablesProxier {
    settings: IptablesSettings,
    cache: HashMap<ServicePortName, CachedService>,
    kernel_chains: BTreeSet<String>,
    need_full_sync: bool,
    last_full_sync: Option<Instant>,
    last_cleanup: Option<Instant>,
    pending: Option<PendingBelief>,
    partial_restore_failures: u64,
}

impl IptablesProxier {
    /// A proxier whose first sync is full.
    pub fn new(settings: IptablesSettings) -> Self {
        IptablesProxier {
            settings,
            cache: HashMap::new(),
            kernel_chains: BTreeSet::new(),
            need_full_sync: true,
            last_full_sync: None,
            last_cleanup: None,
            pending: None,
            partial_restore_failures: 0,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &IptablesSettings {
        &self.settings
    }

    /// Tells the proxier which nat chains exist in the kernel (read once at start), so
    /// stale service chains left by an earlier run are deleted by the first sync.
    pub fn set_kernel_chains(&mut self, chains: impl IntoIterator<Item = String>) {
        self.kernel_chains = chains.into_iter().filter(|c| is_service_chain(c)).collect();
    }

    /// Makes the next sync a full one (after a node change, or on request).
    pub fn force_full_sync(&mut self) {
        self.need_full_sync = true;
    }

    /// Forgets all cached rendering (node facts changed): the next sync re-renders all.
    pub fn invalidate(&mut self) {
        self.cache.clear();
        self.need_full_sync = true;
    }

    /// Sets when stale chains were last cleaned up (large-cluster mode only cleans up once
    /// per sync period).
    pub fn set_last_cleanup(&mut self, when: Option<Instant>) {
        self.last_cleanup = when;
    }

    /// Whether the next sync will be full.
    pub fn needs_full_sync(&self) -> bool {
        self.need_full_sync
    }

    /// Number of partial restores that failed so far.
    pub fn partial_restore_failures(&self) -> u64 {
        self.partial_restore_failures
    }

    /// Renders the next sync. `changed` names the services whose Service or EndpointSlices
    /// changed since the last successful sync. Report the outcome with [`Self::applied`].
    pub fn sync(
        &mut self,
        snapshot: &Snapshot,
        changed: &BTreeSet<NamespacedName>,
        now: Instant,
    ) -> SyncPlan {
        let full = self.need_full_sync
            || self
                .last_full_sync
                .is_none_or(|t| now.saturating_duration_since(t) > self.settings.full_sync_period);
        let large_cluster = snapshot.endpoint_count() > LARGE_CLUSTER_ENDPOINTS_THRESHOLD;
        self.cache.retain(|name, _| snapshot.entry(name).is_some());
        let mut sections = Sections::default();
        let mut plan = SyncPlan {
            full,
            ..SyncPlan::default()
        };
        let mut active: BTreeSet<String> = BTreeSet::new();
        let mut written: Vec<String> = Vec::new();
        let mut skipped_rules = 0;
        for (name, entry) in snapshot.entries() {
            let service_changed = changed.contains(&name.service);
            let rules = self.rules_for(name, entry, service_changed, full, large_cluster);
            sections.filter_rules.push_str(&rules.filter_rules);
            sections.nat_rules.push_str(&rules.dispatch_rules);
            plan.nat_rules_written += rules.dispatch_rule_count;
            plan.no_local_internal += usize::from(rules.no_local_internal);
            plan.no_local_external += usize::from(rules.no_local_external);
            active.extend(rules.chains.iter().cloned());
            if full || service_changed {
                for chain in &rules.chains {
                    sections.declare_nat(chain);
                }
                sections.chain_rules.push_str(&rules.chain_rules);
                plan.nat_rules_written += rules.chain_rule_count;
                written.extend(rules.chains.iter().cloned());
            } else {
                skipped_rules += rules.chain_rule_count;
            }
        }
        let cleanup = !large_cluster
            || self
                .last_cleanup
                .is_none_or(|t| now.saturating_duration_since(t) > self.settings.sync_period);
        if cleanup {
            self.last_cleanup = Some(now);
            plan.deleted_chains = self
                .kernel_chains
                .iter()
                .filter(|c| !active.contains(*c))
                .cloned()
                .collect();
        }
        plan.restore = sections.finish(&self.settings, &plan.deleted_chains);
        plan.nat_rules_written += sections.fixed_nat_rules;
        plan.filter_rules = sections.filter_rule_count;
        plan.nat_rules_total = plan.nat_rules_written + skipped_rules;
        self.pending = Some(PendingBelief {
            written,
            deleted: plan.deleted_chains.clone(),
            full,
        });
        if full {
            self.last_full_sync = Some(now);
        }
        plan
    }

    fn rules_for(
        &mut self,
        name: &ServicePortName,
        entry: &Arc<kproxy_model::ServiceEntry>,
        service_changed: bool,
        full: bool,
        large_cluster: bool,
    ) -> Arc<ServiceRules> {
        let reusable = self
            .cache
            .get(name)
            .filter(|cached| !service_changed && (!full || cached.large_cluster == large_cluster));
        if let Some(cached) = reusable {
            return Arc::clone(&cached.rules);
        }
        let ctx = RenderContext {
            settings: &self.settings,
            large_cluster,
        };
        let rules = Arc::new(render_service(&ctx, entry));
        self.cache.insert(
            name.clone(),
            CachedService {
                rules: Arc::clone(&rules),
                large_cluster,
            },
        );
        rules
    }

    /// Reports whether the last rendered sync was applied. On failure the next sync is
    /// full and the kernel is believed unchanged.
    pub fn applied(&mut self, ok: bool) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        if ok {
            for chain in pending.deleted {
                self.kernel_chains.remove(&chain);
            }
            self.kernel_chains.extend(pending.written);
            self.need_full_sync = false;
        } else {
            if !pending.full {
                self.partial_restore_failures += 1;
            }
            self.need_full_sync = true;
            self.last_full_sync = None;
        }
    }
}

/// The four buffers of a restore input, assembled in upstream's order.
#[derive(Default)]
struct Sections {
    filter_rules: String,
    nat_chains: String,
    nat_rules: String,
    chain_rules: String,
    fixed_nat_rules: usize,
    filter_rule_count: usize,
}

impl Sections {
    fn declare_nat(&mut self, chain: &str) {
        push_chain_line(&mut self.nat_chains, chain);
    }

    fn finish(&mut self, settings: &IptablesSettings, deleted: &[String]) -> String {
        let mark = &settings.masquerade_mark;
        let mut out = String::with_capacity(
            self.filter_rules.len() + self.nat_rules.len() + self.chain_rules.len() + 4096,
        );
        out.push_str("*filter\n");
        for chain in [
            "KUBE-SERVICES",
            "KUBE-EXTERNAL-SERVICES",
            "KUBE-FORWARD",
            "KUBE-NODEPORTS",
            "KUBE-PROXY-FIREWALL",
        ] {
            push_chain_line(&mut out, chain);
        }
        let ipv4 = settings.family == IpFamily::V4;
        let mut filter_fixed = String::new();
        if ipv4 && settings.localhost_node_ports {
            push_chain_line(&mut out, "KUBE-FIREWALL");
            RuleLine::append(&mut filter_fixed, "KUBE-FIREWALL")
                .comment("block incoming localnet connections")
                .raw("-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT")
                .jump("DROP");
        }
        out.push_str(&filter_fixed);
        out.push_str(&self.filter_rules);
        let mut forward = String::new();
        if !settings.conntrack_tcp_liberal {
            let line = RuleLine::append(&mut forward, "KUBE-FORWARD")
                .raw("-m conntrack --ctstate INVALID");
            let line = if settings.has_counter(INVALID_DROPPED_COUNTER) {
                line.raw("-m nfacct --nfacct-name")
                    .raw(INVALID_DROPPED_COUNTER)
            } else {
                line
            };
            line.jump("DROP");
        }
        RuleLine::append(&mut forward, "KUBE-FORWARD")
            .comment("kubernetes forwarding rules")
            .raw(&format!("-m mark --mark {mark}/{mark}"))
            .jump("ACCEPT");
        RuleLine::append(&mut forward, "KUBE-FORWARD")
            .comment("kubernetes forwarding conntrack rule")
            .raw("-m conntrack --ctstate RELATED,ESTABLISHED")
            .jump("ACCEPT");
        out.push_str(&forward);
        out.push_str("COMMIT\n");
        self.filter_rule_count = filter_fixed.matches('\n').count()
            + self.filter_rules.matches('\n').count()
            + forward.matches('\n').count();

        out.push_str("*nat\n");
        for chain in [
            "KUBE-SERVICES",
            "KUBE-NODEPORTS",
            "KUBE-POSTROUTING",
            "KUBE-MARK-MASQ",
        ] {
            push_chain_line(&mut out, chain);
        }
        out.push_str(&self.nat_chains);
        for chain in deleted {
            push_chain_line(&mut out, chain);
        }
        let mut fixed = String::new();
        RuleLine::append(&mut fixed, "KUBE-POSTROUTING")
            .raw(&format!("-m mark ! --mark {mark}/{mark}"))
            .jump("RETURN");
        RuleLine::append(&mut fixed, "KUBE-POSTROUTING")
            .raw(&format!("-j MARK --xor-mark {mark}"))
            .end();
        let masq = RuleLine::append(&mut fixed, "KUBE-POSTROUTING")
            .comment("kubernetes service traffic requiring SNAT")
            .raw("-j MASQUERADE");
        if settings.random_fully {
            masq.raw("--random-fully").end();
        } else {
            masq.end();
        }
        RuleLine::append(&mut fixed, "KUBE-MARK-MASQ")
            .raw(&format!("-j MARK --or-mark {mark}"))
            .end();
        out.push_str(&fixed);
        out.push_str(&self.nat_rules);
        out.push_str(&self.chain_rules);
        for chain in deleted {
            out.push_str("-X ");
            out.push_str(chain);
            out.push('\n');
        }
        let mut last = String::new();
        node_ports_jumps(settings, &mut last);
        out.push_str(&last);
        out.push_str("COMMIT\n");
        self.fixed_nat_rules = fixed.matches('\n').count() + last.matches('\n').count();
        out
    }
}

fn push_chain_line(out: &mut String, chain: &str) {
    out.push(':');
    out.push_str(chain);
    out.push_str(" - [0:0]\n");
}

const NODEPORTS_COMMENT: &str =
    "kubernetes service nodeports; NOTE: this must be the last rule in this chain";

/// The final `KUBE-SERVICES` rule(s) sending local-destination traffic to `KUBE-NODEPORTS`.
fn node_ports_jumps(settings: &IptablesSettings, out: &mut String) {
    let ipv6 = settings.family == IpFamily::V6;
    match &settings.node_port_ips {
        None => {
            let line = RuleLine::append(out, "KUBE-SERVICES")
                .comment(NODEPORTS_COMMENT)
                .raw("-m addrtype --dst-type LOCAL");
            let line = if ipv6 {
                line.raw("! -d ::1/128")
            } else if !settings.localhost_node_ports {
                line.raw("! -d 127.0.0.0/8")
            } else {
                line
            };
            line.jump("KUBE-NODEPORTS");
        }
        Some(ips) => {
            for ip in ips {
                if ip.is_loopback() && (ipv6 || !settings.localhost_node_ports) {
                    continue;
                }
                RuleLine::append(out, "KUBE-SERVICES")
                    .comment(NODEPORTS_COMMENT)
                    .value("-d", ip)
                    .jump("KUBE-NODEPORTS");
            }
        }
    }
}
