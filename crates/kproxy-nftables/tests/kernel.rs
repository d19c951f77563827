//! Applies real syncs with `nft -f -` inside a throwaway network namespace and reads the
//! table back. Needs root, `ip` and `nft`: without them the tests fail when `CI=true` and
//! are skipped loudly elsewhere. The root namespace's firewall is never touched.

use kproxy_model::{parse_manifest, ClusterStore, IpFamily, Snapshot, StoreEvent};
use kproxy_nftables::nft::listing::parse_listing;
use kproxy_nftables::nft::{Family, NftCommand, NftRunner};
use kproxy_nftables::trace::{Packet, Tracer};
use kproxy_nftables::{LocalTrafficDetector, NftablesProxier, ProxierSettings};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A network namespace deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn create(tag: &str) -> Result<Netns, String> {
        let name = format!("kproxy-nft-{}-{tag}", std::process::id());
        run(&["ip", "netns", "add", &name])?;
        Ok(Netns { name })
    }

    fn nft(&self) -> NftCommand {
        NftCommand::with_argv(
            ["ip", "netns", "exec", &self.name, "nft"]
                .map(String::from)
                .to_vec(),
        )
    }

    fn list(&self, family: &str) -> Result<String, String> {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.name,
            "nft",
            "list",
            "table",
            family,
            "kube-proxy",
        ])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

fn run(argv: &[&str]) -> Result<String, String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|e| format!("{}: {e}", argv.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A namespace, or `None` (after a loud message) when this machine cannot make one.
fn namespace(tag: &str) -> Option<Netns> {
    let missing = ["ip", "nft"]
        .iter()
        .find(|tool| Command::new(tool).arg("-V").output().is_err())
        .map(|tool| format!("`{tool}` is not installed"));
    let result = match missing {
        Some(reason) => Err(reason),
        None => Netns::create(tag).and_then(|ns| {
            run(&["ip", "netns", "exec", &ns.name, "nft", "list", "ruleset"]).map(|_| ns)
        }),
    };
    match result {
        Ok(ns) => Some(ns),
        Err(reason) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("kernel test cannot run under CI=true: {reason}")
        }
        Err(reason) => {
            eprintln!("\n*** SKIPPING nftables kernel test {tag}: {reason} (needs root, iproute2 and nftables) ***\n");
            None
        }
    }
}

fn case_file(case: &str, file: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/nftables");
    std::fs::read_to_string(root.join(case).join(file))
        .unwrap_or_else(|e| panic!("{case}/{file}: {e}"))
}

fn settings(family: IpFamily) -> ProxierSettings {
    let mut s = ProxierSettings::new(family, "test-node");
    let (node, pods, services, nodeports) = match family {
        IpFamily::V4 => (
            "192.168.0.2",
            "10.0.0.0/8",
            "172.30.0.0/16",
            "192.168.0.2/32",
        ),
        IpFamily::V6 => (
            "2001:db8::1",
            "fd00:10::/64",
            "fd00:10:96::/112",
            "2001:db8::1/128",
        ),
    };
    s.node_ip = node.parse().ok();
    s.local_addresses = vec![node.parse().expect("ip")];
    s.local_detector = LocalTrafficDetector::ClusterCidr(pods.parse().expect("cidr"));
    s.service_cidrs = vec![services.parse().expect("cidr")];
    s.node_port_addresses = vec![nodeports.parse().expect("cidr")];
    s
}

struct Cluster {
    store: ClusterStore,
    snapshot: Snapshot,
}

impl Cluster {
    fn new(yaml: &str, family: IpFamily) -> Cluster {
        let objects = parse_manifest(yaml).expect("cluster parses").objects;
        let mut store = ClusterStore::from_objects(objects);
        store.take_changes();
        let snapshot = Snapshot::build(&store, family, "test-node", &mut Vec::new());
        Cluster { store, snapshot }
    }

    fn apply(&mut self, yaml: &str) -> kproxy_model::SnapshotChanges {
        for object in parse_manifest(yaml).expect("update parses").objects {
            self.store.apply(StoreEvent::Apply(object));
        }
        let changes = self.store.take_changes();
        self.snapshot
            .refresh(&self.store, &changes.services, &mut Vec::new())
    }
}

const SVC1_SLICE_MOVED: &str = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}\n\
addressType: IPv4\nendpoints: [{addresses: [10.180.0.9]}]\nports: [{name: p80, port: 80, protocol: TCP}]\n";

#[test]
fn full_then_partial_sync_is_accepted_by_the_kernel() {
    let Some(ns) = namespace("v4") else { return };
    let mut nft = ns.nft();
    let mut cluster = Cluster::new(
        &case_file("TestOverallNFTablesRules", "cluster.yaml"),
        IpFamily::V4,
    );
    let mut proxier = NftablesProxier::new(settings(IpFamily::V4)).expect("settings");
    let start = Instant::now();

    let full = proxier
        .sync_with(&mut nft, &cluster.snapshot, &Default::default(), start)
        .expect("full sync applies");
    assert!(full.full);
    let listing = ns.list("ip").expect("table exists");
    assert!(
        listing.contains("chain service-ULMVA6XW-ns1/svc1/tcp/p80"),
        "{listing}"
    );
    assert!(
        listing.contains("set affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80"),
        "{listing}"
    );

    let state = parse_listing(&listing).expect("listing parses");
    let local = vec!["192.168.0.2".parse().expect("ip")];
    let tracer = Tracer::new(&state, Family::Ip, "kube-proxy", local).expect("table");
    let packet = Packet {
        src: "10.0.0.2".parse().expect("ip"),
        dst: "172.30.0.41".parse().expect("ip"),
        protocol: "tcp".into(),
        dport: 80,
    };
    assert_eq!(
        tracer.trace(&packet).expect("traces").output,
        "10.180.0.1:80"
    );

    let changes = cluster.apply(SVC1_SLICE_MOVED);
    let partial = proxier
        .sync_with(&mut nft, &cluster.snapshot, &changes, start)
        .expect("partial sync applies");
    assert!(!partial.full);
    assert_eq!(
        partial.operations, 9,
        "service and new endpoint chain rewritten, old one flushed"
    );
    let listing = ns.list("ip").expect("table exists");
    assert!(listing.contains("dnat to 10.180.0.9:80"), "{listing}");
    assert!(
        listing.contains("endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"),
        "stale chain kept a while"
    );

    let later = proxier
        .sync_with(
            &mut nft,
            &cluster.snapshot,
            &Default::default(),
            start + Duration::from_secs(2),
        )
        .expect("cleanup applies");
    assert_eq!(later.stale_chains_deleted, 1);
    assert_eq!(later.operations, 0);
    let listing = ns.list("ip").expect("table exists");
    assert!(
        !listing.contains("__10.180.0.1/80"),
        "stale chain deleted: {listing}"
    );
}

#[test]
fn ipv6_full_sync_is_accepted_and_restart_reuses_kernel_state() {
    let Some(ns) = namespace("v6") else { return };
    let mut nft = ns.nft();
    let cluster = Cluster::new(
        &case_file("TestNodePorts/ipv6", "cluster.yaml"),
        IpFamily::V6,
    );
    let mut proxier = NftablesProxier::new(settings(IpFamily::V6)).expect("settings");
    proxier
        .sync_with(
            &mut nft,
            &cluster.snapshot,
            &Default::default(),
            Instant::now(),
        )
        .expect("full sync applies");
    let listing = ns.list("ip6").expect("table exists");
    assert!(
        listing.contains("dnat to [fd00:10:180::2:1]:80"),
        "{listing}"
    );
    assert!(nft
        .list_table(Family::Ip6, "kube-proxy")
        .expect("lists")
        .is_some());

    let mut restarted = NftablesProxier::new(settings(IpFamily::V6)).expect("settings");
    let again = restarted
        .sync_with(
            &mut nft,
            &cluster.snapshot,
            &Default::default(),
            Instant::now(),
        )
        .expect("second full sync applies");
    let mut fresh = NftablesProxier::new(settings(IpFamily::V6)).expect("settings");
    fresh.observe(kproxy_nftables::KernelView::Absent);
    let from_scratch = fresh.sync(&cluster.snapshot, &Default::default(), Instant::now());
    assert!(
        again.operations < from_scratch.main.len(),
        "elements and endpoint chains already in the kernel are not re-sent"
    );
    kproxy_nftables::delete_tables(&mut nft, "kube-proxy").expect("cleanup");
    assert!(ns.list("ip6").is_err(), "table deleted");
}
