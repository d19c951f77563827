//! Applies real syncs with `nft -f -` inside a throwaway network namespace and reads the
//! table back. Needs root, `ip` and `nft`: without them the tests fail when `CI=true` and
//! are skipped loudly elsewhere. The root namespace's firewall is never touched.

use kproxy_model::{parse_manifest, ClusterStore, IpFamily, Snapshot, StoreEvent};
use kproxy_nftables::nft::listing::parse_listing;
use kproxy_nftables::nft::{
    wire, Family, NftCommand, NftError, NftRunner, TableState, Transaction,
};
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

/// Runs `work` on a thread inside network namespace `name`.
fn in_netns<T: Send>(name: &str, work: impl FnOnce() -> T + Send) -> T {
    let path = format!("/var/run/netns/{name}");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                use std::os::fd::AsRawFd;
                // SAFETY: setns on a valid namespace descriptor, for this thread only.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}");
                work()
            })
            .join()
            .expect("netns thread")
    })
}

/// Applies what the netlink writer encodes over netlink in `ns`, the rest with `nft`,
/// and counts the batches that went over netlink.
struct WireFirst<'a> {
    ns: &'a Netns,
    nft: NftCommand,
    over_netlink: usize,
}

impl NftRunner for WireFirst<'_> {
    fn run(&mut self, tx: &Transaction) -> Result<(), NftError> {
        let applied = in_netns(&self.ns.name, || wire::apply(tx));
        match applied {
            Ok(true) => {
                self.over_netlink += 1;
                Ok(())
            }
            Ok(false) => self.nft.run(tx),
            Err(e) => panic!(
                "the kernel refused a batch nft would apply: {e}\n{}",
                tx.render()
            ),
        }
    }

    fn check(&mut self, tx: &Transaction) -> Result<(), NftError> {
        self.nft.check(tx)
    }

    fn list_table(&mut self, family: Family, table: &str) -> Result<Option<TableState>, NftError> {
        self.nft.list_table(family, table)
    }
}

/// The table as the kernel holds it: every set's elements and every rule's expressions
/// (`nft --debug=netlink`), then the listing. Elements of a set come in hash order, so
/// they are sorted.
fn kernel_view(ns: &Netns, family: &str) -> String {
    let text = run(&[
        "ip",
        "netns",
        "exec",
        &ns.name,
        "nft",
        "--debug=netlink",
        "list",
        "table",
        family,
        "kube-proxy",
    ])
    .expect("table lists");
    let mut view = String::new();
    let mut elements: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.starts_with("\telement ") {
            elements.push(line);
            continue;
        }
        elements.sort_unstable();
        elements.drain(..).for_each(|e| view.extend([e, "\n"]));
        view.extend([line, "\n"]);
    }
    view
}

/// Asserts that the two namespaces' tables are the same, naming the first line that
/// differs.
fn assert_same_tables(by_wire: &Netns, by_nft: &Netns, family: &str, when: &str) {
    let wired = kernel_view(by_wire, family);
    let reference = kernel_view(by_nft, family);
    if let Some((line, (a, b))) = wired
        .lines()
        .zip(reference.lines())
        .enumerate()
        .find(|(_, (a, b))| a != b)
    {
        panic!(
            "{when}, line {}: over netlink `{a}`, with nft `{b}`",
            line + 1
        );
    }
    assert_eq!(wired, reference, "{when}");
}

const NEW_SERVICE: &str = "apiVersion: v1\nkind: Service\n\
metadata: {name: svc9, namespace: ns9}\n\
spec: {clusterIP: 172.30.0.49, ports: [{name: p80, port: 80, protocol: TCP}, {name: p53, port: 53, protocol: UDP}]}\n\
---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
metadata: {name: svc9-1, namespace: ns9, labels: {kubernetes.io/service-name: svc9}}\n\
addressType: IPv4\nendpoints: [{addresses: [10.180.9.1]}, {addresses: [10.180.9.2]}, {addresses: [10.180.9.3]}]\n\
ports: [{name: p80, port: 80, protocol: TCP}, {name: p53, port: 53, protocol: UDP}]\n";

const NEW_SERVICE_EMPTIED: &str = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
metadata: {name: svc9-1, namespace: ns9, labels: {kubernetes.io/service-name: svc9}}\n\
addressType: IPv4\nendpoints: []\nports: [{name: p80, port: 80, protocol: TCP}, {name: p53, port: 53, protocol: UDP}]\n";

const SVC1_V6_SLICE_MOVED: &str = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}\n\
addressType: IPv6\nendpoints: [{addresses: [\"fd00:10:180::9\"]}, {addresses: [\"fd00:10:180::2:1\"], nodeName: test-node}]\n\
ports: [{name: p80, port: 80, protocol: TCP}]\n";

const NEW_V6_SERVICE: &str = "apiVersion: v1\nkind: Service\n\
metadata: {name: svc9, namespace: ns9}\n\
spec: {clusterIP: \"fd00:172:30::49\", ipFamilies: [IPv6], ports: [{name: p80, port: 80, protocol: TCP}]}\n\
---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
metadata: {name: svc9-1, namespace: ns9, labels: {kubernetes.io/service-name: svc9}}\n\
addressType: IPv6\nendpoints: [{addresses: [\"fd00:10:180::9:1\"]}, {addresses: [\"fd00:10:180::9:2\"]}]\n\
ports: [{name: p80, port: 80, protocol: TCP}]\n";

/// Runs the same syncs in two namespaces, one applying every batch with `nft`, the other
/// over netlink where the writer encodes it, and compares the kernel's tables after each
/// step. Returns how many batches went over netlink, and the final table.
fn compare_partial_syncs(
    tag: &str,
    family: IpFamily,
    case: &str,
    steps: &[(&str, Option<&str>, u64)],
) -> Option<(usize, String)> {
    let by_nft = namespace(&format!("{tag}-nft"))?;
    let by_wire = namespace(&format!("{tag}-wire"))?;
    let table_family = match family {
        IpFamily::V4 => "ip",
        IpFamily::V6 => "ip6",
    };
    let yaml = case_file(case, "cluster.yaml");
    let mut reference = (
        Cluster::new(&yaml, family),
        NftablesProxier::new(settings(family)).expect("settings"),
        by_nft.nft(),
    );
    let mut tested = (
        Cluster::new(&yaml, family),
        NftablesProxier::new(settings(family)).expect("settings"),
        WireFirst {
            ns: &by_wire,
            nft: by_wire.nft(),
            over_netlink: 0,
        },
    );
    let start = Instant::now();
    for (step, update, seconds) in steps {
        let now = start + Duration::from_secs(*seconds);
        let changes = update.map(|y| reference.0.apply(y)).unwrap_or_default();
        reference
            .1
            .sync_with(&mut reference.2, &reference.0.snapshot, &changes, now)
            .unwrap_or_else(|e| panic!("{step} with nft: {e}"));
        let changes = update.map(|y| tested.0.apply(y)).unwrap_or_default();
        tested
            .1
            .sync_with(&mut tested.2, &tested.0.snapshot, &changes, now)
            .unwrap_or_else(|e| panic!("{step} over netlink: {e}"));
        assert_same_tables(&by_wire, &by_nft, table_family, &format!("after {step}"));
    }
    Some((tested.2.over_netlink, kernel_view(&by_wire, table_family)))
}

/// [`compare_partial_syncs`], then checks that the final table holds `expected` and
/// that at least `min_over_netlink` batches went over netlink.
fn check_partial_syncs(
    family: IpFamily,
    case: &str,
    steps: &[(&str, Option<&str>, u64)],
    expected: &str,
    min_over_netlink: usize,
) {
    let tag = format!("{family:?}").to_lowercase();
    let Some((over_netlink, table)) = compare_partial_syncs(&tag, family, case, steps) else {
        return;
    };
    assert!(table.contains(expected), "{table}");
    assert!(
        over_netlink >= min_over_netlink,
        "partial syncs went over netlink ({over_netlink} batches)"
    );
}

#[test]
fn partial_syncs_over_netlink_leave_the_kernel_as_nft_does() {
    let steps = [
        ("full sync", None, 0),
        ("endpoint moved", Some(SVC1_SLICE_MOVED), 0),
        ("service added", Some(NEW_SERVICE), 0),
        ("endpoints gone", Some(NEW_SERVICE_EMPTIED), 0),
        ("stale chains deleted", None, 2),
        ("endpoints back", Some(NEW_SERVICE), 2),
    ];
    // Every partial sync and the stale-chain deletion.
    check_partial_syncs(
        IpFamily::V4,
        "TestOverallNFTablesRules",
        &steps,
        "dnat to 10.180.9.3:53",
        5,
    );
}

#[test]
fn ipv6_partial_syncs_over_netlink_leave_the_kernel_as_nft_does() {
    let steps = [
        ("full sync", None, 0),
        ("endpoint moved", Some(SVC1_V6_SLICE_MOVED), 0),
        ("service added", Some(NEW_V6_SERVICE), 0),
        ("stale chains deleted", None, 2),
    ];
    check_partial_syncs(
        IpFamily::V6,
        "TestNodePorts/ipv6",
        &steps,
        "dnat to [fd00:10:180::9:2]:80",
        2,
    );
}

#[test]
fn a_batch_the_kernel_refuses_over_netlink_changes_nothing() {
    let Some(ns) = namespace("refused") else {
        return;
    };
    run(&[
        "ip",
        "netns",
        "exec",
        &ns.name,
        "nft",
        "add table ip kube-proxy ; add chain ip kube-proxy services",
    ])
    .expect("table created");
    let mut tx = Transaction::new(Family::Ip, "kube-proxy");
    tx.add(kproxy_nftables::nft::Chain::regular("endpoint-new"));
    tx.add(kproxy_nftables::nft::Rule {
        chain: "endpoint-missing".into(),
        body: "ip saddr 10.0.0.1 jump services".into(),
        comment: None,
    });
    match in_netns(&ns.name, || wire::apply(&tx)) {
        Err(wire::WireError::Refused { what, .. }) => assert_eq!(what, "message 1"),
        other => panic!("expected a refusal of the rule, got {other:?}"),
    }
    let listing = ns.list("ip").expect("table exists");
    assert!(!listing.contains("endpoint-new"), "rolled back: {listing}");
}

/// Every nftables conformance cluster (directories holding a `cluster.yaml`).
fn conformance_clusters() -> Vec<String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/nftables");
    let mut cases = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)
            .expect("conformance directory")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n == "cluster.yaml") {
                let case = dir.strip_prefix(&root).expect("under the root");
                cases.push(case.display().to_string());
            }
        }
    }
    cases.sort();
    cases
}

#[test]
fn first_syncs_in_small_batches_over_netlink_leave_the_kernel_as_nft_does() {
    let mut over_netlink = 0;
    for case in conformance_clusters() {
        let family = if case.contains("ipv6") {
            IpFamily::V6
        } else {
            IpFamily::V4
        };
        let table_family = if family == IpFamily::V6 { "ip6" } else { "ip" };
        let Some(by_nft) = namespace("full-nft") else {
            return;
        };
        let Some(by_wire) = namespace("full-wire") else {
            return;
        };
        let cluster = Cluster::new(&case_file(&case, "cluster.yaml"), family);
        let mut reference = NftablesProxier::new(settings(family)).expect("settings");
        let mut tested = NftablesProxier::new(settings(family)).expect("settings");
        let mut nft = by_nft.nft();
        let mut wire_first = WireFirst {
            ns: &by_wire,
            nft: by_wire.nft(),
            over_netlink: 0,
        };
        let now = Instant::now();
        let mut result = Ok(());
        reference.send_main(&cluster.snapshot, &Default::default(), now, 25, &mut |tx| {
            if result.is_ok() {
                result = nft.run(&tx);
            }
        });
        result.unwrap_or_else(|e| panic!("{case} with nft: {e}"));
        let mut result = Ok(());
        tested.send_main(&cluster.snapshot, &Default::default(), now, 25, &mut |tx| {
            if result.is_ok() {
                result = wire_first.run(&tx);
            }
        });
        result.unwrap_or_else(|e| panic!("{case} over netlink: {e}"));
        assert_same_tables(&by_wire, &by_nft, table_family, &case);
        over_netlink += wire_first.over_netlink;
    }
    assert!(over_netlink > 0, "service batches went over netlink");
}
