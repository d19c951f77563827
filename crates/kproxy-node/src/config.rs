//! The agent's resolved configuration: kube-proxy's defaults, then either the config file
//! or the flags, then `--hostname-override`, validated once.
//!
//! Precedence follows kube-proxy: when `--config` is given, the file replaces the flags
//! that map to its fields (kube-proxy's help says "This parameter is ignored if a config
//! file is specified by --config"); `--hostname-override`, `--master`, `--v`, `--cleanup`
//! and kproxy's own flags still apply. Flags ignored this way are reported as a warning.

use crate::config_file::{ConfigFileError, KubeProxyConfiguration};
use crate::config_ipvs::{IpvsConfig, IpvsLayer};
use crate::flags::AgentArgs;
use ipnet::IpNet;
use kproxy_model::{parse_cidr_sloppy, IpFamily};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Which proxy mode runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeName {
    /// iptables (the default).
    Iptables,
    /// nftables.
    Nftables,
    /// IPVS.
    Ipvs,
}

/// How pod traffic is told apart from other traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetectLocal {
    /// Traffic from the cluster CIDR of the family (none: no detection).
    ClusterCidr,
    /// Traffic from the Node's `spec.podCIDRs`.
    NodeCidr,
    /// Traffic arriving on this bridge.
    BridgeInterface(String),
    /// Traffic arriving on interfaces whose name starts with this prefix.
    InterfaceNamePrefix(String),
}

/// Which node addresses accept NodePorts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodePortAddresses {
    /// Every local address (kube-proxy's default).
    All,
    /// The node's primary IPs (`primary`).
    Primary,
    /// Local addresses inside these CIDRs.
    Cidrs(Vec<IpNet>),
}

/// Where the cluster state comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceChoice {
    /// A manifest file or directory (`--cluster-file`).
    ClusterFile(PathBuf),
    /// The API server.
    Api {
        /// `--kubeconfig` / `clientConnection.kubeconfig`.
        kubeconfig: Option<PathBuf>,
        /// `--master`.
        master: Option<String>,
    },
}

/// Which iptables binaries to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// Decide as upstream's iptables wrapper does (the backend already holding rules).
    Auto,
    /// `iptables-nft` (nf_tables kernel API).
    Nft,
    /// `iptables-legacy` (x_tables kernel API).
    Legacy,
}

/// Conntrack sysctls; zero leaves the kernel's value alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// `--conntrack-max-per-core`.
    pub max_per_core: u32,
    /// `--conntrack-min`.
    pub min: u32,
    /// `--conntrack-tcp-timeout-established`.
    pub tcp_established_timeout: Duration,
    /// `--conntrack-tcp-timeout-close-wait`.
    pub tcp_close_wait_timeout: Duration,
    /// `--conntrack-tcp-be-liberal`.
    pub tcp_be_liberal: bool,
    /// `--conntrack-udp-timeout`.
    pub udp_timeout: Duration,
    /// `--conntrack-udp-timeout-stream`.
    pub udp_stream_timeout: Duration,
}

impl ConntrackConfig {
    /// A configuration that changes nothing in the kernel.
    pub fn leave_alone() -> Self {
        ConntrackConfig {
            max_per_core: 0,
            min: 0,
            tcp_established_timeout: Duration::ZERO,
            tcp_close_wait_timeout: Duration::ZERO,
            tcp_be_liberal: false,
            udp_timeout: Duration::ZERO,
            udp_stream_timeout: Duration::ZERO,
        }
    }
}

/// Everything the agent runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// Where the cluster state comes from.
    pub source: SourceChoice,
    /// This node's name.
    pub node_name: String,
    /// The node IP given by `--bind-address`, when not unspecified.
    pub bind_address: Option<IpAddr>,
    /// The `/healthz` and `/livez` server, or `None` (disabled).
    pub healthz_bind_address: Option<SocketAddr>,
    /// The `/metrics` server, or `None` (disabled).
    pub metrics_bind_address: Option<SocketAddr>,
    /// The proxy mode.
    pub mode: ModeName,
    /// Cluster CIDRs, at most one per family.
    pub cluster_cidrs: Vec<IpNet>,
    /// Pod traffic detection.
    pub detect_local: DetectLocal,
    /// `--masquerade-all`.
    pub masquerade_all: bool,
    /// `--iptables-masquerade-bit`.
    pub masquerade_bit: u32,
    /// `--iptables-localhost-nodeports`.
    pub localhost_node_ports: bool,
    /// `--iptables-sync-period`.
    pub sync_period: Duration,
    /// `--iptables-min-sync-period`.
    pub min_sync_period: Duration,
    /// `--nodeport-addresses`.
    pub node_port_addresses: NodePortAddresses,
    /// `--config-sync-period` (accepted and validated; the watch-based sources do not
    /// need a resync).
    pub config_sync_period: Duration,
    /// Conntrack sysctls.
    pub conntrack: ConntrackConfig,
    /// iptables backend.
    pub iptables_backend: BackendChoice,
    /// How long an `iptables-restore` may run before it is killed.
    pub restore_timeout: Duration,
    /// The executable whose `xtables-restore` subcommand writes iptables-legacy tables
    /// (the agent's own); `None` runs `iptables-legacy-restore`.
    pub legacy_writer: Option<PathBuf>,
    /// The ipvs mode's settings.
    pub ipvs: IpvsConfig,
    /// Log verbosity.
    pub verbosity: u8,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("reading config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The config file does not parse.
    #[error("config file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The error.
        source: ConfigFileError,
    },
    /// A value is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The flag or field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn invalid(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        message: message.into(),
    }
}

/// Facts from the host the configuration falls back on.
#[derive(Debug, Clone, Default)]
pub struct HostDefaults {
    /// The host name (lower-cased, as kube-proxy uses it).
    pub hostname: String,
    /// `KPROXY_IPTABLES_BACKEND`.
    pub backend_env: Option<String>,
}

impl HostDefaults {
    /// Reads the host name and the environment.
    pub fn from_host() -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .unwrap_or_default();
        HostDefaults {
            hostname: hostname.trim().to_lowercase(),
            backend_env: std::env::var("KPROXY_IPTABLES_BACKEND").ok(),
        }
    }
}

/// The config-file-backed values from one place (file or flags), before defaults.
#[derive(Debug, Clone, Default)]
struct Layer {
    kubeconfig: Option<String>,
    bind_address: Option<String>,
    healthz_bind_address: Option<String>,
    metrics_bind_address: Option<String>,
    mode: Option<String>,
    cluster_cidr: Option<String>,
    detect_local_mode: Option<String>,
    bridge_interface: Option<String>,
    interface_name_prefix: Option<String>,
    masquerade_all: Option<bool>,
    masquerade_bit: Option<u32>,
    localhost_node_ports: Option<bool>,
    sync_period: Option<Duration>,
    min_sync_period: Option<Duration>,
    node_port_addresses: Option<Vec<String>>,
    config_sync_period: Option<Duration>,
    conntrack_max_per_core: Option<u32>,
    conntrack_min: Option<u32>,
    conntrack_tcp_established: Option<Duration>,
    conntrack_tcp_close_wait: Option<Duration>,
    conntrack_tcp_be_liberal: Option<bool>,
    conntrack_udp_timeout: Option<Duration>,
    conntrack_udp_stream_timeout: Option<Duration>,
    hostname_override: Option<String>,
    ipvs: IpvsLayer,
}

impl Layer {
    fn from_flags(args: &AgentArgs) -> Self {
        Layer {
            kubeconfig: args
                .kubeconfig
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            bind_address: args.bind_address.clone(),
            healthz_bind_address: args.healthz_bind_address.clone(),
            metrics_bind_address: args.metrics_bind_address.clone(),
            mode: args.proxy_mode.clone(),
            cluster_cidr: args.cluster_cidr.clone(),
            detect_local_mode: args.detect_local_mode.clone(),
            bridge_interface: args.pod_bridge_interface.clone(),
            interface_name_prefix: args.pod_interface_name_prefix.clone(),
            masquerade_all: args.masquerade_all,
            masquerade_bit: args.iptables_masquerade_bit,
            localhost_node_ports: args.iptables_localhost_nodeports,
            sync_period: args.iptables_sync_period,
            min_sync_period: args.iptables_min_sync_period,
            node_port_addresses: args.nodeport_addresses.clone(),
            config_sync_period: args.config_sync_period,
            conntrack_max_per_core: args.conntrack_max_per_core,
            conntrack_min: args.conntrack_min,
            conntrack_tcp_established: args.conntrack_tcp_timeout_established,
            conntrack_tcp_close_wait: args.conntrack_tcp_timeout_close_wait,
            conntrack_tcp_be_liberal: args.conntrack_tcp_be_liberal,
            conntrack_udp_timeout: args.conntrack_udp_timeout,
            conntrack_udp_stream_timeout: args.conntrack_udp_timeout_stream,
            hostname_override: args.hostname_override.clone(),
            ipvs: IpvsLayer::from_flags(args),
        }
    }

    fn from_file(file: KubeProxyConfiguration) -> Self {
        let non_empty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        // The nftables mode reads its own section, as kube-proxy does; the other modes
        // read the iptables one.
        let nftables = file.mode.as_deref().map(str::trim) == Some("nftables");
        let (masquerade_all, masquerade_bit, sync_period, min_sync_period) = if nftables {
            (
                file.nftables.masquerade_all,
                file.nftables.masquerade_bit,
                file.nftables.sync_period,
                file.nftables.min_sync_period,
            )
        } else {
            (
                file.iptables.masquerade_all,
                file.iptables.masquerade_bit,
                file.iptables.sync_period,
                file.iptables.min_sync_period,
            )
        };
        Layer {
            kubeconfig: non_empty(file.client_connection.kubeconfig),
            bind_address: non_empty(file.bind_address),
            healthz_bind_address: file.healthz_bind_address,
            metrics_bind_address: file.metrics_bind_address,
            mode: non_empty(file.mode),
            cluster_cidr: non_empty(file.cluster_cidr),
            detect_local_mode: non_empty(file.detect_local_mode),
            bridge_interface: non_empty(file.detect_local.bridge_interface),
            interface_name_prefix: non_empty(file.detect_local.interface_name_prefix),
            masquerade_all,
            masquerade_bit,
            localhost_node_ports: file.iptables.localhost_node_ports,
            sync_period,
            min_sync_period,
            node_port_addresses: file.node_port_addresses,
            config_sync_period: file.config_sync_period,
            conntrack_max_per_core: file.conntrack.max_per_core,
            conntrack_min: file.conntrack.min,
            conntrack_tcp_established: file.conntrack.tcp_established_timeout,
            conntrack_tcp_close_wait: file.conntrack.tcp_close_wait_timeout,
            conntrack_tcp_be_liberal: file.conntrack.tcp_be_liberal,
            conntrack_udp_timeout: file.conntrack.udp_timeout,
            conntrack_udp_stream_timeout: file.conntrack.udp_stream_timeout,
            hostname_override: non_empty(file.hostname_override),
            ipvs: IpvsLayer::from_file(file.ipvs),
        }
    }
}

impl AgentConfig {
    /// Reads `--config` (when given) and resolves the configuration. Returns the
    /// configuration and warnings to log.
    pub fn load(args: &AgentArgs) -> Result<(AgentConfig, Vec<String>), ConfigError> {
        let file = match &args.config {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let parsed =
                    KubeProxyConfiguration::parse(&text).map_err(|source| ConfigError::File {
                        path: path.clone(),
                        source,
                    })?;
                Some(parsed)
            }
        };
        AgentConfig::resolve(args, file, &HostDefaults::from_host())
    }

    /// Resolves the configuration from parsed parts (pure).
    pub fn resolve(
        args: &AgentArgs,
        file: Option<KubeProxyConfiguration>,
        host: &HostDefaults,
    ) -> Result<(AgentConfig, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();
        let layer = match file {
            Some(file) => {
                let unknown = file.unknown_fields();
                if !unknown.is_empty() {
                    warnings.push(format!(
                        "config file: ignoring fields kproxy does not know: {}",
                        unknown.join(", ")
                    ));
                }
                let ignored = args.config_flags_given();
                if !ignored.is_empty() {
                    warnings.push(format!(
                        "--config is set, so these flags are ignored as kube-proxy ignores them: {}",
                        ignored.join(" ")
                    ));
                }
                Layer::from_file(file)
            }
            None => Layer::from_flags(args),
        };
        let config = build(args, layer, host, &mut warnings)?;
        Ok((config, warnings))
    }
}

fn build(
    args: &AgentArgs,
    layer: Layer,
    host: &HostDefaults,
    warnings: &mut Vec<String>,
) -> Result<AgentConfig, ConfigError> {
    let node_name = args
        .hostname_override
        .clone()
        .or(layer.hostname_override.clone())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| host.hostname.clone());
    if node_name.is_empty() {
        return Err(invalid(
            "--hostname-override",
            "the host name is empty; set --hostname-override",
        ));
    }
    let source = match &args.cluster_file {
        Some(path) => SourceChoice::ClusterFile(path.clone()),
        None => SourceChoice::Api {
            kubeconfig: layer.kubeconfig.clone().map(PathBuf::from),
            master: args.master.clone().filter(|m| !m.is_empty()),
        },
    };
    let sync_period = layer.sync_period.unwrap_or(Duration::from_secs(30));
    let min_sync_period = layer.min_sync_period.unwrap_or(Duration::from_secs(1));
    if sync_period.is_zero() {
        return Err(invalid("--iptables-sync-period", "must be greater than 0"));
    }
    if min_sync_period > sync_period {
        return Err(invalid(
            "--iptables-sync-period",
            "must be greater than or equal to --iptables-min-sync-period",
        ));
    }
    let config_sync_period = layer.config_sync_period.unwrap_or(Duration::from_secs(900));
    if config_sync_period.is_zero() {
        return Err(invalid("--config-sync-period", "must be greater than 0"));
    }
    let masquerade_bit = layer.masquerade_bit.unwrap_or(14);
    if masquerade_bit > 31 {
        return Err(invalid(
            "--iptables-masquerade-bit",
            format!("{masquerade_bit} is not between 0 and 31"),
        ));
    }
    let cluster_cidrs = parse_cluster_cidrs(layer.cluster_cidr.as_deref())?;
    let detect_local = detect_local(&layer, &cluster_cidrs, warnings)?;
    Ok(AgentConfig {
        source,
        node_name,
        bind_address: parse_bind_ip(layer.bind_address.as_deref())?,
        healthz_bind_address: parse_listen(
            "--healthz-bind-address",
            layer.healthz_bind_address.as_deref(),
            "0.0.0.0:10256",
        )?,
        metrics_bind_address: parse_listen(
            "--metrics-bind-address",
            layer.metrics_bind_address.as_deref(),
            "127.0.0.1:10249",
        )?,
        mode: parse_mode(layer.mode.as_deref())?,
        cluster_cidrs,
        detect_local,
        masquerade_all: layer.masquerade_all.unwrap_or(false),
        masquerade_bit,
        localhost_node_ports: layer.localhost_node_ports.unwrap_or(true),
        sync_period,
        min_sync_period,
        node_port_addresses: parse_node_port_addresses(layer.node_port_addresses.as_deref())?,
        config_sync_period,
        conntrack: ConntrackConfig {
            max_per_core: layer.conntrack_max_per_core.unwrap_or(32768),
            min: layer.conntrack_min.unwrap_or(131072),
            tcp_established_timeout: layer
                .conntrack_tcp_established
                .unwrap_or(Duration::from_secs(86400)),
            tcp_close_wait_timeout: layer
                .conntrack_tcp_close_wait
                .unwrap_or(Duration::from_secs(3600)),
            tcp_be_liberal: layer.conntrack_tcp_be_liberal.unwrap_or(false),
            udp_timeout: layer.conntrack_udp_timeout.unwrap_or(Duration::ZERO),
            udp_stream_timeout: layer.conntrack_udp_stream_timeout.unwrap_or(Duration::ZERO),
        },
        iptables_backend: parse_backend(
            args.iptables_backend
                .as_deref()
                .or(host.backend_env.as_deref()),
        )?,
        restore_timeout: args
            .iptables_restore_timeout
            .unwrap_or(Duration::from_secs(60)),
        legacy_writer: None,
        verbosity: args.verbosity.unwrap_or(0),
        ipvs: layer.ipvs.resolve()?,
    })
}

fn parse_mode(text: Option<&str>) -> Result<ModeName, ConfigError> {
    match text.unwrap_or("").trim() {
        "" | "iptables" => Ok(ModeName::Iptables),
        "nftables" => Ok(ModeName::Nftables),
        "ipvs" => Ok(ModeName::Ipvs),
        other => Err(invalid(
            "--proxy-mode",
            format!("unknown mode {other:?} (expected iptables, ipvs or nftables)"),
        )),
    }
}

fn parse_backend(text: Option<&str>) -> Result<BackendChoice, ConfigError> {
    match text.unwrap_or("").trim() {
        "" | "auto" => Ok(BackendChoice::Auto),
        "nft" => Ok(BackendChoice::Nft),
        "legacy" => Ok(BackendChoice::Legacy),
        other => Err(invalid(
            "--iptables-backend",
            format!("unknown backend {other:?} (expected auto, nft or legacy)"),
        )),
    }
}

fn parse_cluster_cidrs(text: Option<&str>) -> Result<Vec<IpNet>, ConfigError> {
    let mut cidrs: Vec<IpNet> = Vec::new();
    for part in text.unwrap_or("").split(',').map(str::trim) {
        if part.is_empty() {
            continue;
        }
        let cidr = parse_cidr_sloppy(part)
            .ok_or_else(|| invalid("--cluster-cidr", format!("{part:?} is not a CIDR")))?;
        if cidrs
            .iter()
            .any(|c| IpFamily::of_net(c) == IpFamily::of_net(&cidr))
        {
            return Err(invalid(
                "--cluster-cidr",
                "at most one CIDR per IP family may be given",
            ));
        }
        cidrs.push(cidr);
    }
    Ok(cidrs)
}

fn detect_local(
    layer: &Layer,
    cluster_cidrs: &[IpNet],
    warnings: &mut Vec<String>,
) -> Result<DetectLocal, ConfigError> {
    let non_empty = |value: &Option<String>, field: &'static str| {
        value
            .clone()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| invalid(field, "must be set for this --detect-local-mode"))
    };
    match layer.detect_local_mode.as_deref().unwrap_or("ClusterCIDR") {
        "ClusterCIDR" => {
            if cluster_cidrs.is_empty() {
                warnings.push(
                    "--detect-local-mode is ClusterCIDR but no --cluster-cidr is set: \
                     pod traffic is not told apart (no masquerading of off-cluster traffic to ClusterIPs)"
                        .into(),
                );
            }
            Ok(DetectLocal::ClusterCidr)
        }
        "NodeCIDR" => Ok(DetectLocal::NodeCidr),
        "BridgeInterface" => Ok(DetectLocal::BridgeInterface(non_empty(
            &layer.bridge_interface,
            "--pod-bridge-interface",
        )?)),
        "InterfaceNamePrefix" => Ok(DetectLocal::InterfaceNamePrefix(non_empty(
            &layer.interface_name_prefix,
            "--pod-interface-name-prefix",
        )?)),
        other => Err(invalid(
            "--detect-local-mode",
            format!(
                "unknown mode {other:?} (expected ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix)"
            ),
        )),
    }
}

fn parse_node_port_addresses(values: Option<&[String]>) -> Result<NodePortAddresses, ConfigError> {
    let values: Vec<&str> = values
        .unwrap_or(&[])
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .collect();
    if values.is_empty() {
        return Ok(NodePortAddresses::All);
    }
    if values == ["primary"] {
        return Ok(NodePortAddresses::Primary);
    }
    let mut cidrs = Vec::new();
    for value in values {
        let cidr = value.parse::<IpNet>().map_err(|_| {
            invalid(
                "--nodeport-addresses",
                format!("{value:?} is not a CIDR (`primary` must be given alone)"),
            )
        })?;
        cidrs.push(cidr);
    }
    Ok(NodePortAddresses::Cidrs(cidrs))
}

fn parse_bind_ip(text: Option<&str>) -> Result<Option<IpAddr>, ConfigError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let ip: IpAddr = text
        .parse()
        .map_err(|_| invalid("--bind-address", format!("{text:?} is not an IP address")))?;
    Ok(Some(ip).filter(|ip| !ip.is_unspecified()))
}

fn parse_listen(
    field: &'static str,
    text: Option<&str>,
    default: &str,
) -> Result<Option<SocketAddr>, ConfigError> {
    let text = text.unwrap_or(default).trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<SocketAddr>()
        .map(Some)
        .map_err(|_| invalid(field, format!("{text:?} is not an IP:port")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: AgentArgs,
    }

    fn args(argv: &[&str]) -> AgentArgs {
        Cli::try_parse_from(std::iter::once("kproxy").chain(argv.iter().copied()))
            .expect("flags parse")
            .args
    }

    fn host() -> HostDefaults {
        HostDefaults {
            hostname: "host-a".into(),
            backend_env: None,
        }
    }

    fn resolve(argv: &[&str], file: Option<&str>) -> Result<AgentConfig, ConfigError> {
        let file = file.map(|text| KubeProxyConfiguration::parse(text).expect("file parses"));
        AgentConfig::resolve(&args(argv), file, &host()).map(|(config, _)| config)
    }

    #[test]
    fn defaults_are_kube_proxys() {
        let config = resolve(&[], None).expect("valid");
        assert_eq!(config.node_name, "host-a");
        assert_eq!(
            config.healthz_bind_address,
            Some("0.0.0.0:10256".parse().expect("addr"))
        );
        assert_eq!(
            config.metrics_bind_address,
            Some("127.0.0.1:10249".parse().expect("addr"))
        );
        assert_eq!(config.mode, ModeName::Iptables);
        assert_eq!(config.sync_period, Duration::from_secs(30));
        assert_eq!(config.min_sync_period, Duration::from_secs(1));
        assert_eq!(config.masquerade_bit, 14);
        assert!(config.localhost_node_ports);
        assert_eq!(config.node_port_addresses, NodePortAddresses::All);
        assert_eq!(config.detect_local, DetectLocal::ClusterCidr);
        assert_eq!(config.conntrack.max_per_core, 32768);
        assert_eq!(config.conntrack.min, 131072);
        assert_eq!(
            config.conntrack.tcp_established_timeout,
            Duration::from_secs(86400)
        );
        assert_eq!(
            config.source,
            SourceChoice::Api {
                kubeconfig: None,
                master: None
            }
        );
    }

    #[test]
    fn flags_set_values_without_a_file() {
        let config = resolve(
            &[
                "--hostname-override=node-0",
                "--cluster-cidr=10.244.0.0/16,fd00:10::/48",
                "--detect-local-mode=InterfaceNamePrefix",
                "--pod-interface-name-prefix=veth",
                "--nodeport-addresses=primary",
                "--metrics-bind-address=",
                "--conntrack-max-per-core=0",
                "--cluster-file=/tmp/cluster.yaml",
            ],
            None,
        )
        .expect("valid");
        assert_eq!(config.node_name, "node-0");
        assert_eq!(config.cluster_cidrs.len(), 2);
        assert_eq!(
            config.detect_local,
            DetectLocal::InterfaceNamePrefix("veth".into())
        );
        assert_eq!(config.node_port_addresses, NodePortAddresses::Primary);
        assert_eq!(config.metrics_bind_address, None);
        assert_eq!(config.conntrack.max_per_core, 0);
        assert_eq!(
            config.source,
            SourceChoice::ClusterFile("/tmp/cluster.yaml".into())
        );
    }

    const FILE: &str = "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
hostnameOverride: from-file
clusterCIDR: 10.96.0.0/12
clientConnection:
  kubeconfig: /etc/kproxy/kubeconfig
iptables:
  syncPeriod: 1m0s
  masqueradeBit: 15
metricsBindAddress: 0.0.0.0:10249
";

    #[test]
    fn the_file_wins_over_flags_except_hostname_override() {
        let argv = [
            "--config=/etc/kproxy/config.yaml",
            "--iptables-sync-period=5s",
            "--masquerade-all",
            "--master=https://10.0.0.1:6443",
        ];
        let (config, warnings) = AgentConfig::resolve(
            &args(&argv),
            Some(KubeProxyConfiguration::parse(FILE).expect("parses")),
            &host(),
        )
        .expect("valid");
        assert_eq!(config.node_name, "from-file");
        assert_eq!(config.sync_period, Duration::from_secs(60));
        assert_eq!(config.masquerade_bit, 15);
        assert!(!config.masquerade_all, "flag must be ignored with --config");
        assert_eq!(
            config.source,
            SourceChoice::Api {
                kubeconfig: Some("/etc/kproxy/kubeconfig".into()),
                master: Some("https://10.0.0.1:6443".into()),
            }
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("--masquerade-all --iptables-sync-period")),
            "{warnings:?}"
        );
        let overridden = resolve(&["--hostname-override=flag-node"], Some(FILE)).expect("valid");
        assert_eq!(overridden.node_name, "flag-node");
    }

    #[test]
    fn the_nftables_mode_reads_its_own_section() {
        let sections = "iptables:
  masqueradeAll: false
  masqueradeBit: 15
  syncPeriod: 1m0s
  minSyncPeriod: 5s
nftables:
  masqueradeAll: true
  masqueradeBit: 16
  syncPeriod: 2m0s
  minSyncPeriod: 3s
";
        let file = |mode: &str| format!("{FILE_HEADER}mode: {mode}\n{sections}");
        let nft = resolve(&[], Some(&file("nftables"))).expect("valid");
        assert_eq!(nft.mode, ModeName::Nftables);
        assert!(nft.masquerade_all);
        assert_eq!(nft.masquerade_bit, 16);
        assert_eq!(nft.sync_period, Duration::from_secs(120));
        assert_eq!(nft.min_sync_period, Duration::from_secs(3));
        let ipt = resolve(&[], Some(&file("iptables"))).expect("valid");
        assert!(!ipt.masquerade_all);
        assert_eq!(ipt.masquerade_bit, 15);
        assert_eq!(ipt.sync_period, Duration::from_secs(60));
        assert_eq!(ipt.min_sync_period, Duration::from_secs(5));
        let defaults = resolve(
            &[],
            Some(&format!(
                "{FILE_HEADER}mode: nftables\niptables:\n  masqueradeBit: 15\n"
            )),
        )
        .expect("valid");
        assert_eq!(
            defaults.masquerade_bit, 14,
            "the iptables section is not read"
        );
        assert_eq!(defaults.sync_period, Duration::from_secs(30));
        let bad = resolve(
            &[],
            Some(&format!(
                "{FILE_HEADER}mode: nftables\nnftables:\n  masqueradeBit: 32\n"
            )),
        );
        assert!(bad.is_err());
    }

    const FILE_HEADER: &str = "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
hostnameOverride: node-a
";

    #[test]
    fn invalid_values_name_the_flag() {
        let cases: [(&[&str], &str); 7] = [
            (
                &["--iptables-masquerade-bit=32"],
                "--iptables-masquerade-bit",
            ),
            (&["--cluster-cidr=10.0.0.0/8,10.1.0.0/16"], "--cluster-cidr"),
            (&["--cluster-cidr=banana"], "--cluster-cidr"),
            (
                &["--nodeport-addresses=primary,10.0.0.0/8"],
                "--nodeport-addresses",
            ),
            (
                &["--detect-local-mode=BridgeInterface"],
                "--pod-bridge-interface",
            ),
            (&["--proxy-mode=userspace"], "--proxy-mode"),
            (
                &["--iptables-sync-period=1s", "--iptables-min-sync-period=2s"],
                "--iptables-sync-period",
            ),
        ];
        for (argv, field) in cases {
            let error = resolve(argv, None).expect_err("accepted");
            assert!(error.to_string().starts_with(field), "{argv:?}: {error}");
        }
    }

    #[test]
    fn backend_from_flag_or_environment() {
        let env = HostDefaults {
            backend_env: Some("legacy".into()),
            ..host()
        };
        let (config, _) = AgentConfig::resolve(&args(&[]), None, &env).expect("valid");
        assert_eq!(config.iptables_backend, BackendChoice::Legacy);
        let (config, _) =
            AgentConfig::resolve(&args(&["--iptables-backend=nft"]), None, &env).expect("valid");
        assert_eq!(config.iptables_backend, BackendChoice::Nft);
    }
}
