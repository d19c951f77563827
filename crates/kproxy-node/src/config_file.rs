//! The KubeProxyConfiguration file (`kubeproxy.config.k8s.io/v1alpha1`, YAML or JSON): the
//! fields kproxy reads, and every other field collected so it can be reported.

use crate::duration::parse_go_duration;
use serde::{Deserialize, Deserializer};
use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The config file's `apiVersion`.
pub const API_VERSION: &str = "kubeproxy.config.k8s.io/v1alpha1";
/// The config file's `kind`.
pub const KIND: &str = "KubeProxyConfiguration";

/// Fields kproxy knows and deliberately does not use (other modes, logging, profiling);
/// they are not reported as unknown.
const KNOWN_UNUSED: &[&str] = &[
    "featureGates",
    "enableProfiling",
    "showHiddenMetricsForVersion",
    "oomScoreAdj",
    "portRange",
    "bindAddressHardFail",
    "winkernel",
    "logging",
    "udpIdleTimeout",
    "acceptContentTypes",
    "contentType",
    "qps",
    "burst",
];

/// A parsed KubeProxyConfiguration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeProxyConfiguration {
    /// Must be [`API_VERSION`].
    pub api_version: Option<String>,
    /// Must be [`KIND`].
    pub kind: Option<String>,
    /// `clientConnection`.
    #[serde(default)]
    pub client_connection: ClientConnectionSection,
    /// `hostnameOverride`.
    pub hostname_override: Option<String>,
    /// `bindAddress`.
    pub bind_address: Option<String>,
    /// `healthzBindAddress`.
    pub healthz_bind_address: Option<String>,
    /// `metricsBindAddress`.
    pub metrics_bind_address: Option<String>,
    /// `mode`.
    pub mode: Option<String>,
    /// `clusterCIDR`.
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Option<String>,
    /// `detectLocalMode`.
    pub detect_local_mode: Option<String>,
    /// `detectLocal`.
    #[serde(default)]
    pub detect_local: DetectLocalSection,
    /// `iptables`.
    #[serde(default)]
    pub iptables: IptablesSection,
    /// `nodePortAddresses`.
    pub node_port_addresses: Option<Vec<String>>,
    /// `conntrack`.
    #[serde(default)]
    pub conntrack: ConntrackSection,
    /// `ipvs`.
    #[serde(default)]
    pub ipvs: IpvsSection,
    /// `nftables`.
    #[serde(default)]
    pub nftables: NftablesSection,
    /// `configSyncPeriod`.
    #[serde(default, deserialize_with = "go_duration")]
    pub config_sync_period: Option<Duration>,
    /// Every other top-level field.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `clientConnection`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConnectionSection {
    /// `kubeconfig`.
    pub kubeconfig: Option<String>,
    /// Every other field.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `detectLocal`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DetectLocalSection {
    /// `bridgeInterface`.
    pub bridge_interface: Option<String>,
    /// `interfaceNamePrefix`.
    pub interface_name_prefix: Option<String>,
    /// Every other field.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `iptables`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IptablesSection {
    /// `masqueradeAll`.
    pub masquerade_all: Option<bool>,
    /// `masqueradeBit`.
    pub masquerade_bit: Option<u32>,
    /// `localhostNodePorts`.
    pub localhost_node_ports: Option<bool>,
    /// `syncPeriod`.
    #[serde(default, deserialize_with = "go_duration")]
    pub sync_period: Option<Duration>,
    /// `minSyncPeriod`.
    #[serde(default, deserialize_with = "go_duration")]
    pub min_sync_period: Option<Duration>,
    /// Every other field.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `nftables`: what the nftables mode uses in place of the `iptables` section's fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NftablesSection {
    /// `masqueradeAll`.
    pub masquerade_all: Option<bool>,
    /// `masqueradeBit`.
    pub masquerade_bit: Option<u32>,
    /// `syncPeriod`.
    #[serde(default, deserialize_with = "go_duration")]
    pub sync_period: Option<Duration>,
    /// `minSyncPeriod`.
    #[serde(default, deserialize_with = "go_duration")]
    pub min_sync_period: Option<Duration>,
    /// Every other field.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `ipvs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpvsSection {
    /// `scheduler`.
    pub scheduler: Option<String>,
    /// `syncPeriod`.
    #[serde(default, deserialize_with = "go_duration")]
    pub sync_period: Option<Duration>,
    /// `minSyncPeriod`.
    #[serde(default, deserialize_with = "go_duration")]
    pub min_sync_period: Option<Duration>,
    /// `excludeCIDRs`.
    #[serde(rename = "excludeCIDRs")]
    pub exclude_cidrs: Option<Vec<String>>,
    /// `strictARP`.
    #[serde(rename = "strictARP")]
    pub strict_arp: Option<bool>,
    /// `tcpTimeout`.
    #[serde(default, deserialize_with = "go_duration")]
    pub tcp_timeout: Option<Duration>,
    /// `tcpFinTimeout`.
    #[serde(default, deserialize_with = "go_duration")]
    pub tcp_fin_timeout: Option<Duration>,
    /// `udpTimeout`.
    #[serde(default, deserialize_with = "go_duration")]
    pub udp_timeout: Option<Duration>,
    /// Every other field.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `conntrack`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConntrackSection {
    /// `maxPerCore`.
    pub max_per_core: Option<u32>,
    /// `min`.
    pub min: Option<u32>,
    /// `tcpEstablishedTimeout`.
    #[serde(default, deserialize_with = "go_duration")]
    pub tcp_established_timeout: Option<Duration>,
    /// `tcpCloseWaitTimeout`.
    #[serde(default, deserialize_with = "go_duration")]
    pub tcp_close_wait_timeout: Option<Duration>,
    /// `tcpBeLiberal`.
    pub tcp_be_liberal: Option<bool>,
    /// `udpTimeout`.
    #[serde(default, deserialize_with = "go_duration")]
    pub udp_timeout: Option<Duration>,
    /// `udpStreamTimeout`.
    #[serde(default, deserialize_with = "go_duration")]
    pub udp_stream_timeout: Option<Duration>,
    /// Every other field.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

fn go_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    let text = match &value {
        Value::Null => return Ok(None),
        Value::String(text) => text.trim().to_string(),
        Value::Number(number) => number.to_string(),
        other => format!("{other:?}"),
    };
    if text.is_empty() {
        return Ok(None);
    }
    parse_go_duration(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// Not YAML, or a field has the wrong type.
    #[error("{0}")]
    Parse(#[from] serde_yaml_ng::Error),
    /// Wrong `apiVersion` or `kind`.
    #[error("expected apiVersion {API_VERSION} and kind {KIND}, found apiVersion {api_version:?} and kind {kind:?}")]
    Type {
        /// The `apiVersion` found.
        api_version: String,
        /// The `kind` found.
        kind: String,
    },
}

impl KubeProxyConfiguration {
    /// Parses the file's text (YAML or JSON) and checks its type.
    pub fn parse(text: &str) -> Result<Self, ConfigFileError> {
        let config: KubeProxyConfiguration = serde_yaml_ng::from_str(text)?;
        let api_version = config.api_version.clone().unwrap_or_default();
        let kind = config.kind.clone().unwrap_or_default();
        if api_version != API_VERSION || kind != KIND {
            return Err(ConfigFileError::Type { api_version, kind });
        }
        Ok(config)
    }

    /// Fields present in the file that kproxy does not know (`iptables.foo`), for a
    /// warning; kube-proxy likewise falls back to lenient decoding with a warning.
    pub fn unknown_fields(&self) -> Vec<String> {
        let sections: [(&str, &BTreeMap<String, Value>); 7] = [
            ("", &self.other),
            ("clientConnection.", &self.client_connection.other),
            ("detectLocal.", &self.detect_local.other),
            ("iptables.", &self.iptables.other),
            ("conntrack.", &self.conntrack.other),
            ("ipvs.", &self.ipvs.other),
            ("nftables.", &self.nftables.other),
        ];
        sections
            .iter()
            .flat_map(|(prefix, other)| {
                other
                    .keys()
                    .filter(|key| !KNOWN_UNUSED.contains(&key.as_str()))
                    .map(move |key| format!("{prefix}{key}"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 5
clusterCIDR: 10.244.0.0/16
mode: iptables
iptables:
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 1s
  syncPeriod: 30s
conntrack:
  maxPerCore: null
  tcpEstablishedTimeout: 24h0m0s
  udpTimeout: 0s
ipvs:
  scheduler: rr
  strictARP: true
  excludeCIDRs: [10.1.0.0/16]
  tcpFinTimeout: 30s
nftables:
  masqueradeAll: true
  masqueradeBit: 15
  minSyncPeriod: 2s
  syncPeriod: 1m0s
nodePortAddresses: null
configSyncPeriod: 15m0s
someFutureField: 1
"#;

    #[test]
    fn parses_a_kubeadm_style_file() {
        let config = KubeProxyConfiguration::parse(SAMPLE).expect("parses");
        assert_eq!(
            config.client_connection.kubeconfig.as_deref(),
            Some("/var/lib/kube-proxy/kubeconfig.conf")
        );
        assert_eq!(config.cluster_cidr.as_deref(), Some("10.244.0.0/16"));
        assert_eq!(config.iptables.masquerade_bit, None);
        assert_eq!(config.iptables.sync_period, Some(Duration::from_secs(30)));
        assert_eq!(
            config.conntrack.tcp_established_timeout,
            Some(Duration::from_secs(86400))
        );
        assert_eq!(config.conntrack.udp_timeout, Some(Duration::ZERO));
        assert_eq!(config.config_sync_period, Some(Duration::from_secs(900)));
        assert_eq!(config.ipvs.scheduler.as_deref(), Some("rr"));
        assert_eq!(config.ipvs.strict_arp, Some(true));
        assert_eq!(config.ipvs.exclude_cidrs, Some(vec!["10.1.0.0/16".into()]));
        assert_eq!(config.ipvs.tcp_fin_timeout, Some(Duration::from_secs(30)));
        assert_eq!(config.nftables.masquerade_all, Some(true));
        assert_eq!(config.nftables.masquerade_bit, Some(15));
        assert_eq!(
            config.nftables.min_sync_period,
            Some(Duration::from_secs(2))
        );
        assert_eq!(config.nftables.sync_period, Some(Duration::from_secs(60)));
        assert_eq!(config.unknown_fields(), ["someFutureField"]);
    }

    #[test]
    fn refuses_other_types_and_bad_values() {
        let wrong_kind =
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeletConfiguration\n";
        assert!(matches!(
            KubeProxyConfiguration::parse(wrong_kind),
            Err(ConfigFileError::Type { .. })
        ));
        let bad_duration =
            format!("apiVersion: {API_VERSION}\nkind: {KIND}\niptables:\n  syncPeriod: 30\n");
        let error = KubeProxyConfiguration::parse(&bad_duration).expect_err("accepted");
        assert!(error.to_string().contains("Go syntax"), "{error}");
    }
}
