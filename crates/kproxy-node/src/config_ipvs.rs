//! The ipvs mode's settings: `--ipvs-*` flags or the config file's `ipvs:` section, with
//! kube-proxy's defaults and checks.

use crate::config::ConfigError;
use crate::config_file::IpvsSection;
use crate::flags::AgentArgs;
use ipnet::IpNet;
use std::time::Duration;

/// The resolved `ipvs` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsConfig {
    /// `--ipvs-scheduler` (empty: `rr`).
    pub scheduler: String,
    /// `--ipvs-sync-period`: the longest time between two syncs.
    pub sync_period: Duration,
    /// `--ipvs-min-sync-period`.
    pub min_sync_period: Duration,
    /// `--ipvs-exclude-cidrs`: virtual servers inside them are never deleted.
    pub exclude_cidrs: Vec<IpNet>,
    /// `--ipvs-strict-arp`.
    pub strict_arp: bool,
    /// `--ipvs-tcp-timeout` (0 keeps the kernel's).
    pub tcp_timeout: Duration,
    /// `--ipvs-tcpfin-timeout` (0 keeps the kernel's).
    pub tcp_fin_timeout: Duration,
    /// `--ipvs-udp-timeout` (0 keeps the kernel's).
    pub udp_timeout: Duration,
}

/// The `ipvs` values from one place (flags or file), before defaults.
#[derive(Debug, Clone, Default)]
pub struct IpvsLayer {
    scheduler: Option<String>,
    sync_period: Option<Duration>,
    min_sync_period: Option<Duration>,
    exclude_cidrs: Option<Vec<String>>,
    strict_arp: Option<bool>,
    tcp_timeout: Option<Duration>,
    tcp_fin_timeout: Option<Duration>,
    udp_timeout: Option<Duration>,
}

impl IpvsLayer {
    /// The `--ipvs-*` flags.
    pub fn from_flags(args: &AgentArgs) -> Self {
        IpvsLayer {
            scheduler: args.ipvs_scheduler.clone(),
            sync_period: args.ipvs_sync_period,
            min_sync_period: args.ipvs_min_sync_period,
            exclude_cidrs: args.ipvs_exclude_cidrs.clone(),
            strict_arp: args.ipvs_strict_arp,
            tcp_timeout: args.ipvs_tcp_timeout,
            tcp_fin_timeout: args.ipvs_tcpfin_timeout,
            udp_timeout: args.ipvs_udp_timeout,
        }
    }

    /// The config file's `ipvs:` section.
    pub fn from_file(section: IpvsSection) -> Self {
        IpvsLayer {
            scheduler: section.scheduler,
            sync_period: section.sync_period,
            min_sync_period: section.min_sync_period,
            exclude_cidrs: section.exclude_cidrs,
            strict_arp: section.strict_arp,
            tcp_timeout: section.tcp_timeout,
            tcp_fin_timeout: section.tcp_fin_timeout,
            udp_timeout: section.udp_timeout,
        }
    }

    /// Applies kube-proxy's defaults (sync period 30s, min sync period 0s) and checks.
    pub fn resolve(self) -> Result<IpvsConfig, ConfigError> {
        let sync_period = self.sync_period.unwrap_or(Duration::from_secs(30));
        let min_sync_period = self.min_sync_period.unwrap_or(Duration::ZERO);
        if sync_period.is_zero() {
            return Err(invalid("--ipvs-sync-period", "must be greater than 0"));
        }
        if min_sync_period > sync_period {
            return Err(invalid(
                "--ipvs-sync-period",
                "must be greater than or equal to --ipvs-min-sync-period",
            ));
        }
        let exclude_cidrs = self
            .exclude_cidrs
            .unwrap_or_default()
            .iter()
            .map(|c| c.trim())
            .filter(|c| !c.is_empty())
            .map(|c| {
                c.parse::<IpNet>()
                    .map_err(|_| invalid("--ipvs-exclude-cidrs", format!("{c:?} is not a CIDR")))
            })
            .collect::<Result<_, _>>()?;
        Ok(IpvsConfig {
            scheduler: self.scheduler.unwrap_or_default().trim().to_string(),
            sync_period,
            min_sync_period,
            exclude_cidrs,
            strict_arp: self.strict_arp.unwrap_or(false),
            tcp_timeout: self.tcp_timeout.unwrap_or_default(),
            tcp_fin_timeout: self.tcp_fin_timeout.unwrap_or_default(),
            udp_timeout: self.udp_timeout.unwrap_or_default(),
        })
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks_are_kube_proxys() {
        let config = IpvsLayer::default().resolve().expect("defaults");
        assert_eq!(config.sync_period, Duration::from_secs(30));
        assert_eq!(config.min_sync_period, Duration::ZERO);
        assert_eq!(config.scheduler, "");
        let bad = IpvsLayer {
            min_sync_period: Some(Duration::from_secs(60)),
            ..IpvsLayer::default()
        };
        assert!(bad.resolve().is_err());
        let cidrs = IpvsLayer {
            exclude_cidrs: Some(vec!["10.0.0.0/8".into(), "nope".into()]),
            ..IpvsLayer::default()
        };
        let error = cidrs.resolve().expect_err("bad CIDR");
        assert!(error.to_string().contains("nope"), "{error}");
    }
}
