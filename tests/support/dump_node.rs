//! A node shaped like a dump's `proxier.yaml`, with the real agent on it: a network
//! namespace with the listed interfaces (`lo`, and a veth per other interface whose peer
//! lives in a second namespace), the project's fake API server serving `cluster.yaml`
//! inside it, and `kproxy` started there with the dump's flags plus `--kubeconfig`.
//! Namespaces, the work directory and the agent go away on drop, also on failure.

use kproxy_lab::agent::{HEALTHZ_ADDR, METRICS_ADDR};
use kproxy_lab::{Agent, AgentBinary, LabApiServer, Netns, ProxyMode};
use kproxy_model::{parse_manifest, IpFamily, KubeObject};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// How long the agent may take to list the cluster and finish its first sync.
const FIRST_SYNC: Duration = Duration::from_secs(120);

/// kube-proxy flags that take `=true`/`=false` (or nothing, meaning true).
const BOOL_FLAGS: [&str; 2] = ["--masquerade-all", "--iptables-localhost-nodeports"];

/// A dump's `proxier.yaml`: the node upstream ran on and its settings.
pub struct DumpSettings {
    hostname: String,
    node_ips: Vec<String>,
    interfaces: Vec<(String, Vec<String>)>,
    detect_local_mode: String,
    cluster_cidrs: Vec<String>,
    masquerade_all: bool,
    masquerade_bit: u64,
    node_port_addresses: Vec<String>,
    localhost_node_ports: bool,
    backend: String,
    flags: Vec<String>,
}

impl DumpSettings {
    /// Reads `proxier.yaml`; an unknown key is an error (each key must be honoured).
    pub fn load(path: &Path) -> Result<DumpSettings, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        DumpSettings::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses `proxier.yaml` text.
    fn parse(text: &str) -> Result<DumpSettings, String> {
        let v: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        let known = [
            "hostname",
            "nodeIPs",
            "interfaces",
            "localDetector",
            "masqueradeAll",
            "masqueradeBit",
            "nodePortAddresses",
            "localhostNodePorts",
            "iptablesBackend",
            "flags",
        ];
        if let Some(unknown) = v
            .as_object()
            .ok_or("proxier.yaml is not a mapping")?
            .keys()
            .find(|k| !known.contains(&k.as_str()))
        {
            return Err(format!("proxier.yaml: key {unknown:?} is not handled"));
        }
        let str_of = |key: &str| -> Result<String, String> {
            v[key]
                .as_str()
                .map(str::to_string)
                .ok_or(format!("proxier.yaml: {key} missing"))
        };
        let interfaces = v["interfaces"]
            .as_object()
            .ok_or("proxier.yaml: interfaces missing")?
            .iter()
            .map(|(name, addresses)| (name.clone(), strings(addresses)))
            .collect();
        let detector = &v["localDetector"];
        let cluster_cidrs = match &detector["clusterCIDR"] {
            Value::String(one) => vec![one.clone()],
            many => strings(many),
        };
        Ok(DumpSettings {
            hostname: str_of("hostname")?,
            node_ips: strings(&v["nodeIPs"]),
            interfaces,
            detect_local_mode: detector["mode"].as_str().unwrap_or("").to_string(),
            cluster_cidrs,
            masquerade_all: v["masqueradeAll"].as_bool().unwrap_or(false),
            masquerade_bit: v["masqueradeBit"].as_u64().unwrap_or(14),
            node_port_addresses: strings(&v["nodePortAddresses"]),
            localhost_node_ports: v["localhostNodePorts"].as_bool().unwrap_or(true),
            backend: str_of("iptablesBackend")?,
            flags: str_of("flags")?
                .split_whitespace()
                .map(str::to_string)
                .collect(),
        })
    }

    /// The mode the dump was taken in (`iptablesBackend`).
    pub fn mode(&self) -> Result<ProxyMode, String> {
        match self.backend.as_str() {
            "legacy" => Ok(ProxyMode::IptablesLegacy),
            "nft" => Ok(ProxyMode::IptablesNft),
            other => Err(format!("proxier.yaml: unknown iptablesBackend {other:?}")),
        }
    }

    /// The agent's arguments: the dump's `flags`, then a flag for each setting the flags
    /// leave out (a setting the flags contradict is an error), then the test's own:
    /// `--kubeconfig`, servers on the lab's addresses, conntrack sysctls left alone.
    pub fn agent_args(&self, kubeconfig: &Path) -> Result<Vec<String>, String> {
        let mut args = self.flags.clone();
        let mut settings = vec![
            ("--hostname-override", self.hostname.clone()),
            ("--cluster-cidr", self.cluster_cidrs.join(",")),
            ("--masquerade-all", self.masquerade_all.to_string()),
            ("--iptables-masquerade-bit", self.masquerade_bit.to_string()),
            (
                "--iptables-localhost-nodeports",
                self.localhost_node_ports.to_string(),
            ),
            ("--iptables-backend", self.backend.clone()),
        ];
        if !self.detect_local_mode.is_empty() {
            settings.push(("--detect-local-mode", self.detect_local_mode.clone()));
        }
        if !self.node_port_addresses.is_empty() {
            settings.push(("--nodeport-addresses", self.node_port_addresses.join(",")));
        }
        for (flag, value) in settings {
            match flag_value(&self.flags, flag) {
                Some(given) if given == value => {}
                Some(given) => {
                    return Err(format!(
                        "proxier.yaml: flags say {flag} {given}, the settings {value}"
                    ))
                }
                None if BOOL_FLAGS.contains(&flag) => args.push(format!("{flag}={value}")),
                None => args.extend([flag.to_string(), value]),
            }
        }
        args.extend(
            [
                "--metrics-bind-address",
                METRICS_ADDR,
                "--healthz-bind-address",
                HEALTHZ_ADDR,
                "--conntrack-max-per-core",
                "0",
                "--conntrack-tcp-timeout-established",
                "0s",
                "--conntrack-tcp-timeout-close-wait",
                "0s",
                "--kubeconfig",
            ]
            .map(String::from),
        );
        args.push(kubeconfig.display().to_string());
        Ok(args)
    }

    /// A Node object for the hostname and node IPs, for a cluster that lacks one.
    fn node_manifest(&self) -> String {
        let addresses: Vec<String> = self
            .node_ips
            .iter()
            .map(|ip| format!("{{type: InternalIP, address: \"{ip}\"}}"))
            .collect();
        format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {}}}\nstatus: {{addresses: [{}]}}\n",
            self.hostname,
            addresses.join(", ")
        )
    }
}

/// A flag's value in a kube-proxy argument list (`--flag value`, `--flag=value`, or a bare
/// boolean flag).
pub fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter().enumerate().find_map(|(i, arg)| {
        if let Some(value) = arg.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            Some(value.to_string())
        } else if arg == flag && BOOL_FLAGS.contains(&flag) {
            Some("true".to_string())
        } else if arg == flag {
            args.get(i + 1).cloned()
        } else {
            None
        }
    })
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// A temporary directory, removed on drop.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Leftovers in /tmp are harmless; a failure here must not hide the test's own.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The node namespace with the agent synced on it. Field order is drop order: the agent
/// stops before the API server, which stops before the namespaces go.
pub struct DumpNode {
    agent: Agent,
    mode: ProxyMode,
    _api: LabApiServer,
    node: Netns,
    _peer: Netns,
    _work: WorkDir,
}

impl DumpNode {
    /// Builds the node for `settings`, serves `cluster` (a manifest) from the fake API
    /// server and waits for the agent's first complete sync.
    pub fn start(
        binary: &AgentBinary,
        settings: &DumpSettings,
        cluster: &str,
    ) -> Result<DumpNode, String> {
        let prefix = format!(
            "kpl-{}-d{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let work = WorkDir(std::env::temp_dir().join(&prefix));
        std::fs::create_dir_all(&work.0).map_err(|e| format!("{}: {e}", work.0.display()))?;
        let node = Netns::create(&format!("{prefix}-node")).map_err(|e| e.to_string())?;
        let peer = Netns::create(&format!("{prefix}-peer")).map_err(|e| e.to_string())?;
        shape_interfaces(&node, &peer, &settings.interfaces)?;
        let api = LabApiServer::start(&node).map_err(|e| e.to_string())?;
        api.apply_manifest(cluster).map_err(|e| e.to_string())?;
        if !has_node(cluster, &settings.hostname)? {
            api.apply_manifest(&settings.node_manifest())
                .map_err(|e| e.to_string())?;
        }
        let kubeconfig = work.0.join("kubeconfig");
        api.write_kubeconfig(&kubeconfig)
            .map_err(|e| e.to_string())?;
        let mode = settings.mode()?;
        let lock = work.0.join("xtables.lock").display().to_string();
        let mut agent = Agent::start_with_args(
            binary,
            &node,
            mode,
            &settings.agent_args(&kubeconfig)?,
            // The legacy tools' lock only guards this namespace's tables; the host's
            // /run/xtables.lock may be held by whatever else runs there.
            &[("XTABLES_LOCKFILE", lock.as_str())],
            &work.0.join("agent.log"),
        )
        .map_err(|e| e.to_string())?;
        agent.wait_synced(FIRST_SYNC).map_err(|e| e.to_string())?;
        Ok(DumpNode {
            agent,
            mode,
            _api: api,
            node,
            _peer: peer,
            _work: work,
        })
    }

    /// The rules of `family` as the kernel reports them (`iptables-save`).
    pub fn save(&self, family: IpFamily) -> Result<String, String> {
        self.mode
            .dump_rules(&self.node, family)
            .map_err(|e| e.to_string())
    }

    /// Stops the agent with SIGTERM; an error if it did not exit cleanly.
    pub fn stop(mut self) -> Result<(), String> {
        let status = self.agent.stop().map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "agent exited with {status}:\n{}",
                self.agent.log_tail(20)
            ))
        }
    }
}

fn has_node(cluster: &str, hostname: &str) -> Result<bool, String> {
    let manifest = parse_manifest(cluster).map_err(|e| e.to_string())?;
    Ok(manifest.objects.iter().any(|object| {
        matches!(object, KubeObject::Node(node)
            if node.metadata.name == hostname)
    }))
}

/// `lo` gets any address it lacks; every other interface becomes a veth whose peer (same
/// name) is in `peer`.
fn shape_interfaces(
    node: &Netns,
    peer: &Netns,
    interfaces: &[(String, Vec<String>)],
) -> Result<(), String> {
    let ip = |netns: &Netns, args: &[&str]| netns.ip(args).map(drop).map_err(|e| e.to_string());
    for (name, addresses) in interfaces {
        if name != "lo" {
            ip(
                node,
                &[
                    "link",
                    "add",
                    name,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    name,
                    "netns",
                    peer.name(),
                ],
            )?;
        }
        let present = node
            .ip(&["-o", "addr", "show", "dev", name])
            .map_err(|e| e.to_string())?;
        for address in addresses {
            if present.contains(&format!(" {address} ")) {
                continue;
            }
            let mut args = vec!["addr", "add", address.as_str(), "dev", name.as_str()];
            if address.contains(':') {
                args.push("nodad");
            }
            ip(node, &args)?;
        }
        ip(node, &["link", "set", name, "up"])?;
        if name != "lo" {
            ip(peer, &["link", "set", name, "up"])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROXIER: &str = r#"
hostname: node-0
nodeIPs: [192.168.50.10]
interfaces: {lo: [127.0.0.1/8], eth0: [192.168.50.10/24]}
localDetector: {mode: ClusterCIDR, clusterCIDR: [10.244.0.0/16, "fd00:10:244::/48"]}
masqueradeAll: true
masqueradeBit: 12
nodePortAddresses: [192.168.50.0/24]
localhostNodePorts: false
iptablesBackend: legacy
flags: "--proxy-mode iptables --hostname-override node-0 --masquerade-all"
"#;

    #[test]
    fn every_setting_becomes_a_flag_unless_the_flags_give_it() {
        let settings = DumpSettings::parse(PROXIER).expect("valid");
        let args = settings
            .agent_args(Path::new("/k"))
            .expect("consistent")
            .join(" ");
        for expected in [
            "--proxy-mode iptables --hostname-override node-0 --masquerade-all ",
            "--cluster-cidr 10.244.0.0/16,fd00:10:244::/48",
            "--iptables-masquerade-bit 12",
            "--iptables-localhost-nodeports=false",
            "--iptables-backend legacy",
            "--detect-local-mode ClusterCIDR",
            "--nodeport-addresses 192.168.50.0/24",
            "--kubeconfig /k",
        ] {
            assert!(args.contains(expected), "{expected:?} not in {args}");
        }
        assert_eq!(args.matches("--hostname-override").count(), 1);
        assert_eq!(args.matches("--masquerade-all").count(), 1);
        assert_eq!(settings.mode().expect("known"), ProxyMode::IptablesLegacy);
    }

    #[test]
    fn flags_that_contradict_a_setting_or_unknown_keys_are_errors() {
        let contradicting = PROXIER.replace("--hostname-override node-0", "--hostname-override x");
        let settings = DumpSettings::parse(&contradicting).expect("valid");
        assert!(settings.agent_args(Path::new("/k")).is_err());
        let unknown = format!("{PROXIER}conntrackTCPLiberal: true\n");
        assert!(DumpSettings::parse(&unknown).is_err());
    }

    #[test]
    fn a_missing_node_object_is_made_from_the_settings() {
        let settings = DumpSettings::parse(PROXIER).expect("valid");
        assert!(!has_node("", "node-0").expect("empty manifest"));
        assert!(has_node(&settings.node_manifest(), "node-0").expect("parses"));
    }
}
