//! Live upstream kube-proxy v1.30.3 dumps: every dump parses with nothing unknown, and a
//! pod's packet to every Service ClusterIP:port ends at that port's usable endpoints
//! (computed here from the EndpointSlices), or at REJECT/DROP when there are none.

use kproxy_trace::{DualStackRuleset, Packet, Protocol, Tracer};
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::collections::BTreeSet;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

const NODE: &str = "node-0";

fn dumps() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/dumps/upstream-v1.30.3");
    let mut dirs: Vec<PathBuf> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("iptables.save").exists())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty());
    dirs
}

fn objects(dir: &Path) -> Vec<Value> {
    let text = fs::read_to_string(dir.join("cluster.yaml")).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn local_ips(dir: &Path) -> Vec<IpAddr> {
    let proxier: Value =
        serde_yaml_ng::from_str(&fs::read_to_string(dir.join("proxier.yaml")).unwrap()).unwrap();
    let mut ips: Vec<IpAddr> = ["127.0.0.1", "::1", "192.168.50.10", "fd00:50::10"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    for ip in proxier["nodeIPs"].as_sequence().into_iter().flatten() {
        ips.push(ip.as_str().unwrap().parse().unwrap());
    }
    ips
}

fn text<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter().try_fold(v, |v, key| v.get(key))?.as_str()
}

/// One endpoint of an EndpointSlice with the conditions kube-proxy reads
/// (absent `ready` is true, absent `serving` follows `ready`, absent `terminating` is false).
struct Endpoint {
    address: IpAddr,
    port: u16,
    node: Option<String>,
    ready: bool,
    serving: bool,
    terminating: bool,
}

fn endpoints(objects: &[Value], ns: &str, svc: &str, port_name: &str, v6: bool) -> Vec<Endpoint> {
    let mut found = Vec::new();
    for slice in objects
        .iter()
        .filter(|o| text(o, &["kind"]) == Some("EndpointSlice"))
    {
        let owner = text(slice, &["metadata", "labels", "kubernetes.io/service-name"]);
        let family = text(slice, &["addressType"]) == Some(if v6 { "IPv6" } else { "IPv4" });
        if text(slice, &["metadata", "namespace"]) != Some(ns) || owner != Some(svc) || !family {
            continue;
        }
        let Some(port) = slice["ports"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|p| text(p, &["name"]).unwrap_or("") == port_name)
            .and_then(|p| p["port"].as_u64())
        else {
            continue;
        };
        for ep in slice["endpoints"].as_sequence().into_iter().flatten() {
            let cond = |name: &str| ep["conditions"].get(name).and_then(Value::as_bool);
            let ready = cond("ready").unwrap_or(true);
            for address in ep["addresses"].as_sequence().into_iter().flatten() {
                found.push(Endpoint {
                    address: address.as_str().unwrap().parse().unwrap(),
                    port: port as u16,
                    node: text(ep, &["nodeName"]).map(str::to_string),
                    ready,
                    serving: cond("serving").unwrap_or(ready),
                    terminating: cond("terminating").unwrap_or(false),
                });
            }
        }
    }
    found
}

/// Ready endpoints, or serving+terminating ones when none is ready.
fn usable<'e>(eps: impl Iterator<Item = &'e Endpoint> + Clone) -> Vec<&'e Endpoint> {
    let ready: Vec<_> = eps.clone().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    eps.filter(|e| e.serving && e.terminating).collect()
}

fn expected_output(eps: &[Endpoint], internal_local: bool, v6: bool) -> String {
    let cluster = usable(eps.iter());
    let chosen = if internal_local {
        usable(eps.iter().filter(|e| e.node.as_deref() == Some(NODE)))
    } else {
        cluster.clone()
    };
    if chosen.is_empty() {
        return if internal_local && !cluster.is_empty() {
            "DROP"
        } else {
            "REJECT"
        }
        .to_string();
    }
    let words: BTreeSet<String> = chosen
        .iter()
        .map(|e| {
            if v6 {
                format!("[{}]:{}", e.address, e.port)
            } else {
                format!("{}:{}", e.address, e.port)
            }
        })
        .collect();
    words.into_iter().collect::<Vec<_>>().join(", ")
}

#[test]
fn every_dump_parses_without_unknown_rules() {
    for dir in dumps() {
        let text = fs::read_to_string(dir.join("iptables.save")).unwrap();
        let rules = DualStackRuleset::parse(&text).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
        for family in [&rules.ipv4, &rules.ipv6] {
            assert!(family.rule_count() > 0, "{dir:?}");
            assert_eq!(family.unknown_rules(), [], "{dir:?}");
        }
    }
}

#[test]
fn pod_to_every_cluster_ip_reaches_the_usable_endpoints() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for dir in dumps() {
        let rules =
            DualStackRuleset::parse(&fs::read_to_string(dir.join("iptables.save")).unwrap())
                .unwrap();
        let local = local_ips(&dir);
        let tracers = [
            Tracer::new(&rules.ipv4, &local),
            Tracer::new(&rules.ipv6, &local),
        ];
        let objects = objects(&dir);
        for svc in objects
            .iter()
            .filter(|o| text(o, &["kind"]) == Some("Service"))
        {
            let ns = text(svc, &["metadata", "namespace"]).unwrap();
            let name = text(svc, &["metadata", "name"]).unwrap();
            let internal_local = text(svc, &["spec", "internalTrafficPolicy"]) == Some("Local");
            for cluster_ip in svc["spec"]["clusterIPs"]
                .as_sequence()
                .into_iter()
                .flatten()
            {
                let Ok(cluster_ip) = cluster_ip.as_str().unwrap().parse::<IpAddr>() else {
                    continue;
                };
                let v6 = cluster_ip.is_ipv6();
                let pod: IpAddr = if v6 {
                    "fd00:10:244::fa"
                } else {
                    "10.244.250.250"
                }
                .parse()
                .unwrap();
                for port in svc["spec"]["ports"].as_sequence().into_iter().flatten() {
                    let port_name = text(port, &["name"]).unwrap_or("");
                    let protocol: Protocol =
                        text(port, &["protocol"]).unwrap_or("TCP").parse().unwrap();
                    let number = port["port"].as_u64().unwrap() as u16;
                    let eps = endpoints(&objects, ns, name, port_name, v6);
                    let expected = expected_output(&eps, internal_local, v6);
                    let trace = tracers[usize::from(v6)]
                        .trace(&Packet::new(pod, cluster_ip, protocol, number));
                    checked += 1;
                    if trace.output() != expected {
                        failures.push(format!(
                            "{}: {ns}/{name}:{port_name} {protocol} {cluster_ip}:{number}: expected {expected:?}, got {:?}\n{}",
                            dir.display(),
                            trace.output(),
                            trace.render_tree()
                        ));
                    }
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} service ports checked");
    assert!(
        failures.is_empty(),
        "{} of {checked} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
