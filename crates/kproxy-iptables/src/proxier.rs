//! The iptables proxier: a pure state machine that turns a snapshot and the set of changed
//! services into `iptables-restore` input, remembering what it believes the kernel holds.

use crate::chain_name::is_service_chain;
use crate::restore_text::{PortText, RestoreText};
use crate::rule::RuleLine;
use crate::service::{RenderContext, ServiceRenderer, ServiceRules};
use crate::settings::{
    IptablesSettings, INVALID_DROPPED_COUNTER, LARGE_CLUSTER_ENDPOINTS_THRESHOLD,
};
use kproxy_model::{IpFamily, NamespacedName, ServiceEntry, ServicePortName, Snapshot};
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

/// The text to feed `iptables-restore --noflush`, and facts about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncPlan {
    /// The restore input: a `*filter` and a `*nat` section.
    pub restore: RestoreText,
    /// Restores to apply, in order, before `restore` (only on large full syncs with
    /// `max_services_per_restore`): each creates and fills the chains of some service
    /// ports, which nothing references until `restore` itself installs the dispatch rules.
    pub chunks: Vec<RestoreText>,
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

/// A service port's name as the proxier's maps and beliefs hold it: shared, so that a
/// full sync's bookkeeping copies no names.
type PortKey = Arc<ServicePortName>;

struct CachedService {
    rules: Arc<ServiceRules>,
    large_cluster: bool,
}

/// What a sync changes in the kernel once it succeeds.
struct PendingBelief {
    written: Vec<(PortKey, Arc<ServiceRules>)>,
    removed: Vec<PortKey>,
    newly_stale: Vec<String>,
    deleted: Vec<String>,
    full: bool,
    nat_rules_total: usize,
}

/// Renders syncs for one IP family and tracks kernel state between them.
pub struct IptablesProxier {
    settings: IptablesSettings,
    cache: FxHashMap<PortKey, CachedService>,
    /// The per-service chains believed in the kernel, by the port that owns them.
    kernel: BTreeMap<PortKey, Arc<ServiceRules>>,
    /// Chains believed in the kernel that no service port uses any more.
    stale: BTreeSet<String>,
    need_full_sync: bool,
    last_full_sync: Option<Instant>,
    last_cleanup: Option<Instant>,
    pending: Option<PendingBelief>,
    partial_restore_failures: u64,
    nat_rules_total: usize,
}

impl IptablesProxier {
    /// A proxier whose first sync is full.
    pub fn new(settings: IptablesSettings) -> Self {
        IptablesProxier {
            settings,
            cache: FxHashMap::default(),
            kernel: BTreeMap::new(),
            stale: BTreeSet::new(),
            need_full_sync: true,
            last_full_sync: None,
            last_cleanup: None,
            pending: None,
            partial_restore_failures: 0,
            nat_rules_total: 0,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &IptablesSettings {
        &self.settings
    }

    /// Tells the proxier which nat chains exist in the kernel (read once at start), so
    /// stale service chains left by an earlier run are deleted by the first sync.
    pub fn set_kernel_chains(&mut self, chains: impl IntoIterator<Item = String>) {
        self.stale = chains.into_iter().filter(|c| is_service_chain(c)).collect();
    }

    /// Starts over with new settings (node facts changed), keeping what is known to be in
    /// the kernel: every service chain this proxier wrote or found becomes a stale chain
    /// that the next (full) sync deletes unless it still uses it. Nothing is read again.
    pub fn change_settings(&mut self, settings: IptablesSettings) {
        let mut stale = std::mem::take(&mut self.stale);
        for rules in self.kernel.values() {
            stale.extend(rules.chains.iter().map(str::to_string));
        }
        let partial_restore_failures = self.partial_restore_failures;
        *self = IptablesProxier::new(settings);
        self.stale = stale;
        self.partial_restore_failures = partial_restore_failures;
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

    /// Whether a sync at `now` will be full: one is needed, or the full sync period has
    /// passed since the last.
    pub fn sync_at_is_full(&self, now: Instant) -> bool {
        self.need_full_sync
            || self
                .last_full_sync
                .is_none_or(|t| now.saturating_duration_since(t) > self.settings.full_sync_period)
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
        let full = self.sync_at_is_full(now);
        let large_cluster = snapshot.endpoint_count() > LARGE_CLUSTER_ENDPOINTS_THRESHOLD;
        if !full && self.settings.incremental_dispatch {
            return self.sync_incremental(snapshot, changed, now, large_cluster);
        }
        let mut plan = SyncPlan {
            full,
            ..SyncPlan::default()
        };
        let mut pending = PendingBelief {
            written: Vec::new(),
            removed: self.removed_ports(snapshot, changed, full),
            newly_stale: Vec::new(),
            deleted: Vec::new(),
            full,
            nat_rules_total: 0,
        };
        for name in &pending.removed {
            if let Some(old) = self.kernel.get(name) {
                pending
                    .newly_stale
                    .extend(old.chains.iter().map(str::to_string));
            }
            self.cache.remove(name);
        }
        self.render_changed(snapshot, changed, full, large_cluster);
        let mut sections = Sections::with_capacity(snapshot.len());
        let chunk_size = self
            .settings
            .max_services_per_restore
            .filter(|n| full && *n > 0 && snapshot.len() > *n);
        let mut chunk = Sections::default();
        let mut in_chunk = 0;
        let mut skipped_rules = 0;
        for (name, _) in snapshot.entries() {
            let service_changed = changed.contains(&name.service);
            let Some((key, cached)) = self.cache.get_key_value(name) else {
                continue;
            };
            let rules = Arc::clone(&cached.rules);
            sections.every_port.push(Arc::clone(&rules));
            plan.nat_rules_written += rules.dispatch_rule_count;
            plan.no_local_internal += usize::from(rules.no_local_internal);
            plan.no_local_external += usize::from(rules.no_local_external);
            if full || service_changed {
                let target = if chunk_size.is_some() {
                    &mut chunk
                } else {
                    &mut sections
                };
                target.ports.push(Arc::clone(&rules));
                in_chunk += 1;
                if chunk_size.is_some_and(|n| in_chunk >= n) {
                    plan.chunks
                        .push(chunk.nat_only(&self.settings.masquerade_mark));
                    in_chunk = 0;
                }
                plan.nat_rules_written += rules.chain_rule_count;
                if let Some(old) = self.kernel.get(name) {
                    if !Arc::ptr_eq(old, &rules) {
                        pending.newly_stale.extend(
                            old.chains
                                .iter()
                                .filter(|c| !rules.chains.contains(c))
                                .map(str::to_string),
                        );
                    }
                }
                pending.written.push((Arc::clone(key), rules));
            } else {
                skipped_rules += rules.chain_rule_count;
            }
        }
        if in_chunk > 0 {
            plan.chunks
                .push(chunk.nat_only(&self.settings.masquerade_mark));
        }
        let cleanup = !large_cluster
            || self
                .last_cleanup
                .is_none_or(|t| now.saturating_duration_since(t) > self.settings.sync_period);
        if cleanup {
            self.last_cleanup = Some(now);
            pending.deleted = self.chains_to_delete(&pending);
            plan.deleted_chains = pending.deleted.clone();
        }
        plan.restore = sections.finish(&self.settings, &plan.deleted_chains);
        plan.nat_rules_written += sections.fixed_nat_rules;
        plan.filter_rules = sections.filter_rule_count;
        plan.nat_rules_total = plan.nat_rules_written + skipped_rules;
        pending.nat_rules_total = plan.nat_rules_total;
        self.pending = Some(pending);
        if full {
            self.last_full_sync = Some(now);
        }
        plan
    }

    /// A partial sync that touches only the changed services: their chains are rewritten,
    /// and their dispatch and filter rules are deleted and inserted one by one.
    fn sync_incremental(
        &mut self,
        snapshot: &Snapshot,
        changed: &BTreeSet<NamespacedName>,
        now: Instant,
        large_cluster: bool,
    ) -> SyncPlan {
        let mut pending = PendingBelief {
            written: Vec::new(),
            removed: self.removed_ports(snapshot, changed, false),
            newly_stale: Vec::new(),
            deleted: Vec::new(),
            full: false,
            nat_rules_total: self.nat_rules_total,
        };
        let ctx = RenderContext::new(&self.settings, large_cluster);
        let mut filter = String::new();
        let mut nat_chains = String::new();
        let mut nat_rules = String::new();
        let mut written_rules = 0;
        let mut no_local = (0, 0);
        let mut renderer = ServiceRenderer::default();
        for service in changed {
            for (name, entry) in snapshot.service_entries(service) {
                let rules = Arc::new(renderer.render(&ctx, entry));
                no_local.0 += usize::from(rules.no_local_internal);
                no_local.1 += usize::from(rules.no_local_external);
                let old = self.kernel.get(name);
                let old_filter = old.map_or("", |o| o.filter_rules.as_str());
                let old_dispatch = old.map_or("", |o| o.dispatch_rules.as_str());
                diff_lines(&mut filter, old_filter, &rules.filter_rules, false);
                written_rules +=
                    diff_lines(&mut nat_rules, old_dispatch, &rules.dispatch_rules, true);
                for chain in rules.chains.iter() {
                    push_chain_line(&mut nat_chains, chain);
                }
                written_rules += rules.chain_rule_count;
                let old_count = old.map_or(0, |o| o.chain_rule_count + o.dispatch_rule_count);
                pending.nat_rules_total =
                    pending.nat_rules_total + rules.chain_rule_count + rules.dispatch_rule_count
                        - old_count.min(pending.nat_rules_total);
                if let Some(old) = old {
                    pending.newly_stale.extend(
                        old.chains
                            .iter()
                            .filter(|c| !rules.chains.contains(c))
                            .map(str::to_string),
                    );
                }
                let key = Arc::new(name.clone());
                self.cache.insert(
                    Arc::clone(&key),
                    CachedService {
                        rules: Arc::clone(&rules),
                        large_cluster,
                    },
                );
                pending.written.push((key, rules));
            }
        }
        for name in &pending.removed {
            self.cache.remove(name);
            if let Some(old) = self.kernel.get(name) {
                diff_lines(&mut filter, &old.filter_rules, "", false);
                diff_lines(&mut nat_rules, &old.dispatch_rules, "", true);
                pending
                    .newly_stale
                    .extend(old.chains.iter().map(str::to_string));
                pending.nat_rules_total = pending
                    .nat_rules_total
                    .saturating_sub(old.chain_rule_count + old.dispatch_rule_count);
            }
        }
        let cleanup = !large_cluster
            || self
                .last_cleanup
                .is_none_or(|t| now.saturating_duration_since(t) > self.settings.sync_period);
        if cleanup {
            self.last_cleanup = Some(now);
            pending.deleted = self.chains_to_delete(&pending);
        }
        let mut restore = String::with_capacity(filter.len() + nat_rules.len() + 256);
        restore.push_str("*filter\n");
        restore.push_str(&filter);
        restore.push_str("COMMIT\n*nat\n");
        restore.push_str(&nat_chains);
        for chain in &pending.deleted {
            push_chain_line(&mut restore, chain);
        }
        restore.push_str(&nat_rules);
        let mut restore = RestoreText::from(restore);
        let written: Arc<[Arc<ServiceRules>]> = pending
            .written
            .iter()
            .map(|(_, rules)| Arc::clone(rules))
            .collect();
        restore.push_port_text(written, PortText::ChainRules);
        let mut tail = String::new();
        for chain in &pending.deleted {
            tail.push_str("-X ");
            tail.push_str(chain);
            tail.push('\n');
        }
        tail.push_str("COMMIT\n");
        restore.push_text(tail);
        let plan = SyncPlan {
            restore,
            chunks: Vec::new(),
            full: false,
            nat_rules_written: written_rules,
            nat_rules_total: pending.nat_rules_total,
            filter_rules: 0,
            deleted_chains: pending.deleted.clone(),
            no_local_internal: no_local.0,
            no_local_external: no_local.1,
        };
        self.pending = Some(pending);
        plan
    }

    /// Ports believed in the kernel that the snapshot no longer has: on a full sync all of
    /// them, otherwise those of the changed services.
    fn removed_ports(
        &self,
        snapshot: &Snapshot,
        changed: &BTreeSet<NamespacedName>,
        full: bool,
    ) -> Vec<PortKey> {
        let gone = |name: &&PortKey| snapshot.entry(name).is_none();
        if full {
            return self.kernel.keys().filter(gone).cloned().collect();
        }
        changed
            .iter()
            .flat_map(|service| {
                self.kernel
                    .range(port_range_start(service)..)
                    .map(|(name, _)| name)
                    .take_while(move |name| &name.service == service)
            })
            .filter(gone)
            .cloned()
            .collect()
    }

    /// Stale chains to delete now: those already stale plus those this sync makes stale,
    /// except any that a written port uses again (a full sync writes every port, so
    /// chains found in the kernel at start that are still in use are kept).
    fn chains_to_delete(&self, pending: &PendingBelief) -> Vec<String> {
        if self.stale.is_empty() && pending.newly_stale.is_empty() {
            return Vec::new();
        }
        let reused: FxHashSet<&str> = pending
            .written
            .iter()
            .flat_map(|(_, rules)| rules.chains.iter())
            .collect();
        let deleted: BTreeSet<&String> = self
            .stale
            .iter()
            .chain(pending.newly_stale.iter())
            .filter(|c| !reused.contains(c.as_str()))
            .collect();
        deleted.into_iter().cloned().collect()
    }

    /// Renders every port whose cached rules cannot be reused, on all cores when there
    /// are many (the first sync of a large cluster).
    fn render_changed(
        &mut self,
        snapshot: &Snapshot,
        changed: &BTreeSet<NamespacedName>,
        full: bool,
        large_cluster: bool,
    ) {
        let stale_cache = |name: &ServicePortName| match self.cache.get(name) {
            None => true,
            Some(cached) => {
                changed.contains(&name.service) || (full && cached.large_cluster != large_cluster)
            }
        };
        let todo: Vec<(&ServicePortName, &Arc<ServiceEntry>)> = snapshot
            .entries()
            .filter(|(name, _)| stale_cache(name))
            .collect();
        let ctx = RenderContext::new(&self.settings, large_cluster);
        let rendered = render_in_parallel(&ctx, &todo);
        self.cache.reserve(rendered.len());
        for ((name, _), rules) in todo.into_iter().zip(rendered) {
            let key = Arc::new(name.clone());
            let cached = CachedService {
                rules: Arc::new(rules),
                large_cluster,
            };
            self.cache.insert(key, cached);
        }
    }

    /// Reports whether the last rendered sync was applied. On failure the next sync is
    /// full and the kernel is believed unchanged.
    pub fn applied(&mut self, ok: bool) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        if ok {
            for name in &pending.removed {
                self.kernel.remove(name);
            }
            self.stale.extend(pending.newly_stale);
            for chain in &pending.deleted {
                self.stale.remove(chain);
            }
            // A chain found in the kernel at start (or kept from before a settings change)
            // that a port has now written is in use, not stale.
            for (name, rules) in pending.written {
                for chain in rules.chains.iter() {
                    self.stale.remove(chain);
                }
                self.kernel.insert(name, rules);
            }
            self.need_full_sync = false;
            self.nat_rules_total = pending.nat_rules_total;
        } else {
            if !pending.full {
                self.partial_restore_failures += 1;
            }
            self.need_full_sync = true;
            self.last_full_sync = None;
        }
    }
}

/// Writes the rule changes that turn `old` into `new` (both `-A …` lines): `-D` for each
/// line only in `old`, then each line only in `new`, as `-I CHAIN 1 …` when `insert` (so a
/// rule lands above `KUBE-SERVICES`' final NodePort jump) or as `-A`. Returns the number of
/// rules added.
fn diff_lines(out: &mut String, old: &str, new: &str, insert: bool) -> usize {
    let mut added = 0;
    for line in old.lines() {
        if !new.lines().any(|n| n == line) {
            out.push_str("-D");
            out.push_str(&line[2..]);
            out.push('\n');
        }
    }
    for line in new.lines() {
        if old.lines().any(|o| o == line) {
            continue;
        }
        added += 1;
        match line
            .strip_prefix("-A ")
            .and_then(|rest| rest.split_once(' '))
        {
            Some((chain, rest)) if insert && chain == "KUBE-SERVICES" => {
                out.push_str("-I KUBE-SERVICES 1 ");
                out.push_str(rest);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    added
}

/// Below this many ports, rendering stays on the calling thread.
const PARALLEL_RENDER_MIN: usize = 512;

/// Each port's rules, rendered on all cores when there are many. The rendering threads
/// allocate as little as they can: the agent runs with one malloc arena, which they share.
fn render_in_parallel(
    ctx: &RenderContext<'_>,
    todo: &[(&ServicePortName, &Arc<ServiceEntry>)],
) -> Vec<ServiceRules> {
    let render_part = |part: &[(&ServicePortName, &Arc<ServiceEntry>)]| {
        let mut renderer = ServiceRenderer::default();
        part.iter()
            .map(|(_, entry)| renderer.render(ctx, entry))
            .collect::<Vec<_>>()
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if todo.len() < PARALLEL_RENDER_MIN || threads < 2 {
        return render_part(todo);
    }
    let chunk = todo.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = todo
            .chunks(chunk)
            .map(|part| scope.spawn(move || render_part(part)))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

fn port_range_start(service: &NamespacedName) -> ServicePortName {
    ServicePortName {
        service: service.clone(),
        port: String::new(),
        protocol: kproxy_model::Protocol::Tcp,
    }
}

/// The parts of a restore input, assembled in upstream's order; the service ports' chain
/// declarations and rules stay shared with the render cache.
#[derive(Default)]
struct Sections {
    /// Every service port: their filter and dispatch rules are written on every sync.
    every_port: Vec<Arc<ServiceRules>>,
    /// Service ports whose chains this restore declares and fills.
    ports: Vec<Arc<ServiceRules>>,
    fixed_nat_rules: usize,
    filter_rule_count: usize,
}

impl Sections {
    fn with_capacity(ports: usize) -> Self {
        Sections {
            every_port: Vec::with_capacity(ports),
            ..Sections::default()
        }
    }

    /// A nat-only restore of the chains collected so far; empties the buffers. It also
    /// (re)writes `KUBE-MARK-MASQ`, which the endpoint chains jump to: on the first sync it
    /// does not exist yet, and flushing and refilling it in one commit never leaves it
    /// empty for a packet to see.
    fn nat_only(&mut self, mark: &str) -> RestoreText {
        let mut head = String::with_capacity(96);
        head.push_str("*nat\n");
        push_chain_line(&mut head, "KUBE-MARK-MASQ");
        let mut out = RestoreText::from(head);
        let ports: Arc<[Arc<ServiceRules>]> = std::mem::take(&mut self.ports).into();
        out.push_port_text(Arc::clone(&ports), PortText::Declarations);
        let mut mark_rule = String::new();
        RuleLine::append(&mut mark_rule, "KUBE-MARK-MASQ")
            .raw(&format!("-j MARK --or-mark {mark}"))
            .end();
        out.push_text(mark_rule);
        out.push_port_text(ports, PortText::ChainRules);
        out.push_text("COMMIT\n".to_string());
        out
    }

    fn finish(&mut self, settings: &IptablesSettings, deleted: &[String]) -> RestoreText {
        let mark = &settings.masquerade_mark;
        let mut out = String::with_capacity(4096);
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
        let every_port: Arc<[Arc<ServiceRules>]> = std::mem::take(&mut self.every_port).into();
        self.filter_rule_count = filter_fixed.matches('\n').count()
            + every_port
                .iter()
                .map(|rules| rules.filter_rules.matches('\n').count())
                .sum::<usize>();
        let mut restore = RestoreText::from(out);
        restore.push_port_text(Arc::clone(&every_port), PortText::Filter);
        let mut out = String::with_capacity(4096);
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
        self.filter_rule_count += forward.matches('\n').count();

        out.push_str("*nat\n");
        for chain in [
            "KUBE-SERVICES",
            "KUBE-NODEPORTS",
            "KUBE-POSTROUTING",
            "KUBE-MARK-MASQ",
        ] {
            push_chain_line(&mut out, chain);
        }
        restore.push_text(out);
        let ports: Arc<[Arc<ServiceRules>]> = std::mem::take(&mut self.ports).into();
        restore.push_port_text(Arc::clone(&ports), PortText::Declarations);
        let mut out = String::with_capacity(4096);
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
        restore.push_text(out);
        restore.push_port_text(every_port, PortText::Dispatch);
        restore.push_port_text(ports, PortText::ChainRules);
        let mut tail = String::new();
        for chain in deleted {
            tail.push_str("-X ");
            tail.push_str(chain);
            tail.push('\n');
        }
        let mut last = String::new();
        node_ports_jumps(settings, &mut last);
        tail.push_str(&last);
        tail.push_str("COMMIT\n");
        restore.push_text(tail);
        self.fixed_nat_rules = fixed.matches('\n').count() + last.matches('\n').count();
        restore
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
