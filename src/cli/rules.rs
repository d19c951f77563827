//! `kproxy rules`: print the iptables-restore input (or, with `--mode nftables`, the
//! `nft -f` batch) kproxy would apply for a cluster, without root and without touching the
//! kernel.

use clap::{Args, ValueEnum};
use ipnet::IpNet;
use kproxy_iptables::{IptablesProxier, IptablesSettings, LocalDetector};
use kproxy_model::{
    parse_cidr_sloppy, parse_manifest, ClusterStore, IpFamily, KubeObject, NodeFacts, Snapshot,
    SnapshotChanges,
};
use kproxy_nftables::{KernelView, LocalTrafficDetector, NftablesProxier, ProxierSettings};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `kproxy rules`.
#[derive(Debug, Args)]
pub struct RulesArgs {
    /// Manifest with Services, EndpointSlices and (optionally) the Node: multi-document
    /// YAML, JSON, or a List as `kubectl get -o yaml` prints.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// The node's name (default: the only Node in the file).
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// The node's IP addresses (default: the Node's InternalIPs).
    #[arg(long = "node-ip")]
    pub node_ips: Vec<IpAddr>,
    /// The cluster's pod CIDR(s), comma separated; traffic from it counts as pod traffic.
    #[arg(long)]
    pub cluster_cidr: Option<String>,
    /// Render the IPv6 ruleset instead of the IPv4 one.
    #[arg(long)]
    pub ipv6: bool,
    /// Masquerade all traffic to service IPs.
    #[arg(long)]
    pub masquerade_all: bool,
    /// Which bit of the fwmark marks packets for SNAT.
    #[arg(long, default_value_t = 14)]
    pub iptables_masquerade_bit: u32,
    /// Accept NodePorts on 127.0.0.0/8 (IPv4).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub iptables_localhost_nodeports: bool,
    /// Write `MASQUERADE --random-fully` (every iptables since 1.6.2 supports it).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub random_fully: bool,
    /// Add the nfacct counters current upstream kube-proxy adds.
    #[arg(long)]
    pub nfacct: bool,
    /// Which mode's rules: iptables-restore input, or the nftables mode's first `nft -f`
    /// batch into an absent table.
    #[arg(long, value_enum, default_value_t = RulesMode::Iptables)]
    pub mode: RulesMode,
}

/// The modes `kproxy rules` renders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RulesMode {
    /// iptables-restore input.
    Iptables,
    /// An `nft -f -` batch.
    Nftables,
}

/// Renders the cluster; returns the restore text and the warnings about skipped objects.
pub fn render(args: &RulesArgs) -> Result<(String, Vec<String>), String> {
    let text =
        std::fs::read_to_string(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let manifest = parse_manifest(&text).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let node = find_node(&manifest.objects, args.hostname_override.as_deref());
    let family = if args.ipv6 {
        IpFamily::V6
    } else {
        IpFamily::V4
    };
    let settings = settings(args, family, &node)?;
    let store = ClusterStore::from_objects(manifest.objects);
    let mut warnings = Vec::new();
    let snapshot = Snapshot::build(&store, family, &settings.topology.node_name, &mut warnings);
    let text = match args.mode {
        RulesMode::Iptables => {
            let mut proxier = IptablesProxier::new(settings);
            proxier
                .sync(&snapshot, &BTreeSet::new(), Instant::now())
                .restore
                .to_string()
        }
        RulesMode::Nftables => render_nftables(args, &settings, &snapshot, &mut warnings)?,
    };
    let mut messages: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    messages.extend(store.unowned_slices().map(|s| {
        format!("EndpointSlice {s}: metadata.labels: no kubernetes.io/service-name label; ignored")
    }));
    Ok((text, messages))
}

/// The nftables mode's first sync into an absent table, with the same node facts and
/// flags as the iptables rendering.
fn render_nftables(
    args: &RulesArgs,
    iptables: &IptablesSettings,
    snapshot: &Snapshot,
    warnings: &mut Vec<kproxy_model::ModelWarning>,
) -> Result<String, String> {
    let mut settings = ProxierSettings::new(iptables.family, &iptables.topology.node_name);
    settings.zone = iptables.topology.zone.clone();
    settings.node_ip = iptables.node_ip;
    settings.local_addresses = iptables.node_ip.into_iter().collect();
    settings.local_detector = match &iptables.local_detector {
        LocalDetector::Cidrs(nets) => nets.first().map_or(LocalTrafficDetector::None, |net| {
            LocalTrafficDetector::ClusterCidr(*net)
        }),
        _ => LocalTrafficDetector::None,
    };
    settings.masquerade_all = iptables.masquerade_all;
    settings.masquerade_bit = u8::try_from(args.iptables_masquerade_bit)
        .map_err(|_| "--iptables-masquerade-bit must be between 0 and 31".to_string())?;
    let mut proxier = NftablesProxier::new(settings).map_err(|e| e.to_string())?;
    proxier.observe(KernelView::Absent);
    let plan = proxier.sync(snapshot, &SnapshotChanges::default(), Instant::now());
    warnings.extend(plan.warnings);
    Ok(plan.main.render())
}

fn find_node(objects: &[KubeObject], name: Option<&str>) -> NodeFacts {
    let nodes: Vec<NodeFacts> = objects
        .iter()
        .filter_map(|o| match o {
            KubeObject::Node(n) => Some(NodeFacts::from_node(n)),
            _ => None,
        })
        .collect();
    match name {
        Some(name) => nodes
            .into_iter()
            .find(|n| n.name == name)
            .unwrap_or(NodeFacts {
                name: name.to_string(),
                ..NodeFacts::default()
            }),
        None if nodes.len() == 1 => nodes.into_iter().next().unwrap_or_default(),
        None => NodeFacts::default(),
    }
}

fn settings(
    args: &RulesArgs,
    family: IpFamily,
    node: &NodeFacts,
) -> Result<IptablesSettings, String> {
    let mut settings = IptablesSettings::new(family, &node.name);
    settings.topology = node.topology();
    let node_ips: Vec<IpAddr> = if args.node_ips.is_empty() {
        node.addresses.clone()
    } else {
        args.node_ips.clone()
    };
    settings.node_ip = node_ips
        .iter()
        .find(|ip| IpFamily::of(ip) == family)
        .copied();
    if let Some(cidrs) = &args.cluster_cidr {
        let nets: Vec<IpNet> = cidrs
            .split(',')
            .map(|c| {
                parse_cidr_sloppy(c.trim()).ok_or(format!("--cluster-cidr: {c:?} is not a CIDR"))
            })
            .collect::<Result<_, _>>()?;
        let nets: Vec<IpNet> = nets
            .into_iter()
            .filter(|n| IpFamily::of_net(n) == family)
            .collect();
        if !nets.is_empty() {
            settings.local_detector = LocalDetector::Cidrs(nets);
        }
    }
    settings.masquerade_all = args.masquerade_all;
    if args.iptables_masquerade_bit > 31 {
        return Err("--iptables-masquerade-bit must be between 0 and 31".into());
    }
    settings.masquerade_mark = kproxy_iptables::mark_for_bit(args.iptables_masquerade_bit);
    settings.localhost_node_ports = args.iptables_localhost_nodeports;
    settings.random_fully = args.random_fully;
    if args.nfacct {
        settings.nfacct_counters = vec![
            kproxy_iptables::settings::INVALID_DROPPED_COUNTER.to_string(),
            kproxy_iptables::settings::LOCALHOST_NODEPORT_COUNTER.to_string(),
        ];
    }
    Ok(settings)
}
