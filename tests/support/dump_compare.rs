//! Comparing what kproxy programmed (`iptables-save` output) with what upstream kube-proxy
//! v1.30.3 programmed on the same cluster (`tests/dumps/upstream-v1.30.3/*/iptables.save`),
//! table by table and chain by chain, after the canonicalisation below. The one list of
//! differences that newer upstream behaviour explains is [`ALLOWED_DIFFERENCES`].

use kproxy_model::IpFamily;
use std::collections::{BTreeMap, BTreeSet};

/// What an allowed difference covers.
pub enum Allowed {
    /// Rules containing this text, on either side.
    Rule(&'static str),
    /// A whole chain: `table` is `filter`/`nat`/`mangle`/`raw` (both families) or
    /// `ip6:filter` (IPv6 only).
    Chain {
        /// The table, with an optional `ip6:` prefix.
        table: &'static str,
        /// The chain's name.
        chain: &'static str,
    },
}

/// The rules and chains v1.30.3 wrote that current upstream (kproxy's target) does not, or
/// the other way round, each with the reason. The test fails when an entry no longer
/// matches any difference, so the list stays as short as the truth.
pub const ALLOWED_DIFFERENCES: &[(Allowed, &str)] = &[
    (
        Allowed::Rule("-j KUBE-FIREWALL"),
        "v1.30.3 creates KUBE-FIREWALL and jumps to it from INPUT/OUTPUT in ip6tables too; \
         current upstream writes KUBE-FIREWALL only for IPv4 with localhost NodePorts \
         (tests/conformance/iptables/TestNodePorts/ipv6-*: the chain is absent)",
    ),
    (
        Allowed::Chain {
            table: "ip6:filter",
            chain: "KUBE-FIREWALL",
        },
        "see the KUBE-FIREWALL rule difference",
    ),
    (
        Allowed::Chain {
            table: "raw",
            chain: "KPROXY-LOCALNET",
        },
        "kproxy's addition, not upstream's: with localhost NodePorts (IPv4), packets for \
         127.0.0.0/8 arriving on any interface but lo are dropped in the raw table \
         (CVE-2020-8558; upstream's KUBE-FIREWALL rule spares DNATed traffic, so a \
         neighbour's packet to 127.0.0.1:NodePort would reach a pod)",
    ),
    (
        Allowed::Chain {
            table: "raw",
            chain: "PREROUTING",
        },
        "the jump to kproxy's KPROXY-LOCALNET guard chain",
    ),
];

/// (table, chain) -> rules, as `iptables-save` lists them.
pub type Chains = BTreeMap<(String, String), Vec<String>>;

/// The outcome of comparing dumps: the differences not allowed, and which entries of
/// [`ALLOWED_DIFFERENCES`] (by index) excused a real difference.
#[derive(Default)]
pub struct Comparison {
    /// One message per differing chain.
    pub problems: Vec<String>,
    /// Indices of [`ALLOWED_DIFFERENCES`] that were needed.
    pub allowed_used: BTreeSet<usize>,
}

impl Comparison {
    /// Compares one family's `iptables-save` output from kproxy (`got`) with upstream's
    /// (`want`), recording differences under `label`.
    pub fn compare_family(&mut self, label: &str, family: IpFamily, want: &str, got: &str) {
        let canonical_want = canonical_addresses(want);
        let order_by_written_text = canonical_want != want;
        let want = name_endpoint_chains(parse_save(&canonical_want));
        let got = name_endpoint_chains(parse_save(&canonical_addresses(got)));
        let keys: BTreeSet<&(String, String)> = want.keys().chain(got.keys()).collect();
        for key in keys {
            let (w, g) = (want.get(key), got.get(key));
            if let Some(index) = allowed_chain(family, &key.0, &key.1) {
                if w != g {
                    self.allowed_used.insert(index);
                }
                continue;
            }
            let (Some(w), Some(g)) = (w, g) else {
                let side = if w.is_some() { "upstream" } else { "kproxy" };
                self.problems
                    .push(format!("{label} {}/{}: chain only in {side}", key.0, key.1));
                continue;
            };
            let w = self.without_allowed_rules(w, g);
            let g = self.without_allowed_rules(g, &want[key]);
            if !same_chain(&key.1, &w, &g, order_by_written_text) {
                self.problems.push(chain_diff(label, key, &w, &g));
            }
        }
    }

    /// `rules` without those an allowed rule difference covers; an entry counts as used when
    /// it removes a rule that `other` lacks.
    fn without_allowed_rules<'a>(
        &mut self,
        rules: &'a [String],
        other: &[String],
    ) -> Vec<&'a String> {
        rules
            .iter()
            .filter(|rule| match allowed_rule(rule) {
                Some(index) => {
                    if !other.contains(rule) {
                        self.allowed_used.insert(index);
                    }
                    false
                }
                None => true,
            })
            .collect()
    }

    /// Entries of [`ALLOWED_DIFFERENCES`] that excused nothing, with their reasons.
    pub fn unused_allowed(&self) -> Vec<String> {
        ALLOWED_DIFFERENCES
            .iter()
            .enumerate()
            .filter(|(index, _)| !self.allowed_used.contains(index))
            .map(|(_, (what, reason))| format!("{}: {reason}", describe(what)))
            .collect()
    }
}

/// A printable name for an allowed difference.
pub fn describe(allowed: &Allowed) -> String {
    match allowed {
        Allowed::Rule(text) => format!("rules containing {text:?}"),
        Allowed::Chain { table, chain } => format!("chain {table}/{chain}"),
    }
}

/// Splits a dump into its iptables-save and ip6tables-save parts.
pub fn split_dump(dump: &str) -> (&str, &str) {
    dump.split_once("# ---- ip6tables").unwrap_or((dump, ""))
}

fn allowed_chain(family: IpFamily, table: &str, chain: &str) -> Option<usize> {
    let family_table = match family {
        IpFamily::V4 => table.to_string(),
        IpFamily::V6 => format!("ip6:{table}"),
    };
    ALLOWED_DIFFERENCES.iter().position(|(what, _)| {
        matches!(what, Allowed::Chain { table: t, chain: c }
            if (*t == table || *t == family_table) && *c == chain)
    })
}

fn allowed_rule(rule: &str) -> Option<usize> {
    ALLOWED_DIFFERENCES
        .iter()
        .position(|(what, _)| matches!(what, Allowed::Rule(text) if rule.contains(text)))
}

fn same_chain(chain: &str, w: &[&String], g: &[&String], order_by_written_text: bool) -> bool {
    let balancing = chain.starts_with("KUBE-SVC-") || chain.starts_with("KUBE-SVL-");
    if order_by_written_text && balancing {
        w.len() == g.len() && balancing_as_set(w) == balancing_as_set(g)
    } else if unordered(chain) {
        w.iter().collect::<BTreeSet<_>>() == g.iter().collect::<BTreeSet<_>>()
    } else {
        w == g
    }
}

fn chain_diff(label: &str, key: &(String, String), w: &[&String], g: &[&String]) -> String {
    let mut msg = format!("{label} {}/{} differs:\n", key.0, key.1);
    for r in w.iter().filter(|r| !g.contains(r)) {
        msg.push_str(&format!("  - {r}\n"));
    }
    for r in g.iter().filter(|r| !w.contains(r)) {
        msg.push_str(&format!("  + {r}\n"));
    }
    if w.len() == g.len() && w.iter().all(|r| g.contains(r)) {
        msg.push_str("  (same rules, different order)\n");
    }
    msg
}

/// v1.30.3 used an endpoint's IPv6 address as written in the EndpointSlice
/// (`fd00:10:244:0::45`), in comments and in the KUBE-SEP hash; current upstream (and
/// kproxy) use the canonical form (`fd00:10:244::45`, TestBadIPs). Both sides are compared
/// with canonical addresses and with each KUBE-SEP chain named after its DNAT destination.
fn canonical_addresses(text: &str) -> String {
    text.split(' ')
        .map(canonical_token)
        .collect::<Vec<_>>()
        .join(" ")
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

/// Reads `iptables-save` output into (table, chain) -> rules; built-in chains without
/// rules are left out.
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
