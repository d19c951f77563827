//! Asking the kernel (from inside the node's namespace) whether rules are there: one
//! chain at a time on the hot path, a whole-table count once after the first sync.

use crate::args::Backend;
use crate::exec::run;
use crate::naming::ChainTable;
use kproxy_nftables::nft::netlink::chain_rule_count;
use kproxy_nftables::nft::Family;
use std::time::Duration;

/// How long one chain lookup may take.
const CHAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The kernel tools for one backend and table.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    /// iptables backend (iptables mode).
    pub backend: Backend,
    /// Where the chains are.
    pub table: ChainTable,
}

/// What a whole-table dump showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TableCount {
    /// Rules (iptables `-A` lines, nft rule lines) in the table.
    pub rules: u64,
    /// DNAT rules: one per programmed endpoint.
    pub dnat_rules: u64,
    /// How long the dump took.
    #[serde(serialize_with = "crate::report::seconds")]
    pub dump_time: Duration,
}

impl Kernel {
    /// Whether a chain exists (and so, restores being atomic, everything written with it).
    /// nftables chains are asked for over netlink (a chain of a Service or endpoint always
    /// holds rules): `nft list chain` reads the whole table first, seconds of CPU per poll
    /// at 10,000 services, taken from the agent being timed.
    pub fn has_chain(&self, chain: &str) -> Result<bool, String> {
        match self.table {
            ChainTable::IptablesNat => {
                let program = format!("iptables-{}", self.backend.name());
                let args = ["-w", "5", "-t", "nat", "-S", chain];
                let finished =
                    run(&program, &args, None, CHAIN_TIMEOUT).map_err(|e| e.to_string())?;
                Ok(finished.status.success())
            }
            ChainTable::NftKubeProxy => chain_rule_count(Family::Ip, "kube-proxy", chain)
                .map(|rules| rules > 0)
                .map_err(|e| format!("nf_tables rule dump of {chain}: {e}")),
        }
    }

    /// Dumps the whole table once and counts its rules.
    pub fn count(&self, timeout: Duration) -> Result<TableCount, String> {
        let (program, args) = match self.table {
            ChainTable::IptablesNat => (
                format!("iptables-{}-save", self.backend.name()),
                vec!["-t", "nat"],
            ),
            ChainTable::NftKubeProxy => {
                ("nft".to_string(), vec!["list", "table", "ip", "kube-proxy"])
            }
        };
        let finished = run(&program, &args, None, timeout).map_err(|e| e.to_string())?;
        if !finished.status.success() {
            return Err(format!(
                "{program} failed ({}): {}",
                finished.status,
                finished.stderr.trim()
            ));
        }
        let text = String::from_utf8_lossy(&finished.stdout);
        let (rules, dnat_rules) = count_rules(self.table, &text);
        Ok(TableCount {
            rules,
            dnat_rules,
            dump_time: finished.elapsed,
        })
    }
}

/// Rules and DNAT rules in a dump of the table.
fn count_rules(table: ChainTable, text: &str) -> (u64, u64) {
    let is_rule = |line: &&str| match table {
        ChainTable::IptablesNat => line.starts_with("-A "),
        // In `nft list` output rules are the indented lines inside chains other than the
        // chain header lines and closing braces.
        ChainTable::NftKubeProxy => {
            let trimmed = line.trim_start();
            line.starts_with("\t\t")
                && !trimmed.starts_with("type ")
                && !trimmed.starts_with("elements")
                && !trimmed.starts_with('}')
        }
    };
    let rules: Vec<&str> = text.lines().filter(is_rule).collect();
    let dnat = rules
        .iter()
        .filter(|l| l.contains("-j DNAT") || l.contains("dnat to"))
        .count();
    (rules.len() as u64, dnat as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_iptables_save_rules_and_dnats() {
        let text = "*nat\n:KUBE-SEP-A - [0:0]\n\
                    -A KUBE-SEP-A -s 10.64.0.1/32 -j KUBE-MARK-MASQ\n\
                    -A KUBE-SEP-A -p tcp -m tcp -j DNAT --to-destination 10.64.0.1:8080\n\
                    COMMIT\n";
        assert_eq!(count_rules(ChainTable::IptablesNat, text), (2, 1));
    }
}
