//! A case's `proxier.yaml`: the fake proxier's settings, as kproxy settings plus the host
//! addresses the fake kernel reports.

use std::net::IpAddr;

use kproxy_model::{parse_cidr_sloppy, parse_ip_sloppy, IpFamily};
use serde_json::Value;

use crate::mode::IpvsSettings;

use super::yaml::{bool_field, str_field, string_list};

/// The settings of one case.
pub(crate) struct CaseSettings {
    pub(crate) ipvs: IpvsSettings,
    pub(crate) host_addresses: Vec<IpAddr>,
}

const DOCUMENTATION: [&str; 3] = ["upstreamTest", "source", "masqueradeMark"];

/// Reads `proxier.yaml`. Keys it does not know make the case fail: a setting kproxy does
/// not apply would make the comparison meaningless.
pub(crate) fn case_settings(v: &Value) -> Result<CaseSettings, String> {
    let map = v.as_object().ok_or("proxier.yaml: not a mapping")?;
    let family = match str_field(v, "ipFamily")? {
        "IPv4" => IpFamily::V4,
        "IPv6" => IpFamily::V6,
        other => return Err(format!("proxier.yaml: unknown ipFamily {other:?}")),
    };
    let mut ipvs = IpvsSettings::new(family, str_field(v, "hostname")?);
    let mut host_addresses = Vec::new();
    for (key, value) in map {
        match key.as_str() {
            k if DOCUMENTATION.contains(&k) => {}
            "ipFamily" | "hostname" => {}
            "scheduler" => {
                let flag = value.as_str().ok_or("scheduler: not a string")?;
                ipvs.scheduler = IpvsSettings::scheduler_from_flag(flag);
            }
            "netlinkLocalAddresses" | "networkInterfaces" => {
                host_addresses.extend(interface_addresses(key, value)?);
            }
            "nodePortAddresses" => ipvs.node_port_addresses = cidrs(key, value)?,
            "excludeCIDRs" => ipvs.exclude_cidrs = cidrs(key, value)?,
            "nodeIP" => {
                ipvs.node_ip = match value.as_str() {
                    None => None,
                    Some(text) => Some(parse_ip_sloppy(text).ok_or("nodeIP: not an address")?),
                }
            }
            "localDetector" => {
                let text = value.as_str().unwrap_or("");
                if !text.starts_with("none") {
                    return Err(format!(
                        "localDetector {text:?} is not supported by the harness"
                    ));
                }
            }
            "masqueradeAll" => ipvs.masquerade_all = bool_field(v, key)?,
            "ipsetNamesIPv6Prefixed" => ipvs.prefixed_ipv6_set_names = bool_field(v, key)?,
            "iptablesHasRandomFully" => ipvs.random_fully = bool_field(v, key)?,
            "initialized" => {
                if !bool_field(v, key)? {
                    return Err("initialized: false is not supported by the harness".into());
                }
            }
            other => return Err(format!("proxier.yaml: unknown setting {other:?}")),
        }
    }
    host_addresses.sort();
    host_addresses.dedup();
    Ok(CaseSettings {
        ipvs,
        host_addresses,
    })
}

fn interface_addresses(key: &str, value: &Value) -> Result<Vec<IpAddr>, String> {
    let map = value
        .as_object()
        .ok_or_else(|| format!("{key}: not a mapping"))?;
    let mut out = Vec::new();
    for (iface, list) in map {
        for text in string_list(list).map_err(|e| format!("{key}.{iface}: {e}"))? {
            let addr = text.split('/').next().unwrap_or("");
            let ip = parse_ip_sloppy(addr)
                .ok_or_else(|| format!("{key}.{iface}: {text:?} is not an address"))?;
            out.push(ip);
        }
    }
    Ok(out)
}

fn cidrs(key: &str, value: &Value) -> Result<Vec<ipnet::IpNet>, String> {
    string_list(value)
        .map_err(|e| format!("{key}: {e}"))?
        .iter()
        .map(|t| parse_cidr_sloppy(t).ok_or_else(|| format!("{key}: {t:?} is not a CIDR")))
        .collect()
}
