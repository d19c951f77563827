//! kube-proxy's command-line flags, plus kproxy's own (`--cluster-file`,
//! `--iptables-backend`, `--iptables-restore-timeout`).
//!
//! Every flag that maps to a config-file field is an `Option`, so [`crate::config`] can
//! tell "given on the command line" from "left at the default".

use crate::duration::{parse_go_duration, DurationError};
use std::path::PathBuf;
use std::time::Duration;

/// The node agent's flags, as kube-proxy spells them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AgentArgs {
    /// The path to the configuration file (KubeProxyConfiguration,
    /// kubeproxy.config.k8s.io/v1alpha1). As in kube-proxy, the file's values win over
    /// the flags below except --hostname-override, --master, --v and kproxy's own flags.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Path to kubeconfig file with authorization information.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The address of the Kubernetes API server (overrides any value in kubeconfig).
    #[arg(long, value_name = "URL")]
    pub master: Option<String>,

    /// If non-empty, will be used as the name of the Node that kproxy is running on.
    #[arg(long, value_name = "NAME")]
    pub hostname_override: Option<String>,

    /// Overrides kproxy's idea of the node's primary IP (0.0.0.0 or :: means detect it).
    #[arg(long, value_name = "IP")]
    pub bind_address: Option<String>,

    /// Which proxy mode to use: iptables (default), ipvs or nftables.
    #[arg(long, value_name = "MODE")]
    pub proxy_mode: Option<String>,

    /// The CIDR range(s) of pods in the cluster, comma-separated for dual-stack.
    #[arg(long, value_name = "CIDRS")]
    pub cluster_cidr: Option<String>,

    /// How to tell pod traffic apart: ClusterCIDR, NodeCIDR, BridgeInterface or
    /// InterfaceNamePrefix.
    #[arg(long, value_name = "MODE")]
    pub detect_local_mode: Option<String>,

    /// Bridge interface name, with --detect-local-mode=BridgeInterface.
    #[arg(long, value_name = "NAME")]
    pub pod_bridge_interface: Option<String>,

    /// Interface name prefix, with --detect-local-mode=InterfaceNamePrefix.
    #[arg(long, value_name = "PREFIX")]
    pub pod_interface_name_prefix: Option<String>,

    /// SNAT all traffic sent via Service cluster IPs.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub masquerade_all: Option<bool>,

    /// The bit of the fwmark space that marks packets requiring SNAT (0 to 31).
    #[arg(long, value_name = "BIT")]
    pub iptables_masquerade_bit: Option<u32>,

    /// Accept NodePort connections on 127.0.0.0/8 (IPv4 only).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub iptables_localhost_nodeports: Option<bool>,

    /// The maximum interval between rule refreshes (e.g. 30s, 1m0s).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub iptables_sync_period: Option<Duration>,

    /// The minimum interval between rule syncs after a change (e.g. 1s, 500ms).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub iptables_min_sync_period: Option<Duration>,

    /// Addresses that accept NodePorts: comma-separated CIDRs, or `primary`.
    #[arg(long, value_name = "CIDRS", value_delimiter = ',')]
    pub nodeport_addresses: Option<Vec<String>>,

    /// How often configuration from the API server is refreshed (must be > 0).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub config_sync_period: Option<Duration>,

    /// The IP:port for the metrics server (empty disables it).
    #[arg(long, value_name = "IP:PORT")]
    pub metrics_bind_address: Option<String>,

    /// The IP:port for the health check server (empty disables it).
    #[arg(long, value_name = "IP:PORT")]
    pub healthz_bind_address: Option<String>,

    /// Maximum number of NAT connections to track per CPU core (0 leaves the limit alone).
    #[arg(long, value_name = "N")]
    pub conntrack_max_per_core: Option<u32>,

    /// Minimum number of conntrack entries to allocate, regardless of max-per-core.
    #[arg(long, value_name = "N")]
    pub conntrack_min: Option<u32>,

    /// Idle timeout for established TCP connections (0 leaves it alone).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub conntrack_tcp_timeout_established: Option<Duration>,

    /// NAT timeout for TCP connections in CLOSE_WAIT (0 leaves it alone).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub conntrack_tcp_timeout_close_wait: Option<Duration>,

    /// Accept out-of-window TCP packets (nf_conntrack_tcp_be_liberal=1).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub conntrack_tcp_be_liberal: Option<bool>,

    /// Idle timeout for UNREPLIED UDP connections (0 leaves it alone).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub conntrack_udp_timeout: Option<Duration>,

    /// Idle timeout for ASSURED UDP connections (0 leaves it alone).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub conntrack_udp_timeout_stream: Option<Duration>,

    /// The IPVS scheduler (rr when empty; wrr, lc, sh, mh, ...).
    #[arg(long, value_name = "NAME")]
    pub ipvs_scheduler: Option<String>,

    /// The maximum interval between IPVS rule refreshes (e.g. 30s).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub ipvs_sync_period: Option<Duration>,

    /// The minimum interval between IPVS rule syncs after a change (e.g. 5s).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub ipvs_min_sync_period: Option<Duration>,

    /// CIDRs whose IPVS virtual servers kproxy leaves alone, comma-separated.
    #[arg(long, value_name = "CIDRS", value_delimiter = ',')]
    pub ipvs_exclude_cidrs: Option<Vec<String>>,

    /// Set arp_ignore and arp_announce for IPVS.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub ipvs_strict_arp: Option<bool>,

    /// IPVS timeout for idle TCP connections (0 keeps the kernel's).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub ipvs_tcp_timeout: Option<Duration>,

    /// IPVS timeout for TCP connections after a FIN (0 keeps the kernel's).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub ipvs_tcpfin_timeout: Option<Duration>,

    /// IPVS timeout for UDP packets (0 keeps the kernel's).
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub ipvs_udp_timeout: Option<Duration>,

    /// Remove everything kube-proxy and kproxy installed in the kernel, then exit.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub cleanup: Option<bool>,

    /// Log verbosity (0 to 10).
    #[arg(short = 'v', long = "v", value_name = "LEVEL")]
    pub verbosity: Option<u8>,

    /// kproxy: read Services, EndpointSlices and the Node from this manifest file or
    /// directory (watched) instead of the API server.
    #[arg(long, value_name = "PATH")]
    pub cluster_file: Option<PathBuf>,

    /// kproxy: iptables backend: auto (as upstream's wrapper), nft or legacy. Without
    /// the flag, the environment variable KPROXY_IPTABLES_BACKEND is read.
    #[arg(long, value_name = "BACKEND")]
    pub iptables_backend: Option<String>,

    /// kproxy: kill an iptables-restore that runs longer than this.
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub iptables_restore_timeout: Option<Duration>,
}

fn duration_arg(text: &str) -> Result<Duration, DurationError> {
    parse_go_duration(text)
}

impl AgentArgs {
    /// The config-file-backed flags that were given, by flag name (for the warning that
    /// they are ignored when `--config` is used).
    pub fn config_flags_given(&self) -> Vec<&'static str> {
        let given = [
            ("--kubeconfig", self.kubeconfig.is_some()),
            ("--bind-address", self.bind_address.is_some()),
            ("--proxy-mode", self.proxy_mode.is_some()),
            ("--cluster-cidr", self.cluster_cidr.is_some()),
            ("--detect-local-mode", self.detect_local_mode.is_some()),
            (
                "--pod-bridge-interface",
                self.pod_bridge_interface.is_some(),
            ),
            (
                "--pod-interface-name-prefix",
                self.pod_interface_name_prefix.is_some(),
            ),
            ("--masquerade-all", self.masquerade_all.is_some()),
            (
                "--iptables-masquerade-bit",
                self.iptables_masquerade_bit.is_some(),
            ),
            (
                "--iptables-localhost-nodeports",
                self.iptables_localhost_nodeports.is_some(),
            ),
            (
                "--iptables-sync-period",
                self.iptables_sync_period.is_some(),
            ),
            (
                "--iptables-min-sync-period",
                self.iptables_min_sync_period.is_some(),
            ),
            ("--nodeport-addresses", self.nodeport_addresses.is_some()),
            ("--ipvs-scheduler", self.ipvs_scheduler.is_some()),
            ("--ipvs-sync-period", self.ipvs_sync_period.is_some()),
            (
                "--ipvs-min-sync-period",
                self.ipvs_min_sync_period.is_some(),
            ),
            ("--ipvs-exclude-cidrs", self.ipvs_exclude_cidrs.is_some()),
            ("--ipvs-strict-arp", self.ipvs_strict_arp.is_some()),
            ("--ipvs-tcp-timeout", self.ipvs_tcp_timeout.is_some()),
            ("--ipvs-tcpfin-timeout", self.ipvs_tcpfin_timeout.is_some()),
            ("--ipvs-udp-timeout", self.ipvs_udp_timeout.is_some()),
            ("--config-sync-period", self.config_sync_period.is_some()),
            (
                "--metrics-bind-address",
                self.metrics_bind_address.is_some(),
            ),
            (
                "--healthz-bind-address",
                self.healthz_bind_address.is_some(),
            ),
            (
                "--conntrack-max-per-core",
                self.conntrack_max_per_core.is_some(),
            ),
            ("--conntrack-min", self.conntrack_min.is_some()),
            (
                "--conntrack-tcp-timeout-established",
                self.conntrack_tcp_timeout_established.is_some(),
            ),
            (
                "--conntrack-tcp-timeout-close-wait",
                self.conntrack_tcp_timeout_close_wait.is_some(),
            ),
            (
                "--conntrack-tcp-be-liberal",
                self.conntrack_tcp_be_liberal.is_some(),
            ),
            (
                "--conntrack-udp-timeout",
                self.conntrack_udp_timeout.is_some(),
            ),
            (
                "--conntrack-udp-timeout-stream",
                self.conntrack_udp_timeout_stream.is_some(),
            ),
        ];
        given
            .into_iter()
            .filter(|(_, set)| *set)
            .map(|(name, _)| name)
            .collect()
    }

    /// Whether `--cleanup` was given (and not `--cleanup=false`).
    pub fn cleanup_requested(&self) -> bool {
        self.cleanup.unwrap_or(false)
    }
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

    fn parse(args: &[&str]) -> Result<AgentArgs, clap::Error> {
        let argv = std::iter::once("kproxy").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.args)
    }

    #[test]
    fn parses_kube_proxy_spellings() {
        let args = parse(&[
            "--proxy-mode=iptables",
            "--hostname-override",
            "node-0",
            "--cluster-cidr=10.244.0.0/16,fd00:10::/48",
            "--masquerade-all",
            "--iptables-localhost-nodeports=false",
            "--iptables-sync-period=1m0s",
            "--iptables-min-sync-period",
            "500ms",
            "--nodeport-addresses=10.0.0.0/8,primary",
            "--v=4",
        ])
        .expect("parses");
        assert_eq!(args.proxy_mode.as_deref(), Some("iptables"));
        assert_eq!(args.hostname_override.as_deref(), Some("node-0"));
        assert_eq!(args.masquerade_all, Some(true));
        assert_eq!(args.iptables_localhost_nodeports, Some(false));
        assert_eq!(args.iptables_sync_period, Some(Duration::from_secs(60)));
        assert_eq!(
            args.iptables_min_sync_period,
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            args.nodeport_addresses,
            Some(vec!["10.0.0.0/8".to_string(), "primary".to_string()])
        );
        assert_eq!(args.verbosity, Some(4));
        assert_eq!(
            args.config_flags_given(),
            [
                "--proxy-mode",
                "--cluster-cidr",
                "--masquerade-all",
                "--iptables-localhost-nodeports",
                "--iptables-sync-period",
                "--iptables-min-sync-period",
                "--nodeport-addresses",
            ]
        );
    }

    #[test]
    fn unknown_flags_and_bad_durations_are_errors() {
        let unknown = parse(&["--no-such-flag"]).expect_err("unknown flag accepted");
        assert_eq!(unknown.kind(), clap::error::ErrorKind::UnknownArgument);
        let bad = parse(&["--iptables-sync-period=30"]).expect_err("bad duration accepted");
        assert!(bad.to_string().contains("Go syntax"), "{bad}");
    }

    #[test]
    fn cleanup_flag() {
        assert!(parse(&["--cleanup"]).expect("parses").cleanup_requested());
        assert!(!parse(&["--cleanup=false"])
            .expect("parses")
            .cleanup_requested());
        assert!(!parse(&[]).expect("parses").cleanup_requested());
    }
}
