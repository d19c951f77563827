//! `--cleanup`, and removing other modes' leftovers at start: the `kube-proxy` nftables
//! tables of both families ([`cleanup_nftables`]), and what kube-proxy's and kproxy's
//! iptables mode installed ([`cleanup_iptables`]), in one
//! `iptables-restore --noflush` transaction per table: the jump rules from built-in chains
//! to kube chains are deleted (`-D`), the kube chains flushed and deleted (`-X`). Chains of
//! other programs (kubelet's `KUBE-KUBELET-CANARY`, `KUBE-IPTABLES-HINT`, `KUBE-MARK-DROP`)
//! are left alone, and so is a kube chain another program still jumps to.

use crate::kernel::nft::ExecNft;
use crate::kernel::{Backend, ExecIptables, IptablesTools, RestoreTool, SaveTool};
use crate::logging;
use kproxy_iptables::{is_service_chain, LOCALNET_GUARD_CHAIN};
use kproxy_model::IpFamily;
use kproxy_nftables::{delete_tables, NftRunner};
use std::collections::BTreeSet;
use std::time::Duration;

/// How long one cleanup tool run may take.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Tables cleaned.
pub const TABLES: [&str; 4] = ["nat", "filter", "mangle", "raw"];

const BUILTIN_CHAINS: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// Whether kube-proxy's (or kproxy's) iptables mode owns this chain of this table.
pub fn is_proxy_chain(table: &str, chain: &str) -> bool {
    let fixed: &[&str] = match table {
        "nat" => &[
            "KUBE-SERVICES",
            "KUBE-NODEPORTS",
            "KUBE-POSTROUTING",
            "KUBE-MARK-MASQ",
            "KUBE-PROXY-CANARY",
        ],
        "filter" => &[
            "KUBE-SERVICES",
            "KUBE-EXTERNAL-SERVICES",
            "KUBE-FORWARD",
            "KUBE-NODEPORTS",
            "KUBE-PROXY-FIREWALL",
            "KUBE-FIREWALL",
            "KUBE-PROXY-CANARY",
        ],
        "mangle" => &["KUBE-PROXY-CANARY"],
        "raw" => &[LOCALNET_GUARD_CHAIN],
        _ => &[],
    };
    fixed.contains(&chain)
        || (table == "nat" && (is_service_chain(chain) || chain.starts_with("KUBE-XLB-")))
}

/// The restore transaction that cleans one table, from its `iptables-save` output;
/// `None` when there is nothing to remove.
pub fn cleanup_transaction(table: &str, saved: &str) -> Option<String> {
    let chains: Vec<&str> = saved
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let rules: Vec<&str> = saved.lines().filter(|l| l.starts_with("-A ")).collect();
    let mut owned: BTreeSet<&str> = chains
        .iter()
        .copied()
        .filter(|c| is_proxy_chain(table, c))
        .collect();
    let foreign_targets: BTreeSet<&str> = rules
        .iter()
        .filter(|rule| {
            let chain = rule_chain(rule);
            !owned.contains(chain) && !BUILTIN_CHAINS.contains(&chain)
        })
        .filter_map(|rule| rule_target(rule))
        .collect();
    owned.retain(|c| !foreign_targets.contains(c));
    let unlinks: Vec<&str> = rules
        .iter()
        .copied()
        .filter(|rule| BUILTIN_CHAINS.contains(&rule_chain(rule)))
        .filter(|rule| rule_target(rule).is_some_and(|t| owned.contains(t)))
        .collect();
    if owned.is_empty() && unlinks.is_empty() {
        return None;
    }
    let mut out = format!("*{table}\n");
    for chain in &owned {
        out.push_str(&format!(":{chain} - [0:0]\n"));
    }
    for rule in unlinks {
        out.push_str(&format!("-D {}\n", &rule[3..]));
    }
    for chain in &owned {
        out.push_str(&format!("-X {chain}\n"));
    }
    out.push_str("COMMIT\n");
    Some(out)
}

fn rule_chain(rule: &str) -> &str {
    rule.split_whitespace().nth(1).unwrap_or("")
}

fn rule_target(rule: &str) -> Option<&str> {
    let mut words = rule.split_whitespace();
    while let Some(word) = words.next() {
        if word == "-j" || word == "-g" {
            return words.next();
        }
    }
    None
}

/// Cleans every table through one family's tools. Returns the tables changed; errors
/// name the table.
pub fn cleanup_tables<K: RestoreTool + SaveTool + ?Sized>(
    kernel: &mut K,
) -> Result<Vec<&'static str>, String> {
    let mut cleaned = Vec::new();
    let mut errors = Vec::new();
    for table in TABLES {
        let saved = match kernel.save_table(table) {
            Ok(saved) => saved,
            Err(e) => {
                errors.push(format!("reading {table}: {e}"));
                continue;
            }
        };
        let Some(transaction) = cleanup_transaction(table, &saved) else {
            continue;
        };
        match kernel.restore(&transaction) {
            Ok(()) => cleaned.push(table),
            Err(e) => errors.push(format!("cleaning {table}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(cleaned)
    } else {
        Err(errors.join("; "))
    }
}

/// Deletes the `kube-proxy` nftables tables of both families; without `nft` there is
/// nothing to delete.
pub fn cleanup_nftables() -> Result<(), String> {
    let Ok(mut nft) = ExecNft::find(CLEANUP_TIMEOUT) else {
        return Ok(());
    };
    delete_nft_tables(&mut nft)
}

/// Deletes the `kube-proxy` tables through `runner`.
pub fn delete_nft_tables(runner: &mut dyn NftRunner) -> Result<(), String> {
    delete_tables(runner, crate::nftables_mode::TABLE).map_err(|e| format!("nftables: {e}"))
}

/// Removes the iptables mode's chains and jumps for both families and both backends where
/// their tools exist (a legacy family only when its tables are loaded).
pub fn cleanup_iptables() -> Result<(), String> {
    let mut errors = Vec::new();
    for backend in [Backend::Nft, Backend::Legacy] {
        for family in [IpFamily::V4, IpFamily::V6] {
            let Ok(tools) = IptablesTools::find(family, backend) else {
                continue;
            };
            if backend == Backend::Legacy && !legacy_tables_loaded(family) {
                continue;
            }
            let mut exec = ExecIptables::new(tools, CLEANUP_TIMEOUT);
            match cleanup_tables(&mut exec) {
                Ok(tables) if !tables.is_empty() => logging::info(
                    0,
                    format!(
                        "cleanup: {family:?} {}: cleaned {}",
                        backend.name(),
                        tables.join(", ")
                    ),
                ),
                Ok(_) => {}
                Err(e) => errors.push(format!("{family:?} {}: {e}", backend.name())),
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Whether x_tables has any table of this family loaded in this thread's network
/// namespace (reading a legacy table would otherwise load the modules and create it).
fn legacy_tables_loaded(family: IpFamily) -> bool {
    let path = match family {
        IpFamily::V4 => "/proc/thread-self/net/ip_tables_names",
        IpFamily::V6 => "/proc/thread-self/net/ip6_tables_names",
    };
    std::fs::read_to_string(path).is_ok_and(|names| !names.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fake::FakeIptables;

    const SAVED_NAT: &str = "# Generated by iptables-save
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-ABC - [0:0]
:KUBE-SEP-DEF - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A PREROUTING -j DOCKER
-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING
-A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-ABC
-A KUBE-SVC-ABC -j KUBE-SEP-DEF
-A KUBE-SEP-DEF -j KUBE-MARK-MASQ
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
COMMIT
";

    #[test]
    fn removes_kube_proxy_chains_and_jumps_only() {
        let transaction = cleanup_transaction("nat", SAVED_NAT).expect("work to do");
        assert_eq!(
            transaction,
            "*nat
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-DEF - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-ABC - [0:0]
-D PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-D POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING
-X KUBE-MARK-MASQ
-X KUBE-POSTROUTING
-X KUBE-SEP-DEF
-X KUBE-SERVICES
-X KUBE-SVC-ABC
COMMIT
"
        );
    }

    #[test]
    fn removes_the_localnet_guard() {
        let saved = "*raw
:PREROUTING ACCEPT [0:0]
:KPROXY-LOCALNET - [0:0]
-A PREROUTING -m comment --comment \"kproxy localnet guard\" -j KPROXY-LOCALNET
-A KPROXY-LOCALNET -d 127.0.0.0/8 ! -i lo -j DROP
COMMIT
";
        let transaction = cleanup_transaction("raw", saved).expect("work to do");
        assert_eq!(
            transaction,
            "*raw
:KPROXY-LOCALNET - [0:0]
-D PREROUTING -m comment --comment \"kproxy localnet guard\" -j KPROXY-LOCALNET
-X KPROXY-LOCALNET
COMMIT
"
        );
    }

    #[test]
    fn keeps_a_chain_another_program_jumps_to() {
        let saved = format!(
            "{}-A DOCKER -j KUBE-MARK-MASQ\nCOMMIT\n",
            SAVED_NAT.trim_end_matches("COMMIT\n")
        );
        let transaction = cleanup_transaction("nat", &saved).expect("work to do");
        assert!(!transaction.contains("KUBE-MARK-MASQ"), "{transaction}");
        assert!(cleanup_transaction("nat", "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n").is_none());
    }

    #[test]
    fn cleans_a_fake_kernel() {
        let mut kernel = FakeIptables::new();
        kernel.state().kernel.restore(SAVED_NAT).expect("loads");
        let cleaned = cleanup_tables(&mut kernel).expect("cleans");
        assert_eq!(cleaned, ["nat"]);
        let chains = kernel.state().kernel.chains("nat");
        assert_eq!(
            chains,
            [
                "PREROUTING",
                "INPUT",
                "OUTPUT",
                "POSTROUTING",
                "DOCKER",
                "KUBE-KUBELET-CANARY"
            ]
        );
    }
}
