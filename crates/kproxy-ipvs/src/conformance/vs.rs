//! Virtual servers as the cases list them, read from the fake IPVS table and from YAML, and
//! compared field by field.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use kproxy_model::parse_ip_sloppy;
use serde_json::Value;

use crate::handle::IpvsHandle;
use crate::types::{Protocol, ServiceKey, ServiceState};

use super::harness::Harness;
use super::yaml::{str_field, u64_field};

/// A virtual server reduced to what the cases compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VsView {
    pub(crate) scheduler: String,
    pub(crate) flags: Vec<String>,
    pub(crate) timeout: u64,
    /// `ip:port` with weight, sorted by the `ip:port` text.
    pub(crate) real_servers: BTreeMap<String, u64>,
}

/// The fake table's virtual servers by key (`10.0.0.1:80/TCP`).
pub(crate) fn actual_services(h: &mut Harness) -> Result<BTreeMap<String, VsView>, String> {
    let state = h.kernel.ipvs.state().map_err(|e| e.to_string())?;
    Ok(state
        .iter()
        .map(|s| (s.service.key.to_string(), view_of(s)))
        .collect())
}

fn view_of(state: &ServiceState) -> VsView {
    let vs = &state.service;
    let mut flags = Vec::new();
    if vs.persistence.is_some() {
        flags.push("persistent(0x1)".to_string());
    }
    if vs.sched_flags.port {
        flags.push("source-hash(0x10)".to_string());
    }
    VsView {
        scheduler: vs.scheduler.name().to_string(),
        flags,
        timeout: vs.persistence.map_or(0, |p| u64::from(p.timeout_secs)),
        real_servers: state
            .destinations
            .iter()
            .map(|d| (d.server.key.to_string(), u64::from(d.server.weight)))
            .collect(),
    }
}

/// One virtual server of a case file; fields left out are not compared.
pub(crate) struct ExpectedVs {
    pub(crate) key: String,
    pub(crate) address: IpAddr,
    scheduler: Option<String>,
    flags: Option<Vec<String>>,
    timeout: Option<u64>,
    real_servers: Option<BTreeMap<String, u64>>,
    pub(crate) bound: Option<bool>,
}

fn address(v: &Value) -> Result<IpAddr, String> {
    let text = str_field(v, "address")?;
    parse_ip_sloppy(text).ok_or_else(|| format!("{text:?} is not an address"))
}

/// Reads one listed virtual server.
pub(crate) fn expected_vs(v: &Value) -> Result<ExpectedVs, String> {
    let addr = address(v)?;
    let protocol = match str_field(v, "protocol")? {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        "SCTP" => Protocol::Sctp,
        other => return Err(format!("unknown protocol {other:?}")),
    };
    let port = u16::try_from(u64_field(v, "port")?).map_err(|e| e.to_string())?;
    let key = ServiceKey {
        addr,
        port,
        protocol,
    };
    let real_servers = match v.get("realServers") {
        None => None,
        Some(list) => Some(real_server_list(list)?),
    };
    let flags = match v.get("flags") {
        None => None,
        Some(list) => Some(super::yaml::string_list(list)?),
    };
    Ok(ExpectedVs {
        key: key.to_string(),
        address: addr,
        scheduler: v
            .get("scheduler")
            .and_then(Value::as_str)
            .map(str::to_string),
        flags,
        timeout: v.get("timeout").and_then(Value::as_u64),
        real_servers,
        bound: v.get("boundToKubeIpvs0").and_then(Value::as_bool),
    })
}

fn real_server_list(list: &Value) -> Result<BTreeMap<String, u64>, String> {
    let mut out = BTreeMap::new();
    for rs in list.as_array().ok_or("realServers: not a list")? {
        let key = crate::types::RealServerKey {
            addr: address(rs)?,
            port: u16::try_from(u64_field(rs, "port")?).map_err(|e| e.to_string())?,
        };
        out.insert(
            key.to_string(),
            rs.get("weight").and_then(Value::as_u64).unwrap_or(1),
        );
    }
    Ok(out)
}

impl ExpectedVs {
    /// Compares with the virtual server in the table, naming every differing field.
    pub(crate) fn check(&self, actual: Option<&VsView>) -> Result<(), String> {
        let Some(a) = actual else {
            return Err(format!("virtual server {} is missing", self.key));
        };
        let mut diffs = Vec::new();
        if self.scheduler.as_ref().is_some_and(|s| *s != a.scheduler) {
            diffs.push(format!(
                "scheduler {:?}, want {:?}",
                a.scheduler, self.scheduler
            ));
        }
        if self.flags.as_ref().is_some_and(|f| *f != a.flags) {
            diffs.push(format!("flags {:?}, want {:?}", a.flags, self.flags));
        }
        if self.timeout.is_some_and(|t| t != a.timeout) {
            diffs.push(format!("timeout {}, want {:?}", a.timeout, self.timeout));
        }
        if let Some(rs) = &self.real_servers {
            if *rs != a.real_servers {
                diffs.push(format!("real servers {:?}, want {rs:?}", a.real_servers));
            }
        }
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(format!("virtual server {}: {}", self.key, diffs.join("; ")))
        }
    }
}

/// Checks listed virtual servers; with `exact`, no other may exist.
pub(crate) fn check_listed(h: &mut Harness, list: &Value, exact: bool) -> Result<(), String> {
    let actual = actual_services(h)?;
    let mut wanted = BTreeSet::new();
    for item in list.as_array().ok_or("virtualServers: not a list")? {
        let want = expected_vs(item)?;
        want.check(actual.get(&want.key))?;
        if let Some(bound) = want.bound {
            let is_bound = h.kernel.link.addresses.contains(&want.address);
            if bound != is_bound {
                return Err(format!(
                    "{}: bound to kube-ipvs0 is {is_bound}, want {bound}",
                    want.key
                ));
            }
        }
        wanted.insert(want.key);
    }
    if exact {
        let extra: Vec<&String> = actual.keys().filter(|k| !wanted.contains(*k)).collect();
        if !extra.is_empty() {
            return Err(format!("unexpected virtual servers {extra:?}"));
        }
    }
    Ok(())
}

/// `realServersInOrder`: one list (the only virtual server) or a list per key.
pub(crate) fn check_in_order(h: &mut Harness, v: &Value) -> Result<(), String> {
    let actual = actual_services(h)?;
    let lists: Vec<(Option<String>, &Value)> = match v {
        Value::Array(_) => vec![(None, v)],
        Value::Object(map) => map.iter().map(|(k, l)| (Some(k.clone()), l)).collect(),
        _ => return Err("realServersInOrder: not a list or mapping".into()),
    };
    for (key, list) in lists {
        let want = super::yaml::string_list(list)?;
        let vs = match &key {
            Some(k) => actual.get(k),
            None if actual.len() == 1 => actual.values().next(),
            None => {
                return Err(format!(
                    "realServersInOrder: {} virtual servers",
                    actual.len()
                ))
            }
        };
        let got: Vec<String> = vs
            .map(|v| v.real_servers.keys().cloned().collect())
            .unwrap_or_default();
        if got != want {
            let name = key.unwrap_or_else(|| "the virtual server".into());
            return Err(format!("real servers of {name}: {got:?}, want {want:?}"));
        }
    }
    Ok(())
}
