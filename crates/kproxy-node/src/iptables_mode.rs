//! The iptables mode: one [`IptablesProxier`] per family, applied through the iptables
//! tools with `--noflush`; jump rules and canary chains ensured (while the full sync
//! renders) before each full sync the table stamps do not vouch for;
//! kernel chains read once at start (node facts that change the settings keep what is
//! known).
//! Every sync period the canary chains, the fixed chains, the jump rules and every service
//! chain written so far ([`WrittenChains`]) are checked; damage makes the next sync full.

use crate::chain_audit::WrittenChains;
use crate::config::{AgentConfig, DetectLocal, NodePortAddresses};
use crate::iptables_jumps::{ensure_jumps, jump_args};
use crate::kernel::{IptablesKernel, KernelError, TableStamp};
use crate::mode::{FamilySync, ProxyMode, SyncInput, TableRules};
use ipnet::IpNet;
use kproxy_iptables::{
    jump_rules, mark_for_bit, IptablesProxier, IptablesSettings, LocalDetector, SyncPlan,
};
use kproxy_model::{IpFamily, NamespacedName, NodeFacts, Snapshot};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// kube-proxy's canary chain; its disappearance means someone flushed the tables.
pub const CANARY_CHAIN: &str = "KUBE-PROXY-CANARY";
/// Tables holding a canary chain.
pub const CANARY_TABLES: [&str; 3] = ["mangle", "nat", "filter"];

/// The node settings the iptables mode derives its rulesets from.
#[derive(Debug, Clone, PartialEq)]
pub struct IptablesModeSettings {
    /// This node's name.
    pub node_name: String,
    /// Cluster CIDRs.
    pub cluster_cidrs: Vec<IpNet>,
    /// Pod traffic detection.
    pub detect_local: DetectLocal,
    /// `--masquerade-all`.
    pub masquerade_all: bool,
    /// `--iptables-masquerade-bit`.
    pub masquerade_bit: u32,
    /// `--iptables-localhost-nodeports`.
    pub localhost_node_ports: bool,
    /// `--nodeport-addresses`.
    pub node_port_addresses: NodePortAddresses,
    /// `--iptables-sync-period`.
    pub sync_period: Duration,
    /// `--bind-address`, when set.
    pub bind_address: Option<IpAddr>,
    /// `--conntrack-tcp-be-liberal`.
    pub tcp_be_liberal: bool,
    /// The host's interface addresses (for `--nodeport-addresses` CIDRs).
    pub host_addresses: Vec<IpAddr>,
}

impl IptablesModeSettings {
    /// The settings from the agent's configuration and the host's addresses.
    pub fn from_config(config: &AgentConfig, host_addresses: Vec<IpAddr>) -> Self {
        IptablesModeSettings {
            node_name: config.node_name.clone(),
            cluster_cidrs: config.cluster_cidrs.clone(),
            detect_local: config.detect_local.clone(),
            masquerade_all: config.masquerade_all,
            masquerade_bit: config.masquerade_bit,
            localhost_node_ports: config.localhost_node_ports,
            node_port_addresses: config.node_port_addresses.clone(),
            sync_period: config.sync_period,
            bind_address: config.bind_address,
            tcp_be_liberal: config.conntrack.tcp_be_liberal,
            host_addresses,
        }
    }

    /// The node's IP of a family: `--bind-address`, else the Node's first address.
    pub fn node_ip(&self, family: IpFamily, node: Option<&NodeFacts>) -> Option<IpAddr> {
        self.bind_address
            .filter(|ip| IpFamily::of(ip) == family)
            .or_else(|| {
                node?
                    .addresses
                    .iter()
                    .copied()
                    .find(|ip| IpFamily::of(ip) == family)
            })
    }

    /// The NodePort CIDRs of a family; `None` means every local address.
    pub fn node_port_cidrs(
        &self,
        family: IpFamily,
        node: Option<&NodeFacts>,
    ) -> Option<Vec<IpNet>> {
        let cidrs: Vec<IpNet> = match &self.node_port_addresses {
            NodePortAddresses::All => Vec::new(),
            NodePortAddresses::Primary => self
                .node_ip(family, node)
                .and_then(|ip| IpNet::new(ip, if ip.is_ipv4() { 32 } else { 128 }).ok())
                .into_iter()
                .collect(),
            NodePortAddresses::Cidrs(cidrs) => cidrs
                .iter()
                .copied()
                .filter(|c| IpFamily::of_net(c) == family)
                .collect(),
        };
        if cidrs.is_empty() || cidrs.iter().any(|c| c.prefix_len() == 0) {
            None
        } else {
            Some(cidrs)
        }
    }

    /// Whether NodePorts are accepted on 127.0.0.1 (so `route_localnet` is needed).
    pub fn localhost_node_ports_active(&self, node: Option<&NodeFacts>) -> bool {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        self.localhost_node_ports
            && self
                .node_port_cidrs(IpFamily::V4, node)
                .is_none_or(|cidrs| cidrs.iter().any(|c| c.contains(&loopback)))
    }

    /// How pod traffic is recognised for a family (iptables and ipvs modes).
    pub fn local_detector(&self, family: IpFamily, node: Option<&NodeFacts>) -> LocalDetector {
        let of_family = |cidrs: Vec<IpNet>| {
            let cidrs: Vec<IpNet> = cidrs
                .into_iter()
                .filter(|c| IpFamily::of_net(c) == family)
                .collect();
            if cidrs.is_empty() {
                LocalDetector::None
            } else {
                LocalDetector::Cidrs(cidrs)
            }
        };
        match &self.detect_local {
            DetectLocal::ClusterCidr => of_family(self.cluster_cidrs.clone()),
            DetectLocal::NodeCidr => of_family(
                node.map(|n| {
                    n.pod_cidrs
                        .iter()
                        .filter_map(|c| kproxy_model::parse_cidr_sloppy(c))
                        .collect()
                })
                .unwrap_or_default(),
            ),
            DetectLocal::BridgeInterface(name) => LocalDetector::Interface(name.clone()),
            DetectLocal::InterfaceNamePrefix(prefix) => {
                LocalDetector::Interface(format!("{prefix}+"))
            }
        }
    }

    /// The renderer's settings for one family.
    pub fn for_family(
        &self,
        family: IpFamily,
        node: Option<&NodeFacts>,
        random_fully: bool,
    ) -> IptablesSettings {
        let mut settings = IptablesSettings::new(family, &self.node_name);
        settings.topology.zone = node.and_then(|n| n.zone.clone());
        settings.node_ip = self.node_ip(family, node);
        settings.local_detector = self.local_detector(family, node);
        settings.masquerade_all = self.masquerade_all;
        settings.masquerade_mark = mark_for_bit(self.masquerade_bit);
        settings.node_port_ips = self.node_port_cidrs(family, node).map(|cidrs| {
            self.host_addresses
                .iter()
                .copied()
                .filter(|ip| cidrs.iter().any(|c| c.contains(ip)))
                .collect()
        });
        settings.localhost_node_ports = self.localhost_node_ports_active(node);
        settings.conntrack_tcp_liberal = self.tcp_be_liberal;
        settings.random_fully = random_fully;
        settings.sync_period = self.sync_period;
        settings.incremental_dispatch = true;
        settings
    }
}

/// One family's tools, as handed to [`IptablesMode::new`].
pub struct IptablesFamilyKernel {
    /// The family.
    pub family: IpFamily,
    /// Its tools.
    pub kernel: Box<dyn IptablesKernel>,
    /// Whether its iptables supports `MASQUERADE --random-fully` (1.6.2 and later).
    pub random_fully: bool,
    /// Send large full syncs in several restores (the nft backend: its `--noflush`
    /// restore costs the square of its size).
    pub chunked_full_syncs: bool,
}

/// Service ports per restore when full syncs are chunked. At 10,000 services on
/// iptables-nft 1.8.9, 125 gave the fastest first sync: 11.7–12.6 s, against 13.9–14.5 s
/// with 250, 23 s with 500 (the square of the size) and 13.6–18.0 s with 64 or 32 (a
/// process and a cache read per restore).
const SERVICES_PER_RESTORE: usize = 125;

/// Above this many service chains the periodic check reads only the canaries, fixed chains
/// and jumps, not the whole nat table: `iptables-save` of a table that size takes seconds
/// on iptables-legacy and minutes (or crashes) on iptables-nft, and it holds the xtables
/// lock meanwhile. About 1,800 services with 10 endpoints each.
const AUDITED_CHAINS_MAX: usize = 20_000;

struct FamilyState {
    family: IpFamily,
    kernel: Box<dyn IptablesKernel>,
    random_fully: bool,
    chunked_full_syncs: bool,
    proxier: IptablesProxier,
    synced_once: bool,
    written: WrittenChains,
    /// The stamps of [`CANARY_TABLES`] when they were last known to hold what kproxy
    /// wrote (jumps, canaries and chains checked, or written by kproxy since): while they
    /// are unchanged, checks and full syncs need not list rules (iptables-legacy reads a
    /// whole table to list one chain).
    verified: Option<Vec<TableStamp>>,
}

/// The iptables proxy mode.
pub struct IptablesMode {
    settings: IptablesModeSettings,
    families: Vec<FamilyState>,
}

impl IptablesMode {
    /// Builds one proxier per family and reads each family's nat chains once, so stale
    /// chains from an earlier run are deleted by the first sync.
    pub fn new(
        settings: IptablesModeSettings,
        kernels: Vec<IptablesFamilyKernel>,
        node: Option<&NodeFacts>,
    ) -> Result<Self, KernelError> {
        let mut families = Vec::new();
        for mut entry in kernels {
            let mut family_settings = settings.for_family(entry.family, node, entry.random_fully);
            family_settings.max_services_per_restore =
                entry.chunked_full_syncs.then_some(SERVICES_PER_RESTORE);
            let proxier = new_proxier(family_settings, entry.kernel.as_mut())?;
            families.push(FamilyState {
                family: entry.family,
                kernel: entry.kernel,
                random_fully: entry.random_fully,
                chunked_full_syncs: entry.chunked_full_syncs,
                proxier,
                synced_once: false,
                written: WrittenChains::with_limit(AUDITED_CHAINS_MAX),
                verified: None,
            });
        }
        Ok(IptablesMode { settings, families })
    }

    fn family_mut(&mut self, family: IpFamily) -> Option<&mut FamilyState> {
        self.families.iter_mut().find(|f| f.family == family)
    }
}

fn new_proxier(
    settings: IptablesSettings,
    kernel: &mut dyn IptablesKernel,
) -> Result<IptablesProxier, KernelError> {
    let chains = kernel.chain_names("nat")?;
    let mut proxier = IptablesProxier::new(settings);
    proxier.set_kernel_chains(chains);
    Ok(proxier)
}

/// A check the kernel tools could not answer (the xtables lock held too long by another
/// program, say) is not damage: it is logged and tried again at the next check, instead of
/// starting a full sync that would need the same lock for much longer.
fn unchecked(family: IpFamily, what: &str, error: &KernelError) {
    crate::logging::warn(format!(
        "{family:?}: could not check {what}: {error}; checking again next period"
    ));
}

impl FamilyState {
    fn sync(
        &mut self,
        snapshot: &Snapshot,
        changed: &BTreeSet<NamespacedName>,
        now: Instant,
    ) -> FamilySync {
        let stamps = self.stamps();
        let trusted = stamps.is_some() && stamps == self.verified;
        let (plan, mut result) = if !trusted && self.proxier.sync_at_is_full(now) {
            self.render_ensuring_jumps(snapshot, changed, now)
        } else {
            (self.proxier.sync(snapshot, changed, now), Ok(()))
        };
        let mut report = FamilySync {
            full: plan.full,
            nat: TableRules {
                total: plan.nat_rules_total,
                written: plan.nat_rules_written,
            },
            filter: TableRules {
                total: plan.filter_rules,
                written: plan.filter_rules,
            },
            no_local_internal: plan.no_local_internal,
            no_local_external: plan.no_local_external,
            ..FamilySync::default()
        };
        for (index, chunk) in plan.chunks.iter().enumerate() {
            if result.is_err() {
                break;
            }
            result = self.kernel.restore_text(chunk);
            if result.is_ok() {
                self.written.applied_restore(chunk, plan.full && index == 0);
            }
        }
        if result.is_ok() {
            result = self.kernel.restore_text(&plan.restore);
        }
        report.ok = result.is_ok();
        // What kproxy wrote on top of a verified table, or a full sync that made sure of
        // the jumps, leaves a table as kproxy wants it.
        self.verified = if report.ok && (trusted || plan.full) {
            self.stamps()
        } else {
            None
        };
        if report.ok {
            self.written
                .applied_restore(&plan.restore, plan.full && plan.chunks.is_empty());
        }
        report.partial_failed = !plan.full && !report.ok;
        report.error = result.err().map(|e| e.to_string());
        self.proxier.applied(report.ok);
        self.synced_once |= report.ok;
        report
    }

    /// Renders a full sync while another thread makes sure of the jumps (their tool runs
    /// wait on processes, the render on the CPU).
    fn render_ensuring_jumps(
        &mut self,
        snapshot: &Snapshot,
        changed: &BTreeSet<NamespacedName>,
        now: Instant,
    ) -> (SyncPlan, Result<(), KernelError>) {
        let settings = self.proxier.settings().clone();
        let kernel = self.kernel.as_mut();
        let proxier = &mut self.proxier;
        std::thread::scope(|scope| {
            let jumps = scope.spawn(move || ensure_jumps(kernel, &settings));
            let plan = proxier.sync(snapshot, changed, now);
            let result = jumps
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (plan, result)
        })
    }

    fn check(&mut self) -> Vec<String> {
        if !self.synced_once {
            return Vec::new();
        }
        let stamps = self.stamps();
        if stamps.is_some() && stamps == self.verified {
            return Vec::new();
        }
        let family = self.family;
        let mut problems = Vec::new();
        let mut answered = true;
        let mut note = |result: Result<bool, KernelError>, what: String| match result {
            Ok(true) => {}
            Ok(false) => problems.push(format!("{family:?}: {what}")),
            Err(e) => {
                answered = false;
                unchecked(family, &what, &e);
            }
        };
        for table in CANARY_TABLES {
            let exists = self
                .kernel
                .list_chain(table, CANARY_CHAIN)
                .map(|rules| rules.is_some());
            note(
                exists,
                format!("canary chain {table}/{CANARY_CHAIN} is missing"),
            );
        }
        for (table, chain) in [("nat", "KUBE-POSTROUTING"), ("filter", "KUBE-FORWARD")] {
            let filled = self
                .kernel
                .list_chain(table, chain)
                .map(|rules| rules.is_some_and(|r| r.iter().any(|l| l.starts_with("-A "))));
            note(filled, format!("{table}/{chain} is missing or flushed"));
        }
        let settings = self.proxier.settings().clone();
        for jump in jump_rules(settings.family, settings.localhost_node_ports) {
            let present = self
                .kernel
                .has_rule(jump.table, jump.chain, &jump_args(&jump));
            note(
                present,
                format!(
                    "jump {}/{} -> {} is missing",
                    jump.table, jump.chain, jump.target
                ),
            );
        }
        let audited = self.written.tracked();
        match audited.then(|| self.kernel.save_table("nat")) {
            None => {}
            Some(Ok(nat)) => problems.extend(
                self.written
                    .damage(&nat)
                    .into_iter()
                    .map(|damage| format!("{family:?}: {damage}")),
            ),
            Some(Err(e)) => {
                answered = false;
                unchecked(family, "the nat table", &e);
            }
        }
        if !problems.is_empty() {
            self.proxier.force_full_sync();
        }
        self.verified = stamps.filter(|_| answered && problems.is_empty());
        problems
    }

    /// The stamps of [`CANARY_TABLES`], or `None` where the backend cannot tell.
    fn stamps(&mut self) -> Option<Vec<TableStamp>> {
        CANARY_TABLES
            .iter()
            .map(|table| self.kernel.table_stamp(table).ok().flatten())
            .collect()
    }
}

impl ProxyMode for IptablesMode {
    fn name(&self) -> &'static str {
        "iptables"
    }

    fn families(&self) -> Vec<IpFamily> {
        self.families.iter().map(|f| f.family).collect()
    }

    fn node_changed(&mut self, node: &NodeFacts) {
        for state in &mut self.families {
            let mut settings =
                self.settings
                    .for_family(state.family, Some(node), state.random_fully);
            settings.max_services_per_restore =
                state.chunked_full_syncs.then_some(SERVICES_PER_RESTORE);
            if settings == *state.proxier.settings() {
                state.proxier.invalidate();
                continue;
            }
            state.proxier.change_settings(settings);
        }
    }

    fn may_skip(&self, family: IpFamily, now: Instant) -> bool {
        self.families
            .iter()
            .find(|state| state.family == family)
            .is_some_and(|state| state.synced_once && !state.proxier.sync_at_is_full(now))
    }

    fn sync(&mut self, input: &SyncInput<'_>) -> FamilySync {
        let family = input.snapshot.family();
        match self.family_mut(family) {
            Some(state) => state.sync(input.snapshot, input.changed, input.now),
            None => FamilySync::missing_family(family),
        }
    }

    fn check_kernel(&mut self) -> Vec<String> {
        self.families
            .iter_mut()
            .flat_map(FamilyState::check)
            .collect()
    }
}
