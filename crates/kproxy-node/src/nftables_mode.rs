//! The nftables mode: one [`NftablesProxier`] per family (`ip kube-proxy`, `ip6
//! kube-proxy`), each sync's transactions run through `nft -f -`. A full sync lists the
//! table first so only what differs is sent; a first sync into an absent table is sent
//! in bounded batches as it is rendered, so the nftables lock is never held for long and
//! the agent never holds the whole ruleset.

use crate::config::{DetectLocal, NodePortAddresses};
use crate::iptables_mode::IptablesModeSettings;
use crate::kernel::nft::NftKernel;
use crate::logging;
use crate::mode::{FamilySync, ProxyMode, SyncInput};
use ipnet::IpNet;
use kproxy_model::{IpFamily, NodeFacts};
use kproxy_nftables::nft::{Family, Table, TableState};
use kproxy_nftables::{
    KernelView, LocalTrafficDetector, NftError, NftablesProxier, ProxierSettings, SettingsError,
    Transaction,
};

/// kproxy's (and kube-proxy's) nftables table name.
pub const TABLE: &str = "kube-proxy";
/// A base chain that always holds a rule once synced; empty or missing means someone
/// flushed or deleted the table.
pub const PROBE_CHAIN: &str = "nat-prerouting";
/// The most operations one `nft -f -` batch of a split first sync carries.
pub const MAX_BATCH_OPERATIONS: usize = 20_000;

/// The proxier settings of one family, from the node settings shared with the iptables
/// mode and the local Node's facts.
pub fn proxier_settings(
    node: &IptablesModeSettings,
    family: IpFamily,
    facts: Option<&NodeFacts>,
) -> ProxierSettings {
    let mut settings = ProxierSettings::new(family, &node.node_name);
    settings.table = TABLE.to_string();
    settings.zone = facts.and_then(|n| n.zone.clone());
    settings.node_ip = node.node_ip(family, facts);
    settings.local_addresses = node.host_addresses.clone();
    settings.node_port_addresses = match &node.node_port_addresses {
        NodePortAddresses::All => Vec::new(),
        _ => node.node_port_cidrs(family, facts).unwrap_or_default(),
    };
    settings.local_detector = local_detector(node, family, facts);
    settings.masquerade_all = node.masquerade_all;
    settings.masquerade_bit = u8::try_from(node.masquerade_bit).unwrap_or(u8::MAX);
    settings
}

fn local_detector(
    node: &IptablesModeSettings,
    family: IpFamily,
    facts: Option<&NodeFacts>,
) -> LocalTrafficDetector {
    let first_of_family = |cidrs: Vec<IpNet>| {
        cidrs
            .into_iter()
            .find(|c| IpFamily::of_net(c) == family)
            .map_or(
                LocalTrafficDetector::None,
                LocalTrafficDetector::ClusterCidr,
            )
    };
    match &node.detect_local {
        DetectLocal::ClusterCidr => first_of_family(node.cluster_cidrs.clone()),
        DetectLocal::NodeCidr => first_of_family(
            facts
                .into_iter()
                .flat_map(|n| &n.pod_cidrs)
                .filter_map(|c| kproxy_model::parse_cidr_sloppy(c))
                .collect(),
        ),
        DetectLocal::BridgeInterface(name) => LocalTrafficDetector::BridgeInterface(name.clone()),
        DetectLocal::InterfaceNamePrefix(prefix) => {
            LocalTrafficDetector::InterfaceNamePrefix(prefix.clone())
        }
    }
}

/// The nft family of an IP family.
pub fn nft_family(family: IpFamily) -> Family {
    match family {
        IpFamily::V4 => Family::Ip,
        IpFamily::V6 => Family::Ip6,
    }
}

/// Whether this kernel and `nft` can hold kproxy's table of `family` (`nft -c`).
pub fn family_usable(kernel: &mut dyn NftKernel, family: IpFamily) -> Result<(), NftError> {
    let mut tx = Transaction::new(nft_family(family), TABLE);
    tx.add(Table { comment: None });
    kernel.check(&tx)
}

/// One family's kernel handle, as handed to [`NftablesMode::new`].
pub struct NftFamilyKernel {
    /// The family.
    pub family: IpFamily,
    /// Its `nft`.
    pub kernel: Box<dyn NftKernel>,
}

struct FamilyState {
    family: IpFamily,
    kernel: Box<dyn NftKernel>,
    proxier: NftablesProxier,
    synced_once: bool,
}

/// The nftables proxy mode.
pub struct NftablesMode {
    node: IptablesModeSettings,
    families: Vec<FamilyState>,
    max_batch_operations: usize,
}

impl NftablesMode {
    /// One proxier per family; the first sync of each is full.
    pub fn new(
        node: IptablesModeSettings,
        kernels: Vec<NftFamilyKernel>,
        facts: Option<&NodeFacts>,
    ) -> Result<Self, SettingsError> {
        let families = kernels
            .into_iter()
            .map(|entry| {
                let proxier = NftablesProxier::new(proxier_settings(&node, entry.family, facts))?;
                Ok(FamilyState {
                    family: entry.family,
                    kernel: entry.kernel,
                    proxier,
                    synced_once: false,
                })
            })
            .collect::<Result<_, SettingsError>>()?;
        Ok(NftablesMode {
            node,
            families,
            max_batch_operations: MAX_BATCH_OPERATIONS,
        })
    }

    /// Splits a first sync into an absent table into batches of at most `max`
    /// operations instead of [`MAX_BATCH_OPERATIONS`].
    pub fn with_max_batch_operations(mut self, max: usize) -> Self {
        self.max_batch_operations = max;
        self
    }
}

impl FamilyState {
    fn nft_family(&self) -> Family {
        nft_family(self.family)
    }

    /// Lists the table for a full sync; tells whether it is absent.
    fn observe_kernel(&mut self) -> bool {
        // An absent table is handed over as an empty one: with `KernelView::Absent` the
        // proxier still flushes the stale chains it believes exist, which fails when
        // someone deleted the table (reported to kproxy-nftables).
        let view = match self.kernel.list_table(self.nft_family(), TABLE) {
            Ok(Some(table)) => KernelView::Present(table),
            Ok(None) => KernelView::Present(TableState::default()),
            Err(e) => {
                logging::warn(format!(
                    "{:?}: listing the nftables table: {e}; element maps are refilled",
                    self.family
                ));
                KernelView::Unknown
            }
        };
        let absent = matches!(&view, KernelView::Present(t) if *t == TableState::default());
        self.proxier.observe(view);
        absent
    }

    fn sync(&mut self, input: &SyncInput<'_>, max_batch: usize) -> FamilySync {
        let absent = self.proxier.wants_full_sync() && self.observe_kernel();
        let mut report = FamilySync::default();
        if let Some(cleanup) = self.proxier.stale_cleanup(input.now) {
            if let Err(e) = self.kernel.run(&cleanup) {
                logging::warn(format!(
                    "{:?}: deleting stale nftables chains: {e}",
                    self.family
                ));
                report.cleanup_failed = true;
            }
        }
        // Into an absent table nothing is served yet, so the first sync goes in bounded
        // batches, each sent as soon as it is rendered; otherwise in one transaction.
        let limit = if absent { max_batch } else { usize::MAX };
        let kernel = &mut self.kernel;
        let mut result = Ok(());
        let sent = self.proxier.send_main(
            input.snapshot,
            input.ports,
            input.now,
            limit,
            &mut |batch| {
                if result.is_ok() {
                    result = kernel.run(&batch);
                }
            },
        );
        for warning in &sent.warnings {
            logging::warn(warning.to_string());
        }
        // Reported once the main transaction is planned, as when it was planned first.
        if report.cleanup_failed {
            self.proxier.on_cleanup_failed();
        }
        report.full = sent.full;
        report.ok = result.is_ok();
        report.partial_failed = !sent.full && !report.ok;
        report.error = result.err().map(|e| e.to_string());
        self.proxier.on_applied(report.ok);
        self.synced_once |= report.ok;
        (report.no_local_internal, report.no_local_external) = self.proxier.no_local_endpoints();
        report
    }

    fn check(&mut self) -> Vec<String> {
        if !self.synced_once {
            return Vec::new();
        }
        let problem = match self
            .kernel
            .chain_has_rules(self.nft_family(), TABLE, PROBE_CHAIN)
        {
            Ok(true) => return Vec::new(),
            Ok(false) => format!(
                "{:?}: nftables table {} {TABLE} is missing or flushed",
                self.family,
                self.nft_family().keyword()
            ),
            Err(e) => format!("{:?}: checking the nftables table: {e}", self.family),
        };
        self.proxier.force_full_sync();
        vec![problem]
    }
}

impl ProxyMode for NftablesMode {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn families(&self) -> Vec<IpFamily> {
        self.families.iter().map(|f| f.family).collect()
    }

    fn node_changed(&mut self, facts: &NodeFacts) {
        for state in &mut self.families {
            let settings = proxier_settings(&self.node, state.family, Some(facts));
            if settings == *state.proxier.settings() {
                state.proxier.force_full_sync();
                continue;
            }
            if let Err(e) = state.proxier.set_settings(settings) {
                logging::warn(format!(
                    "{:?}: node change gives invalid nftables settings: {e}; keeping the old ones",
                    state.family
                ));
                state.proxier.force_full_sync();
            }
        }
    }

    fn sync(&mut self, input: &SyncInput<'_>) -> FamilySync {
        let family = input.snapshot.family();
        match self.families.iter_mut().find(|f| f.family == family) {
            Some(state) => state.sync(input, self.max_batch_operations),
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
