//! Kernel parameters the agent sets at start: `route_localnet` for localhost NodePorts
//! and the conntrack table settings (a zero setting leaves the kernel's value alone).
//! `ip_forward` and `bridge-nf-call-iptables` are never changed, as in kube-proxy.

use crate::config::ConntrackConfig;
use std::io;
use std::path::PathBuf;

/// `route_localnet`, needed for NodePorts on 127.0.0.1.
pub const ROUTE_LOCALNET: &str = "net/ipv4/conf/all/route_localnet";
/// The bridge sysctl checked (not changed) at start.
pub const BRIDGE_NF_CALL_IPTABLES: &str = "net/bridge/bridge-nf-call-iptables";
/// The conntrack hash size module parameter (under `/sys`, not `/proc/sys`).
pub const CONNTRACK_HASHSIZE: &str = "/sys/module/nf_conntrack/parameters/hashsize";

/// Reads and writes kernel parameters: keys relative to `/proc/sys`, or absolute paths.
pub trait KernelParams {
    /// The current value, trimmed.
    fn read(&self, key: &str) -> io::Result<String>;
    /// Sets a value.
    fn write(&mut self, key: &str, value: &str) -> io::Result<()>;
}

/// The real `/proc/sys` and `/sys`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcSys;

fn param_path(key: &str) -> PathBuf {
    if key.starts_with('/') {
        PathBuf::from(key)
    } else {
        PathBuf::from("/proc/sys").join(key)
    }
}

impl KernelParams for ProcSys {
    fn read(&self, key: &str) -> io::Result<String> {
        Ok(std::fs::read_to_string(param_path(key))?.trim().to_string())
    }

    fn write(&mut self, key: &str, value: &str) -> io::Result<()> {
        std::fs::write(param_path(key), format!("{value}\n"))
    }
}

/// Sets `key` to `value` unless it already has it. Returns a warning on failure.
pub fn ensure_param(params: &mut dyn KernelParams, key: &str, value: &str) -> Option<String> {
    if params.read(key).is_ok_and(|current| current == value) {
        return None;
    }
    params
        .write(key, value)
        .err()
        .map(|e| format!("setting {key}={value}: {e}"))
}

/// The `nf_conntrack_max` kube-proxy would set: max-per-core times CPUs, at least `min`;
/// `None` when max-per-core is 0.
pub fn conntrack_max(config: &ConntrackConfig, cpus: usize) -> Option<u64> {
    if config.max_per_core == 0 {
        return None;
    }
    let scaled = u64::from(config.max_per_core) * cpus as u64;
    Some(scaled.max(u64::from(config.min)))
}

/// Applies the conntrack settings; returns warnings for settings the kernel refused.
pub fn apply_conntrack(
    params: &mut dyn KernelParams,
    config: &ConntrackConfig,
    cpus: usize,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(max) = conntrack_max(config, cpus) {
        warnings.extend(ensure_param(
            params,
            "net/netfilter/nf_conntrack_max",
            &max.to_string(),
        ));
        let hashsize = params
            .read(CONNTRACK_HASHSIZE)
            .ok()
            .and_then(|v| v.parse::<u64>().ok());
        if hashsize.is_some_and(|size| size < max / 4) {
            warnings.extend(ensure_param(
                params,
                CONNTRACK_HASHSIZE,
                &(max / 4).to_string(),
            ));
        }
    }
    let timeouts = [
        (
            "net/netfilter/nf_conntrack_tcp_timeout_established",
            config.tcp_established_timeout,
        ),
        (
            "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
            config.tcp_close_wait_timeout,
        ),
        ("net/netfilter/nf_conntrack_udp_timeout", config.udp_timeout),
        (
            "net/netfilter/nf_conntrack_udp_timeout_stream",
            config.udp_stream_timeout,
        ),
    ];
    for (key, timeout) in timeouts {
        if !timeout.is_zero() {
            warnings.extend(ensure_param(params, key, &timeout.as_secs().to_string()));
        }
    }
    if config.tcp_be_liberal {
        warnings.extend(ensure_param(
            params,
            "net/netfilter/nf_conntrack_tcp_be_liberal",
            "1",
        ));
    }
    warnings
}

/// A warning when bridged traffic bypasses iptables (the module is loaded but the sysctl
/// is off); kproxy does not change it.
pub fn bridge_warning(params: &dyn KernelParams) -> Option<String> {
    match params.read(BRIDGE_NF_CALL_IPTABLES) {
        Ok(value) if value != "1" => Some(format!(
            "{BRIDGE_NF_CALL_IPTABLES} is {value}: bridged pod traffic bypasses iptables and services may not work"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    #[derive(Default)]
    struct FakeParams {
        values: BTreeMap<String, String>,
        read_only: bool,
    }

    impl KernelParams for FakeParams {
        fn read(&self, key: &str) -> io::Result<String> {
            self.values
                .get(key)
                .cloned()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
        fn write(&mut self, key: &str, value: &str) -> io::Result<()> {
            if self.read_only {
                return Err(io::Error::from(io::ErrorKind::PermissionDenied));
            }
            self.values.insert(key.into(), value.into());
            Ok(())
        }
    }

    fn defaults() -> ConntrackConfig {
        ConntrackConfig {
            max_per_core: 32768,
            min: 131072,
            tcp_established_timeout: Duration::from_secs(86400),
            tcp_close_wait_timeout: Duration::from_secs(3600),
            tcp_be_liberal: false,
            udp_timeout: Duration::ZERO,
            udp_stream_timeout: Duration::ZERO,
        }
    }

    #[test]
    fn sets_what_is_configured_and_nothing_else() {
        let mut params = FakeParams::default();
        params
            .values
            .insert(CONNTRACK_HASHSIZE.into(), "16384".into());
        let warnings = apply_conntrack(&mut params, &defaults(), 8);
        assert!(warnings.is_empty(), "{warnings:?}");
        let expected = [
            (CONNTRACK_HASHSIZE, "65536"),
            ("net/netfilter/nf_conntrack_max", "262144"),
            ("net/netfilter/nf_conntrack_tcp_timeout_close_wait", "3600"),
            (
                "net/netfilter/nf_conntrack_tcp_timeout_established",
                "86400",
            ),
        ];
        let got: Vec<(&str, &str)> = params
            .values
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn zero_leaves_the_kernel_alone() {
        let mut params = FakeParams::default();
        let warnings = apply_conntrack(&mut params, &ConntrackConfig::leave_alone(), 8);
        assert!(warnings.is_empty());
        assert!(params.values.is_empty());
        assert_eq!(
            conntrack_max(&defaults(), 2),
            Some(131072),
            "min wins on small nodes"
        );
    }

    #[test]
    fn refused_writes_become_warnings() {
        let mut params = FakeParams {
            read_only: true,
            ..FakeParams::default()
        };
        let warnings = apply_conntrack(&mut params, &defaults(), 4);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        params
            .values
            .insert(BRIDGE_NF_CALL_IPTABLES.into(), "0".into());
        assert!(bridge_warning(&params).is_some());
    }
}
