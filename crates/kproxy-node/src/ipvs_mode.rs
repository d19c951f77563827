//! The ipvs mode: one [`IpvsProxier`] and one [`IpvsKernel`] per family. Every sync
//! observes the kernel (IPVS table, kube-ipvs0, host addresses) and applies the whole
//! plan; a sync also runs every `--ipvs-sync-period`, and sooner when a draining real
//! server needs another look (graceful termination).

use crate::agent::AgentError;
use crate::config::AgentConfig;
use crate::config_ipvs::IpvsConfig;
use crate::iptables_mode::IptablesModeSettings;
use crate::kernel::backend::resolve_backend;
use crate::kernel::exec::find_tool;
use crate::kernel::{Backend, IptablesTools};
use crate::logging;
use crate::mode::{FamilySync, ProxyMode, SyncInput};
use crate::startup::usable_families;
use kproxy_iptables::mark_for_bit;
use kproxy_ipvs::ipset::{IpsetCommand, IpsetRunner, KubeSet};
use kproxy_ipvs::link::{IpCommandLink, VipInterface, KUBE_IPVS0};
use kproxy_ipvs::mode::{set_name, HostAddresses, IpCommandHost, IptablesCommand, IptablesRunner};
use kproxy_ipvs::sysctl::{KernelVersion, ProcSys};
use kproxy_ipvs::{
    Error as IpvsError, IpvsHandle, IpvsKernel, IpvsProxier, IpvsSettings, NetlinkIpvs, Timeouts,
};
use kproxy_model::{IpFamily, NodeFacts};
use std::time::{Duration, Instant};

/// The ipvs mode's settings of one family, from the node settings shared with the other
/// modes, the `ipvs` configuration and the local Node's facts.
pub fn ipvs_settings(
    node: &IptablesModeSettings,
    ipvs: &IpvsConfig,
    family: IpFamily,
    facts: Option<&NodeFacts>,
) -> IpvsSettings {
    let mut settings = IpvsSettings::new(family, &node.node_name);
    settings.topology.zone = facts.and_then(|n| n.zone.clone());
    settings.scheduler = IpvsSettings::scheduler_from_flag(&ipvs.scheduler);
    settings.node_ip = node.node_ip(family, facts);
    settings.local_detector = node.local_detector(family, facts);
    settings.masquerade_all = node.masquerade_all;
    settings.masquerade_mark = mark_for_bit(node.masquerade_bit);
    settings.node_port_addresses = node.node_port_cidrs(family, facts).unwrap_or_default();
    settings.exclude_cidrs = ipvs.exclude_cidrs.clone();
    settings.strict_arp = ipvs.strict_arp;
    settings
}

/// The IPVS connection timeouts of the configuration, in whole seconds.
pub fn timeouts(ipvs: &IpvsConfig) -> Timeouts {
    let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    Timeouts {
        tcp_secs: secs(ipvs.tcp_timeout),
        tcp_fin_secs: secs(ipvs.tcp_fin_timeout),
        udp_secs: secs(ipvs.udp_timeout),
    }
}

/// One family's kernel seams, as handed to [`IpvsMode::new`].
pub type IpvsFamilyKernel<H, S, L, A, T> = (IpFamily, IpvsKernel<H, S, L, A, T>);

struct FamilyState<H, S, L, A, T> {
    family: IpFamily,
    proxier: IpvsProxier,
    kernel: IpvsKernel<H, S, L, A, T>,
}

/// The ipvs proxy mode over kernel seams `H` (IPVS), `S` (ipset), `L` (kube-ipvs0), `A`
/// (host addresses) and `T` (iptables).
pub struct IpvsMode<H, S, L, A, T> {
    node: IptablesModeSettings,
    ipvs: IpvsConfig,
    families: Vec<FamilyState<H, S, L, A, T>>,
    last_sync: Option<Instant>,
}

impl<H, S, L, A, T> IpvsMode<H, S, L, A, T>
where
    H: IpvsHandle + Send,
    S: IpsetRunner + Send,
    L: VipInterface + Send,
    A: HostAddresses + Send,
    T: IptablesRunner + Send,
{
    /// One proxier per family over the given kernels.
    pub fn new(
        node: IptablesModeSettings,
        ipvs: IpvsConfig,
        kernels: Vec<IpvsFamilyKernel<H, S, L, A, T>>,
    ) -> Self {
        let families = kernels
            .into_iter()
            .map(|(family, kernel)| FamilyState {
                family,
                proxier: IpvsProxier::new(ipvs_settings(&node, &ipvs, family, None)),
                kernel,
            })
            .collect();
        IpvsMode {
            node,
            ipvs,
            families,
            last_sync: None,
        }
    }

    /// One family's kernel seams (for tests).
    pub fn kernel(&self, family: IpFamily) -> Option<&IpvsKernel<H, S, L, A, T>> {
        self.families
            .iter()
            .find(|f| f.family == family)
            .map(|f| &f.kernel)
    }

    /// One family's kernel seams, mutable (for tests that change what the kernel reports).
    pub fn kernel_mut(&mut self, family: IpFamily) -> Option<&mut IpvsKernel<H, S, L, A, T>> {
        self.families
            .iter_mut()
            .find(|f| f.family == family)
            .map(|f| &mut f.kernel)
    }

    /// One family's proxier (for tests).
    pub fn proxier(&self, family: IpFamily) -> Option<&IpvsProxier> {
        self.families
            .iter()
            .find(|f| f.family == family)
            .map(|f| &f.proxier)
    }
}

impl<H, S, L, A, T> FamilyState<H, S, L, A, T>
where
    H: IpvsHandle,
    S: IpsetRunner,
    L: VipInterface,
    A: HostAddresses,
    T: IptablesRunner,
{
    fn sync(&mut self, input: &SyncInput<'_>) -> FamilySync {
        let mut report = FamilySync {
            full: true,
            ..FamilySync::default()
        };
        let observed = match self.kernel.observe() {
            Ok(observed) => observed,
            Err(e) => {
                report.error = Some(format!("observing IPVS and {KUBE_IPVS0}: {e}"));
                return report;
            }
        };
        let plan = self.proxier.sync(input.snapshot, &observed, input.now);
        for entry in &plan.refused_entries {
            logging::warn(format!("{:?}: ipset entry refused: {entry}", self.family));
        }
        let applied = self.kernel.apply(&plan);
        self.proxier.applied(applied.ok());
        report.ok = applied.ok();
        if !report.ok {
            report.error = Some(applied.errors.join("; "));
        }
        report.no_local_internal = plan.desired.no_local_internal.len();
        report.no_local_external = plan.desired.no_local_external.len();
        report
    }
}

impl<H, S, L, A, T> ProxyMode for IpvsMode<H, S, L, A, T>
where
    H: IpvsHandle + Send,
    S: IpsetRunner + Send,
    L: VipInterface + Send,
    A: HostAddresses + Send,
    T: IptablesRunner + Send,
{
    fn name(&self) -> &'static str {
        "ipvs"
    }

    fn families(&self) -> Vec<IpFamily> {
        self.families.iter().map(|f| f.family).collect()
    }

    fn node_changed(&mut self, facts: &NodeFacts) {
        for state in &mut self.families {
            let settings = ipvs_settings(&self.node, &self.ipvs, state.family, Some(facts));
            if settings != *state.proxier.settings() {
                logging::info(
                    1,
                    format!(
                        "{:?}: node settings changed; ipvs proxier rebuilt",
                        state.family
                    ),
                );
                state.proxier = IpvsProxier::new(settings);
            }
        }
    }

    fn sync(&mut self, input: &SyncInput<'_>) -> FamilySync {
        self.last_sync = Some(input.now);
        let family = input.snapshot.family();
        match self.families.iter_mut().find(|f| f.family == family) {
            Some(state) => state.sync(input),
            None => FamilySync::missing_family(family),
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let periodic = self.last_sync.map(|t| t + self.ipvs.sync_period);
        self.families
            .iter()
            .filter_map(|f| f.proxier.next_drain_check())
            .chain(periodic)
            .min()
    }

    fn check_kernel(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// The real kernel seams of one family.
pub type RealIpvsKernel =
    IpvsKernel<NetlinkIpvs, IpsetCommand, IpCommandLink, IpCommandHost, IptablesCommand>;

/// Why the ipvs mode cannot start here.
pub fn no_ipvs_error(e: &IpvsError) -> AgentError {
    match e {
        IpvsError::NoIpvs => AgentError::NoIpvs,
        other => AgentError::NoFamily(format!("ipvs: {other}")),
    }
}

fn real_kernel(family: IpFamily, backend: Backend) -> Result<RealIpvsKernel, AgentError> {
    let iptables = match backend {
        Backend::Legacy => IptablesCommand::legacy(family),
        Backend::Nft => IptablesCommand::system(family),
    };
    Ok(IpvsKernel {
        ipvs: NetlinkIpvs::connect().map_err(|e| no_ipvs_error(&e))?,
        ipset: IpsetCommand::new(),
        link: IpCommandLink::new(KUBE_IPVS0),
        host: IpCommandHost::new(),
        iptables,
    })
}

/// Starts the ipvs mode on this host: IPVS over netlink (a clear error when the kernel
/// has none), `ipset` and `ip` present, sysctls and connection timeouts set, one kernel
/// per family whose iptables tools exist.
pub fn start(
    config: &AgentConfig,
    node: IptablesModeSettings,
) -> Result<Box<dyn ProxyMode>, AgentError> {
    let backend = resolve_backend(config.iptables_backend);
    let mut first = real_kernel(IpFamily::V4, backend)?;
    for tool in ["ipset", "ip"] {
        if find_tool(tool).is_none() {
            return Err(AgentError::NoFamily(format!(
                "ipvs: {tool} is not installed"
            )));
        }
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let version = KernelVersion::parse(&release)
        .ok_or_else(|| AgentError::NoFamily(format!("ipvs: unknown kernel release {release:?}")))?;
    let written = first
        .start(
            &mut ProcSys::new(),
            version,
            config.ipvs.strict_arp,
            timeouts(&config.ipvs),
        )
        .map_err(|e| AgentError::NoFamily(format!("ipvs: start-up sysctls and timeouts: {e}")))?;
    logging::info(1, format!("ipvs sysctls written: {written:?}"));
    let mut first = Some(first);
    let kernels = usable_families("ipvs", |family| {
        IptablesTools::find(family, backend).map_err(|e| e.to_string())?;
        match first.take().filter(|_| family == IpFamily::V4) {
            Some(kernel) => Ok((family, kernel)),
            None => real_kernel(family, backend)
                .map(|kernel| (family, kernel))
                .map_err(|e| e.to_string()),
        }
    })?;
    Ok(Box::new(IpvsMode::new(node, config.ipvs.clone(), kernels)))
}

/// Removes the ipvs mode's state (`--cleanup`, or starting in nftables mode): flushes
/// IPVS, deletes kube-ipvs0, removes the mode's iptables chains and ipsets of each family
/// (IPv6 when its iptables tools exist: its chains reference its sets, which cannot be
/// destroyed while referenced). Without IPVS in the kernel there is nothing to remove.
pub fn cleanup_ipvs(backend: Backend) -> Result<(), String> {
    let mut errors = Vec::new();
    for family in [IpFamily::V4, IpFamily::V6] {
        if family == IpFamily::V6 && IptablesTools::find(family, backend).is_err() {
            continue;
        }
        let mut kernel = match real_kernel(family, backend) {
            Ok(kernel) => kernel,
            Err(AgentError::NoIpvs) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let settings = IpvsSettings::new(family, "");
        let names = KubeSet::ALL.map(|set| set_name(&settings, set));
        errors.extend(
            kernel
                .cleanup(&names)
                .into_iter()
                .map(|e| format!("{family:?}: {e}")),
        );
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("ipvs: {}", errors.join("; ")))
    }
}
