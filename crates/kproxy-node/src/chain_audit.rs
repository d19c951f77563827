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

use kproxy_iptables::{is_service_chain, RestoreText};
use std::collections::HashMap;

/// How many chain names a finding lists before it says "and N more".
const NAMES_SHOWN: usize = 3;

/// The service chains kproxy's applied restores left in the nat table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WrittenChains {
    /// Chain name → whether kproxy wrote at least one rule into it.
    chains: HashMap<Box<str>, bool>,
    /// Track at most this many chains (0: no limit).
    limit: usize,
    /// The last full sync wrote more chains than `limit`: none are tracked until the next
    /// full sync, since a partial sync names only the chains it changes.
    too_many: bool,
}

impl WrittenChains {
    /// Tracks at most `limit` chains: above that the audit is not run, and holding the
    /// names (110,000 at 10,000 services) would only cost memory.
    pub fn with_limit(limit: usize) -> Self {
        WrittenChains {
            limit,
            ..WrittenChains::default()
        }
    }

    /// Records a restore the kernel accepted, given as its lines. A full sync writes every
    /// chain, so the chains of earlier syncs are forgotten first.
    pub fn applied<'a>(&mut self, restore: impl IntoIterator<Item = &'a str>, full: bool) {
        let mut reader = self.reader(full);
        restore.into_iter().for_each(|line| reader.line(line));
    }

    /// [`WrittenChains::applied`] for a proxier's restore input. Input that cannot be
    /// read back (which the restore itself would have refused) forgets every chain.
    pub fn applied_restore(&mut self, restore: &RestoreText, full: bool) {
        let mut reader = self.reader(full);
        if restore.for_each_line(|line| reader.line(line)).is_err() {
            self.chains.clear();
        }
    }

    /// Whether the chains are tracked (the last full sync wrote no more than the limit).
    pub fn tracked(&self) -> bool {
        !self.too_many
    }

    fn reader(&mut self, full: bool) -> LineReader<'_> {
        if full {
            self.chains = HashMap::new();
            self.too_many = false;
        }
        LineReader {
            written: self,
            in_nat: false,
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

/// Reads one restore input's lines into [`WrittenChains`].
struct LineReader<'a> {
    written: &'a mut WrittenChains,
    in_nat: bool,
}

impl LineReader<'_> {
    fn line(&mut self, line: &str) {
        if self.written.too_many {
            return;
        }
        if let Some(table) = line.strip_prefix('*') {
            self.in_nat = table == "nat";
            return;
        }
        if !self.in_nat {
            return;
        }
        let chains = &mut self.written.chains;
        if let Some(rest) = line.strip_prefix(':') {
            if let Some(chain) = first_word(rest).filter(|c| is_service_chain(c)) {
                chains.insert(chain.into(), false);
                if self.written.limit > 0 && chains.len() > self.written.limit {
                    self.written.chains = HashMap::new();
                    self.written.too_many = true;
                }
            }
        } else if let Some(chain) = line.strip_prefix("-A ").and_then(first_word) {
            if let Some(has_rules) = chains.get_mut(chain) {
                *has_rules = true;
            }
        } else if let Some(chain) = line.strip_prefix("-X ").and_then(first_word) {
            chains.remove(chain);
        }
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

    #[test]
    fn above_the_limit_nothing_is_tracked_until_a_smaller_full_sync() {
        let mut written = WrittenChains::with_limit(2);
        written.applied(FULL.lines(), true);
        assert!(!written.tracked());
        assert!(written.is_empty());
        written.applied(
            "*nat\n:KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]\nCOMMIT\n".lines(),
            false,
        );
        assert!(
            !written.tracked(),
            "a partial sync names only what it changes"
        );
        assert!(written.is_empty());
        written.applied(
            "*nat\n:KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]\nCOMMIT\n".lines(),
            true,
        );
        assert!(written.tracked());
        assert_eq!(written.len(), 1);
    }
}
