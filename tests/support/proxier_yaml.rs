//! Reads a conformance case's `proxier.yaml` (upstream's fake-proxier settings).

use ipnet::IpNet;
use kproxy_iptables::{IptablesSettings, LocalDetector};
use kproxy_model::{parse_cidr_sloppy, parse_ip_sloppy, IpFamily};
use serde_json::Value;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// Settings for one case plus what the tracer needs.
pub struct CaseSettings {
    pub iptables: IptablesSettings,
    pub tracer_local_ips: Vec<IpAddr>,
}

pub fn read_yaml(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Interface addresses in file order (lo first, as the fake lists them).
fn interface_addresses(value: &Value) -> Vec<IpNet> {
    let mut out = Vec::new();
    for name in ["lo", "eth0"] {
        for text in strings(&value[name]) {
            if let Ok(net) = text.parse::<IpNet>() {
                out.push(net);
            }
        }
    }
    out
}

pub fn load(path: &Path) -> Result<CaseSettings, String> {
    let v = read_yaml(path)?;
    let family = match v["ipFamily"].as_str() {
        Some("IPv6") => IpFamily::V6,
        _ => IpFamily::V4,
    };
    let hostname = v["hostname"].as_str().unwrap_or("test-node");
    let mut s = IptablesSettings::new(family, hostname);
    s.node_ip = v["nodeIP"].as_str().and_then(parse_ip_sloppy).or_else(|| {
        strings(&v["nodeIPs"])
            .first()
            .and_then(|t| parse_ip_sloppy(t))
    });
    s.local_detector = match v["localDetector"]["mode"].as_str() {
        Some("ClusterCIDR") => {
            let cidr = v["localDetector"]["clusterCIDR"]
                .as_str()
                .and_then(parse_cidr_sloppy)
                .ok_or("localDetector.clusterCIDR missing")?;
            LocalDetector::Cidrs(vec![cidr])
        }
        _ => LocalDetector::None,
    };
    s.masquerade_all = v["masqueradeAll"].as_bool().unwrap_or(false);
    if let Some(mark) = v["masqueradeMark"].as_str() {
        s.masquerade_mark = mark.to_string();
    }
    s.localhost_node_ports = v["localhostNodePorts"].as_bool().unwrap_or(true);
    s.conntrack_tcp_liberal = v["conntrackTCPLiberal"].as_bool().unwrap_or(false);
    s.nfacct_counters = strings(&v["nfacctCounters"]);
    s.random_fully = v["iptablesHasRandomFully"].as_bool().unwrap_or(false);
    if let Some(period) = v["syncPeriod"].as_str() {
        let secs: u64 = period
            .trim_end_matches('s')
            .parse()
            .map_err(|_| "bad syncPeriod")?;
        s.sync_period = Duration::from_secs(secs);
    }
    let addresses = interface_addresses(&v["interfaces"]);
    let cidrs: Vec<IpNet> = strings(&v["nodePortAddresses"])
        .iter()
        .filter_map(|t| parse_cidr_sloppy(t))
        .filter(|c| IpFamily::of_net(c) == family)
        .collect();
    if !cidrs.is_empty() && !cidrs.iter().any(|c| c.prefix_len() == 0) {
        s.node_port_ips = Some(
            addresses
                .iter()
                .map(|a| a.addr())
                .filter(|ip| cidrs.iter().any(|c| c.contains(ip)))
                .collect(),
        );
    }
    let tracer_local_ips = strings(&v["tracerLocalIPs"])
        .iter()
        .filter_map(|t| parse_ip_sloppy(t))
        .collect();
    Ok(CaseSettings {
        iptables: s,
        tracer_local_ips,
    })
}
