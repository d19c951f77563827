//! kproxy against what a real upstream kube-proxy (v1.30.3) programmed into a real kernel.
//! For every cluster in `tests/dumps/upstream-v1.30.3`, `kproxy rules` is loaded into a
//! fresh network namespace with iptables-legacy (the dumps' backend) and read back with
//! `iptables-save`, then compared with the dump chain by chain. Differences that newer
//! upstream behaviour explains are listed in `ALLOWED_DIFFERENCES`; anything else fails.

mod common;

use common::{kernel_tests_possible, NetNs};
use kproxy_iptables::jump_rules;
use kproxy_model::IpFamily;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Rules upstream v1.30.3 wrote that current upstream (kproxy's target) does not, or the
/// other way round, each with the reason. Matched as substrings of a rule line.
const ALLOWED_DIFFERENCES: &[(&str, &str)] = &[(
    "-j KUBE-FIREWALL",
    "v1.30.3 creates KUBE-FIREWALL and jumps to it from INPUT/OUTPUT in ip6tables too; \
     current upstream writes KUBE-FIREWALL only for IPv4 with localhost NodePorts \
     (TestNodePorts/ipv6-*: the chain is absent)",
)];

/// Chains upstream has that the ruleset renderer does not write, with the reason.
const ALLOWED_CHAIN_DIFFERENCES: &[(&str, &str, &str)] = &[
    (
        "filter",
        "KUBE-PROXY-CANARY",
        "created by the agent's flush detection, not by `kproxy rules`",
    ),
    (
        "nat",
        "KUBE-PROXY-CANARY",
        "created by the agent's flush detection, not by `kproxy rules`",
    ),
    (
        "mangle",
        "KUBE-PROXY-CANARY",
        "created by the agent's flush detection, not by `kproxy rules`",
    ),
    (
        "ip6:filter",
        "KUBE-FIREWALL",
        "see the KUBE-FIREWALL rule difference",
    ),
];

/// v1.30.3 used an endpoint's IPv6 address as written in the EndpointSlice
/// (`fd00:10:244:0::45`), in comments and in the KUBE-SEP hash; current upstream (and
/// kproxy) use the canonical form (`fd00:10:244::45`, TestBadIPs). Both sides are compared
/// with canonical addresses and with each KUBE-SEP chain named after its DNAT destination.
fn canonical_addresses(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, token) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&canonical_token(token));
    }
    out
}

fn canonical_token(token: &str) -> String {
    let quote_end = token.ends_with('"') && token.len() > 1;
    let core = token.trim_end_matches('"');
    let rebuilt = if let Some(rest) = core.strip_prefix('[') {
        rest.split_once("]:").and_then(|(ip, port)| {
            ip.parse::<std::net::Ipv6Addr>()
                .ok()
                .map(|ip| format!("[{ip}]:{port}"))
        })
    } else if let Some((ip, len)) = core.split_once('/') {
        ip.parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| format!("{ip}/{len}"))
    } else {
        None
    };
    match rebuilt {
        Some(t) if quote_end => format!("{t}\""),
        Some(t) => t,
        None => token.to_string(),
    }
}

/// Renames every `KUBE-SEP-…` chain after the destination its DNAT rule writes.
fn name_endpoint_chains(chains: Chains) -> Chains {
    let mut names = BTreeMap::new();
    for ((_, chain), rules) in &chains {
        if let Some(dest) = rules
            .iter()
            .find_map(|r| r.split("--to-destination ").nth(1))
        {
            names.insert(
                chain.clone(),
                format!("SEP[{}]", dest.split(' ').next().unwrap_or("")),
            );
        }
    }
    let rename = |text: &str| -> String {
        text.split(' ')
            .map(|t| names.get(t).cloned().unwrap_or_else(|| t.to_string()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    chains
        .into_iter()
        .map(|((table, chain), rules)| {
            (
                (table, rename(&chain)),
                rules.iter().map(|r| rename(r)).collect(),
            )
        })
        .collect()
}

/// Chains whose rule order carries no meaning (dispatch by destination).
fn unordered(chain: &str) -> bool {
    matches!(
        chain,
        "KUBE-SERVICES" | "KUBE-NODEPORTS" | "KUBE-EXTERNAL-SERVICES" | "KUBE-PROXY-FIREWALL"
    )
}

type Chains = BTreeMap<(String, String), Vec<String>>;

/// Reads `iptables-save` output into (table, chain) -> rules.
fn parse_save(text: &str) -> Chains {
    let mut chains = Chains::new();
    let mut table = String::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
        } else if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split(' ').next().unwrap_or("").to_string();
            chains.entry((table.clone(), name)).or_default();
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let chain = rest.split(' ').next().unwrap_or("").to_string();
            chains
                .entry((table.clone(), chain))
                .or_default()
                .push(line.to_string());
        }
    }
    chains.retain(|(_, chain), rules| chain.starts_with("KUBE-") || !rules.is_empty());
    chains
}

fn allowed_chain(label: &str, table: &str, chain: &str) -> bool {
    let family_table = if label.ends_with("V6") {
        format!("ip6:{table}")
    } else {
        table.to_string()
    };
    ALLOWED_CHAIN_DIFFERENCES
        .iter()
        .any(|(t, c, _)| (*t == table || *t == family_table) && *c == chain)
}

fn allowed(rule: &str) -> bool {
    ALLOWED_DIFFERENCES
        .iter()
        .any(|(text, _)| rule.contains(text))
}

/// Where the dump's addresses were not canonical, its endpoints were also ordered by the
/// text as written, so the balancing rules of KUBE-SVC/KUBE-SVL chains are compared as a
/// set with the probabilities left out (the endpoints and the count still must match).
fn balancing_as_set(rules: &[&String]) -> BTreeSet<String> {
    rules
        .iter()
        .map(
            |r| match r.split_once(" -m statistic --mode random --probability ") {
                Some((head, tail)) => {
                    format!("{head} {}", tail.split_once(' ').map_or("", |(_, t)| t))
                }
                None => r.to_string(),
            },
        )
        .collect()
}

fn compare(label: &str, want: &Chains, got: &Chains, order_by_written_text: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let keys: BTreeSet<&(String, String)> = want.keys().chain(got.keys()).collect();
    for key in keys {
        let empty = Vec::new();
        let w: Vec<&String> = want
            .get(key)
            .unwrap_or(&empty)
            .iter()
            .filter(|r| !allowed(r))
            .collect();
        let g: Vec<&String> = got
            .get(key)
            .unwrap_or(&empty)
            .iter()
            .filter(|r| !allowed(r))
            .collect();
        if allowed_chain(label, &key.0, &key.1) {
            continue;
        }
        if want.contains_key(key) != got.contains_key(key) {
            problems.push(format!(
                "{label} {}/{}: chain only in {}",
                key.0,
                key.1,
                if want.contains_key(key) {
                    "upstream"
                } else {
                    "kproxy"
                }
            ));
            continue;
        }
        let balancing = key.1.starts_with("KUBE-SVC-") || key.1.starts_with("KUBE-SVL-");
        let same = if order_by_written_text && balancing {
            w.len() == g.len() && balancing_as_set(&w) == balancing_as_set(&g)
        } else if unordered(&key.1) {
            w.iter().collect::<BTreeSet<_>>() == g.iter().collect::<BTreeSet<_>>()
        } else {
            w == g
        };
        if !same {
            let mut msg = format!("{label} {}/{} differs:\n", key.0, key.1);
            for r in &w {
                if !g.contains(r) {
                    msg.push_str(&format!("  - {r}\n"));
                }
            }
            for r in &g {
                if !w.contains(r) {
                    msg.push_str(&format!("  + {r}\n"));
                }
            }
            problems.push(msg);
        }
    }
    problems
}

fn cluster_cidrs(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("proxier.yaml")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.split("--cluster-cidr ").nth(1))
        .map(|rest| {
            rest.trim_end_matches('"')
                .split(' ')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

fn render(dir: &Path, ipv6: bool) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kproxy"));
    cmd.args(["rules", "-f"])
        .arg(dir.join("cluster.yaml"))
        .args([
            "--hostname-override",
            "node-0",
            "--cluster-cidr",
            &cluster_cidrs(dir),
        ]);
    if ipv6 {
        cmd.arg("--ipv6");
    }
    let out = cmd.output().expect("run kproxy rules");
    assert!(
        out.status.success(),
        "kproxy rules: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Loads kproxy's ruleset plus the jump rules into a namespace and reads it back.
fn load_and_save(ns: &NetNs, restore: &str, family: IpFamily) -> String {
    let (restore_cmd, save_cmd) = match family {
        IpFamily::V4 => ("iptables-legacy-restore", "iptables-legacy-save"),
        IpFamily::V6 => ("ip6tables-legacy-restore", "ip6tables-legacy-save"),
    };
    ns.run_with_input(&[restore_cmd, "--noflush"], restore);
    let mut jumps = String::new();
    for table in ["filter", "nat"] {
        jumps.push_str(&format!("*{table}\n"));
        for jump in jump_rules(family, true).iter().filter(|j| j.table == table) {
            jumps.push_str(&jump.rule_text());
            jumps.push('\n');
        }
        jumps.push_str("COMMIT\n");
    }
    ns.run_with_input(&[restore_cmd, "--noflush"], &jumps);
    ns.run(&[save_cmd])
}

fn dump_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dumps/upstream-v1.30.3");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("dumps directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("iptables.save").exists())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn kproxy_programs_what_upstream_programmed() {
    if !kernel_tests_possible(
        "upstream_dumps",
        &["ip", "iptables-legacy-restore", "ip6tables-legacy-restore"],
    ) {
        return;
    }
    let mut problems = Vec::new();
    for dir in dump_dirs() {
        let dump = std::fs::read_to_string(dir.join("iptables.save")).expect("dump");
        let (v4_dump, v6_dump) = dump.split_once("# ---- ip6tables").unwrap_or((&dump, ""));
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        for (family, want) in [(IpFamily::V4, v4_dump), (IpFamily::V6, v6_dump)] {
            let ns = NetNs::new("dump");
            let got = load_and_save(&ns, &render(&dir, family == IpFamily::V6), family);
            let canonical_want = canonical_addresses(want);
            let order_by_written_text = canonical_want != want;
            let want = name_endpoint_chains(parse_save(&canonical_want));
            let got = name_endpoint_chains(parse_save(&canonical_addresses(&got)));
            let label = format!("{name} {family:?}");
            problems.extend(compare(&label, &want, &got, order_by_written_text));
        }
    }
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
