//! The iptables mode's check that its per-service nat chains are still in the kernel.
//!
//! kube-proxy only watches its canary chains, so a single `KUBE-SVC-…` chain that someone
//! deleted or flushed stays broken until the next full sync (an hour later). kproxy keeps
//! the names of the service chains its successful restores wrote (read back from the
//! restore text itself: `:CHAIN` declares and flushes, `-A CHAIN` adds, `-X CHAIN`
//! deletes), and once per sync period compares them with one `iptables-save -t nat`: a
//! chain that is gone, or empty although kproxy wrote rules into it, makes the next sync
//! full. The cost is that one dump per family and sync period (0.7 s for 320,000 rules
//! with iptables-legacy; milliseconds for ordinary clusters).

use kproxy_iptables::is_service_chain;
use std::collections::HashMap;

/// How many chain names a finding lists before it says "and N more".
const NAMES_SHOWN: usize = 3;

/// The service chains kproxy's applied restores left in the nat table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WrittenChains {
    /// Chain name → whether kproxy wrote at least one rule into it.
    chains: HashMap<Box<str>, bool>,
}

impl WrittenChains {
    /// Records a restore the kernel accepted, given as its lines. A full sync writes every
    /// chain, so the chains of earlier syncs are forgotten first.
    pub fn applied<'a>(&mut self, restore: impl IntoIterator<Item = &'a str>, full: bool) {
        if full {
            self.chains.clear();
        }
        let mut in_nat = false;
        for line in restore {
            if let Some(table) = line.strip_prefix('*') {
                in_nat = table == "nat";
                continue;
            }
            if !in_nat {
                continue;
            }
            if let Some(rest) = line.strip_prefix(':') {
                if let Some(chain) = first_word(rest).filter(|c| is_service_chain(c)) {
                    self.chains.insert(chain.into(), false);
                }
            } else if let Some(chain) = line.strip_prefix("-A ").and_then(first_word) {
                if let Some(has_rules) = self.chains.get_mut(chain) {
                    *has_rules = true;
                }
            } else if let Some(chain) = line.strip_prefix("-X ").and_then(first_word) {
                self.chains.remove(chain);
            }
        }
    }

    /// Number of chains tracked.
    pub fn len(&self) -> usize {
        self.chains.len()
    }

    /// Whether no chain is tracked.
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
    }

    /// What is wrong with the tracked chains in `iptables-save -t nat` output: one finding
    /// for missing chains and one for emptied chains, each naming a few of them.
    pub fn damage(&self, save_output: &str) -> Vec<String> {
        let mut rules_in: HashMap<&str, usize> = HashMap::new();
        for line in save_output.lines() {
            if let Some(chain) = line.strip_prefix(':').and_then(first_word) {
                rules_in.entry(chain).or_insert(0);
            } else if let Some(chain) = line.strip_prefix("-A ").and_then(first_word) {
                *rules_in.entry(chain).or_insert(0) += 1;
            }
        }
        let mut missing = Vec::new();
        let mut emptied = Vec::new();
        for (chain, has_rules) in &self.chains {
            match rules_in.get(&**chain) {
                None => missing.push(&**chain),
                Some(0) if *has_rules => emptied.push(&**chain),
                Some(_) => {}
            }
        }
        [("missing", missing), ("flushed", emptied)]
            .into_iter()
            .filter(|(_, chains)| !chains.is_empty())
            .map(|(what, chains)| format!("nat service chains {what}: {}", listed(chains)))
            .collect()
    }
}

fn first_word(text: &str) -> Option<&str> {
    text.split_whitespace().next()
}

fn listed(mut chains: Vec<&str>) -> String {
    chains.sort_unstable();
    let shown = chains[..chains.len().min(NAMES_SHOWN)].join(", ");
    match chains.len().saturating_sub(NAMES_SHOWN) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "*filter\n:KUBE-SVC-FILTERONLY - [0:0]\nCOMMIT\n*nat\n\
        :KUBE-SERVICES - [0:0]\n:KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]\n\
        :KUBE-SEP-BBBBBBBBBBBBBBBB - [0:0]\n:KUBE-SVL-CCCCCCCCCCCCCCCC - [0:0]\n\
        -A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-AAAAAAAAAAAAAAAA\n\
        -A KUBE-SVC-AAAAAAAAAAAAAAAA -j KUBE-SEP-BBBBBBBBBBBBBBBB\n\
        -A KUBE-SEP-BBBBBBBBBBBBBBBB -p tcp -j DNAT --to-destination 10.0.0.1:80\nCOMMIT\n";

    fn save(lines: &[&str]) -> String {
        lines.join("\n")
    }

    #[test]
    fn intact_chains_are_fine_and_damage_is_named() {
        let mut written = WrittenChains::default();
        written.applied(FULL.lines(), true);
        assert_eq!(written.len(), 3, "{written:?}");
        let intact = save(&[
            ":KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]",
            ":KUBE-SEP-BBBBBBBBBBBBBBBB - [0:0]",
            ":KUBE-SVL-CCCCCCCCCCCCCCCC - [0:0]",
            "-A KUBE-SVC-AAAAAAAAAAAAAAAA -j KUBE-SEP-BBBBBBBBBBBBBBBB",
            "-A KUBE-SEP-BBBBBBBBBBBBBBBB -p tcp -j DNAT --to-destination 10.0.0.1:80",
        ]);
        assert!(written.damage(&intact).is_empty());
        let damaged = save(&[
            ":KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]",
            ":KUBE-SVL-CCCCCCCCCCCCCCCC - [0:0]",
        ]);
        assert_eq!(
            written.damage(&damaged),
            [
                "nat service chains missing: KUBE-SEP-BBBBBBBBBBBBBBBB",
                "nat service chains flushed: KUBE-SVC-AAAAAAAAAAAAAAAA"
            ]
        );
    }

    #[test]
    fn partial_syncs_add_and_delete_and_full_syncs_start_over() {
        let mut written = WrittenChains::default();
        written.applied(FULL.lines(), true);
        written.applied(
            "*nat\n:KUBE-SEP-DDDDDDDDDDDDDDDD - [0:0]\n\
             -A KUBE-SEP-DDDDDDDDDDDDDDDD -j DNAT --to-destination 10.0.0.2:80\n\
             -X KUBE-SEP-BBBBBBBBBBBBBBBB\nCOMMIT\n"
                .lines(),
            false,
        );
        let damage = written.damage("");
        assert_eq!(damage.len(), 1, "{damage:?}");
        assert!(damage[0].contains("KUBE-SEP-DDDDDDDDDDDDDDDD"));
        assert!(!damage[0].contains("KUBE-SEP-BBBB"), "{damage:?}");
        written.applied("*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n".lines(), true);
        assert!(written.is_empty());
    }

    #[test]
    fn long_findings_are_cut_short() {
        let chains = vec![
            "KUBE-SEP-5",
            "KUBE-SEP-1",
            "KUBE-SEP-3",
            "KUBE-SEP-2",
            "KUBE-SEP-4",
        ];
        assert_eq!(
            listed(chains),
            "KUBE-SEP-1, KUBE-SEP-2, KUBE-SEP-3 and 2 more"
        );
    }
}
