//! Reads a case's `proxier.yaml` (NewFakeProxier settings plus overrides) into
//! [`ProxierSettings`] and the tracer's local addresses.

use crate::settings::{LocalTrafficDetector, ProxierSettings};
use kproxy_model::{parse_cidr_sloppy, parse_ip_sloppy, IpFamily};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

/// The interfaces NewFakeProxier's fake network reports.
const DEFAULT_INTERFACES: [&str; 7] = [
    "127.0.0.1/8",
    "::1/128",
    "192.168.0.2/24",
    "192.168.1.2/24",
    "192.168.99.11/24",
    "2001:db8::1/64",
    "2001:db8:1::2/64",
];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LocalDetectorFile {
    mode: String,
    #[serde(default, rename = "clusterCIDR")]
    cluster_cidr: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProxierFile {
    ip_family: String,
    hostname: String,
    #[serde(default, rename = "nodeIP")]
    node_ip: Option<String>,
    local_detector: LocalDetectorFile,
    #[serde(default, rename = "serviceCIDRs")]
    service_cidrs: Vec<String>,
    #[serde(default)]
    node_port_addresses: Vec<String>,
    #[serde(default)]
    masquerade_mark: Option<String>,
    #[serde(default)]
    masquerade_all: bool,
    #[serde(default, rename = "tracerLocalIPs")]
    tracer_local_ips: Vec<String>,
    #[serde(default)]
    interfaces: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    expected_ops: Option<String>,
}

/// A case's proxier configuration.
#[derive(Debug, Clone)]
pub struct CaseSettings {
    /// The proxier settings.
    pub settings: ProxierSettings,
    /// Addresses `fib ... type local` treats as local.
    pub tracer_local_ips: Vec<IpAddr>,
    /// `expectedOps` as written (e.g. `setupOps + 14`).
    pub expected_ops: Option<String>,
}

fn ip(text: &str) -> Result<IpAddr, String> {
    parse_ip_sloppy(text.trim()).ok_or_else(|| format!("bad IP {text:?}"))
}

/// Reads `dir/proxier.yaml`.
pub fn load(dir: &Path) -> Result<CaseSettings, String> {
    let path = dir.join("proxier.yaml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: ProxierFile =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let family = match file.ip_family.as_str() {
        "IPv4" => IpFamily::V4,
        "IPv6" => IpFamily::V6,
        other => return Err(format!("proxier.yaml: unknown ipFamily {other:?}")),
    };
    let mut settings = ProxierSettings::new(family, file.hostname.clone());
    settings.node_ip = file.node_ip.as_deref().map(ip).transpose()?;
    settings.local_detector = match file.local_detector.mode.as_str() {
        "None" => LocalTrafficDetector::None,
        "ClusterCIDR" => {
            let text = file.local_detector.cluster_cidr.as_deref().unwrap_or("");
            LocalTrafficDetector::ClusterCidr(
                parse_cidr_sloppy(text).ok_or_else(|| format!("bad clusterCIDR {text:?}"))?,
            )
        }
        other => {
            return Err(format!(
                "proxier.yaml: unsupported localDetector mode {other:?}"
            ))
        }
    };
    settings.service_cidrs = cidrs(&file.service_cidrs)?;
    settings.node_port_addresses = cidrs(&file.node_port_addresses)?;
    settings.masquerade_all = file.masquerade_all;
    if let Some(mark) = &file.masquerade_mark {
        let value = u32::from_str_radix(mark.trim_start_matches("0x"), 16)
            .map_err(|_| format!("bad masqueradeMark {mark:?}"))?;
        if value.count_ones() != 1 {
            return Err(format!("masqueradeMark {mark:?} is not a single bit"));
        }
        settings.masquerade_bit = value.trailing_zeros() as u8;
    }
    let interfaces: Vec<String> = if file.interfaces.is_empty() {
        DEFAULT_INTERFACES.iter().map(|s| s.to_string()).collect()
    } else {
        file.interfaces.values().flatten().cloned().collect()
    };
    settings.local_addresses = interfaces
        .iter()
        .map(|a| ip(a.split('/').next().unwrap_or(a)))
        .collect::<Result<_, _>>()?;
    Ok(CaseSettings {
        settings,
        tracer_local_ips: file
            .tracer_local_ips
            .iter()
            .map(|s| ip(s))
            .collect::<Result<_, _>>()?,
        expected_ops: file.expected_ops,
    })
}

fn cidrs(texts: &[String]) -> Result<Vec<ipnet::IpNet>, String> {
    texts
        .iter()
        .map(|t| parse_cidr_sloppy(t.trim()).ok_or_else(|| format!("bad CIDR {t:?}")))
        .collect()
}
