//! Starting a proxy mode: finding each family's tools, the sysctls every mode shares, and
//! removing what the other modes left behind (as kube-proxy does when a node switches
//! mode), then building the [`ProxyMode`] the sync loop drives.

use crate::agent::AgentError;
use crate::cleanup::{cleanup_iptables, cleanup_nftables};
use crate::config::{AgentConfig, ModeName};
use crate::iptables_mode::{IptablesFamilyKernel, IptablesMode, IptablesModeSettings};
use crate::ipvs_mode::cleanup_ipvs;
use crate::kernel::backend::resolve_backend;
use crate::kernel::nft::{ExecNft, NftKernel};
use crate::kernel::sysctl::{
    apply_conntrack, bridge_warning, ensure_param, ProcSys, ROUTE_LOCALNET,
};
use crate::kernel::{Backend, ExecIptables, IptablesTools, KernelError, SaveTool};
use crate::logging;
use crate::mode::ProxyMode;
use crate::nftables_mode::{family_usable, NftFamilyKernel, NftablesMode};
use kproxy_model::IpFamily;

/// Builds the configured mode for this host: removes other modes' leftovers, sets the
/// shared sysctls, and checks each family's tools (a family that cannot work is skipped
/// with a loud warning; none at all is an error).
pub fn start_mode(
    config: &AgentConfig,
    node: IptablesModeSettings,
) -> Result<Box<dyn ProxyMode>, AgentError> {
    remove_other_modes(config);
    let mode: Box<dyn ProxyMode> = match config.mode {
        ModeName::Iptables => {
            let kernels = iptables_kernels(config)?;
            if kernels.iter().any(|k| k.family == IpFamily::V4)
                && node.localhost_node_ports_active(None)
            {
                set_param(ROUTE_LOCALNET, "1");
            }
            Box::new(IptablesMode::new(node, kernels, None)?)
        }
        ModeName::Nftables => {
            let kernels = nft_kernels(config)?;
            Box::new(
                NftablesMode::new(node, kernels, None)
                    .map_err(|e| AgentError::NoFamily(format!("invalid nftables settings: {e}")))?,
            )
        }
        ModeName::Ipvs => crate::ipvs_mode::start(config, node)?,
    };
    shared_sysctls(config);
    Ok(mode)
}

/// Removes what other modes installed, as kube-proxy does: the nftables tables when
/// starting an iptables-based mode, the iptables and ipvs modes' state when starting the
/// nftables mode. Failures are warnings.
fn remove_other_modes(config: &AgentConfig) {
    let results = if config.mode == ModeName::Nftables {
        let backend = resolve_backend(config.iptables_backend);
        vec![
            ("ipvs", cleanup_ipvs(backend)),
            ("iptables", cleanup_iptables()),
        ]
    } else {
        vec![("nftables", cleanup_nftables())]
    };
    for (what, result) in results {
        if let Err(e) = result {
            logging::warn(format!("removing the {what} mode's leftovers: {e}"));
        }
    }
}

/// The iptables tools of each family that works.
fn iptables_kernels(config: &AgentConfig) -> Result<Vec<IptablesFamilyKernel>, AgentError> {
    let backend = resolve_backend(config.iptables_backend);
    logging::info(0, format!("iptables backend: {}", backend.name()));
    usable_families("iptables", |family| {
        usable_iptables(family, backend, config)
    })
}

fn usable_iptables(
    family: IpFamily,
    backend: Backend,
    config: &AgentConfig,
) -> Result<IptablesFamilyKernel, KernelError> {
    let mut exec = ExecIptables::new(
        IptablesTools::find(family, backend)?,
        config.restore_timeout,
    );
    if let Some(writer) = &config.legacy_writer {
        exec.use_writer(writer);
    }
    let version = exec.version()?;
    exec.save_table("nat")?;
    Ok(IptablesFamilyKernel {
        family,
        random_fully: supports_random_fully(&version),
        chunked_full_syncs: backend == Backend::Nft,
        kernel: Box::new(exec),
    })
}

/// `nft` for each family whose table the kernel accepts.
fn nft_kernels(config: &AgentConfig) -> Result<Vec<NftFamilyKernel>, AgentError> {
    usable_families("nftables", |family| {
        let mut exec = ExecNft::find(config.restore_timeout).map_err(|e| e.to_string())?;
        family_usable(&mut exec, family).map_err(|e| e.to_string())?;
        Ok::<_, String>(NftFamilyKernel {
            family,
            kernel: Box::new(exec) as Box<dyn NftKernel>,
        })
    })
}

/// Runs `probe` for both families; keeps those that work, warns loudly about the others,
/// and fails when none works.
pub fn usable_families<K, E: std::fmt::Display>(
    what: &str,
    mut probe: impl FnMut(IpFamily) -> Result<K, E>,
) -> Result<Vec<K>, AgentError> {
    let mut kernels = Vec::new();
    let mut problems = Vec::new();
    for family in [IpFamily::V4, IpFamily::V6] {
        match probe(family) {
            Ok(kernel) => kernels.push(kernel),
            Err(e) => {
                logging::warn(format!("!!! {family:?} is NOT proxied on this node: {e}"));
                problems.push(format!("{family:?}: {e}"));
            }
        }
    }
    if kernels.is_empty() {
        return Err(AgentError::NoFamily(format!(
            "{what}: {}",
            problems.join("; ")
        )));
    }
    Ok(kernels)
}

/// Whether an `iptables --version` line is 1.6.2 or later.
pub fn supports_random_fully(version: &str) -> bool {
    let numbers: Vec<u32> = version
        .split_whitespace()
        .find_map(|w| w.strip_prefix('v'))
        .map(|v| v.split('.').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    numbers >= vec![1, 6, 2]
}

fn set_param(key: &str, value: &str) {
    if let Some(warning) = ensure_param(&mut ProcSys, key, value) {
        logging::warn(warning);
    }
}

/// Conntrack sysctls and the `bridge-nf-call-iptables` warning, for every mode.
fn shared_sysctls(config: &AgentConfig) {
    let mut params = ProcSys;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    for warning in apply_conntrack(&mut params, &config.conntrack, cpus) {
        logging::warn(warning);
    }
    if let Some(warning) = bridge_warning(&params) {
        logging::warn(warning);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_fully_from_the_version() {
        assert!(supports_random_fully("iptables v1.8.9 (nf_tables)"));
        assert!(supports_random_fully("ip6tables v1.6.2"));
        assert!(!supports_random_fully("iptables v1.6.1"));
        assert!(!supports_random_fully("garbage"));
    }

    #[test]
    fn families_that_fail_are_skipped_and_none_is_an_error() {
        let kernels = usable_families("test", |family| match family {
            IpFamily::V4 => Ok(4),
            IpFamily::V6 => Err("no ip6"),
        })
        .expect("one family works");
        assert_eq!(kernels, [4]);
        let none = usable_families("test", |_| Err::<u8, _>("broken"));
        assert!(matches!(none, Err(AgentError::NoFamily(m)) if m.contains("V6: broken")));
    }
}
