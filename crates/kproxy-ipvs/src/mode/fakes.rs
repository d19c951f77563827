//! In-memory stand-ins for the mode's kernel seams that read the same text the real tools
//! read, so tests can assert on whole kernel states: [`FakeIpsets`], [`FakeLink`],
//! [`FakeHost`], [`FakeIptables`]. Use them with [`crate::FakeIpvs`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use kproxy_iptables::JumpRule;

use crate::error::{Error, Result};
use crate::ipset::{IpsetRunner, RestoreText};
use crate::link::VipInterface;

use super::host::{HostAddresses, IptablesRunner};

fn refused(command: &str, line: &str, why: &str) -> Error {
    Error::Tool {
        command: command.to_string(),
        status: "exit status: 1".to_string(),
        stderr: format!("{line}: {why}"),
    }
}

/// ipsets in memory, changed by `ipset restore` text (create, add, swap, destroy).
#[derive(Debug, Clone, Default)]
pub struct FakeIpsets {
    sets: BTreeMap<String, FakeSet>,
}

#[derive(Debug, Clone, Default)]
struct FakeSet {
    create: String,
    entries: BTreeSet<String>,
}

impl FakeIpsets {
    /// No sets.
    pub fn new() -> Self {
        FakeIpsets::default()
    }

    /// The entries of a set, as `ipset save` writes them; `None` if it does not exist.
    pub fn entries(&self, name: &str) -> Option<&BTreeSet<String>> {
        self.sets.get(name).map(|s| &s.entries)
    }

    /// The names of the sets that exist.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sets.keys().map(String::as_str)
    }

    fn line(&mut self, line: &str) -> std::result::Result<(), &'static str> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let exist = words.last() == Some(&"-exist");
        match words.as_slice() {
            [] => Ok(()),
            ["create", name, rest @ ..] => {
                if self.sets.contains_key(*name) {
                    return if exist { Ok(()) } else { Err("set exists") };
                }
                let create = rest
                    .iter()
                    .filter(|w| **w != "-exist")
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" ");
                let set = FakeSet {
                    create,
                    entries: BTreeSet::new(),
                };
                self.sets.insert(name.to_string(), set);
                Ok(())
            }
            ["add", name, entry, ..] => {
                let set = self.sets.get_mut(*name).ok_or("no such set")?;
                set.entries.insert(entry.to_string());
                Ok(())
            }
            ["swap", a, b] => {
                let first = self.sets.remove(*a).ok_or("no such set")?;
                let Some(second) = self.sets.remove(*b) else {
                    self.sets.insert(a.to_string(), first);
                    return Err("no such set");
                };
                if first.create.split(' ').next() != second.create.split(' ').next() {
                    self.sets.insert(a.to_string(), first);
                    self.sets.insert(b.to_string(), second);
                    return Err("set types differ");
                }
                self.sets.insert(a.to_string(), second);
                self.sets.insert(b.to_string(), first);
                Ok(())
            }
            ["destroy", name, ..] => match self.sets.remove(*name) {
                Some(_) => Ok(()),
                None if exist => Ok(()),
                None => Err("no such set"),
            },
            _ => Err("unknown command"),
        }
    }
}

impl IpsetRunner for FakeIpsets {
    fn restore(&mut self, text: &RestoreText) -> Result<()> {
        for line in text.as_str().lines() {
            self.line(line)
                .map_err(|why| refused("ipset restore", line, why))?;
        }
        Ok(())
    }

    fn save(&mut self) -> Result<String> {
        let mut out = String::new();
        for (name, set) in &self.sets {
            out.push_str(&format!("create {name} {}\n", set.create));
            for entry in &set.entries {
                out.push_str(&format!("add {name} {entry}\n"));
            }
        }
        Ok(out)
    }
}

/// kube-ipvs0 in memory.
#[derive(Debug, Clone, Default)]
pub struct FakeLink {
    /// Whether the interface exists.
    pub exists: bool,
    /// Its addresses.
    pub addresses: BTreeSet<IpAddr>,
}

impl VipInterface for FakeLink {
    fn ensure(&mut self) -> Result<()> {
        self.exists = true;
        Ok(())
    }

    fn addresses(&mut self) -> Result<Vec<IpAddr>> {
        Ok(self.addresses.iter().copied().collect())
    }

    fn add_address(&mut self, addr: IpAddr) -> Result<()> {
        if !self.exists {
            return Err(refused("ip addr add", &addr.to_string(), "no such device"));
        }
        self.addresses.insert(addr);
        Ok(())
    }

    fn remove_address(&mut self, addr: IpAddr) -> Result<()> {
        self.addresses.remove(&addr);
        Ok(())
    }

    fn delete(&mut self) -> Result<()> {
        self.exists = false;
        self.addresses.clear();
        Ok(())
    }
}

/// Host addresses given by the test.
#[derive(Debug, Clone, Default)]
pub struct FakeHost {
    /// Addresses on interfaces other than kube-ipvs0.
    pub addresses: Vec<IpAddr>,
}

impl HostAddresses for FakeHost {
    fn addresses_except(&mut self, _interface: &str) -> Result<Vec<IpAddr>> {
        Ok(self.addresses.clone())
    }
}

/// Records what would be given to iptables; `fail_restore` makes restores fail.
#[derive(Debug, Clone, Default)]
pub struct FakeIptables {
    /// Every restore text, in order.
    pub restores: Vec<String>,
    /// Jump rules ensured, without duplicates, per (table, chain) in top-to-bottom order.
    pub jumps: BTreeMap<(String, String), Vec<String>>,
    /// Refuse restores.
    pub fail_restore: bool,
}

impl IptablesRunner for FakeIptables {
    fn restore(&mut self, text: &str) -> Result<()> {
        if self.fail_restore {
            return Err(refused("iptables-restore", "COMMIT", "refused by the test"));
        }
        self.restores.push(text.to_string());
        Ok(())
    }

    fn ensure_jump(&mut self, rule: &JumpRule) -> Result<()> {
        let key = (rule.table.to_string(), rule.chain.to_string());
        let text = rule.rule_text();
        let chain = self.jumps.entry(key).or_default();
        if !chain.contains(&text) {
            chain.insert(0, text);
        }
        Ok(())
    }

    fn remove_jump(&mut self, rule: &JumpRule) -> Result<()> {
        let key = (rule.table.to_string(), rule.chain.to_string());
        let text = rule.rule_text();
        if let Some(chain) = self.jumps.get_mut(&key) {
            chain.retain(|r| *r != text);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_and_destroy_behave_like_ipset() {
        let mut sets = FakeIpsets::new();
        let text = RestoreText(
            "destroy KPROXY-SWAP -exist\n\
             create A hash:ip family inet hashsize 1024 maxelem 65536 comment -exist\n\
             add A 1.1.1.1\n\
             create KPROXY-SWAP hash:ip family inet hashsize 1024 maxelem 65536 comment\n\
             add KPROXY-SWAP 2.2.2.2\n\
             swap KPROXY-SWAP A\n\
             destroy KPROXY-SWAP\n"
                .into(),
        );
        sets.restore(&text).expect("restore");
        let names: Vec<&str> = sets.names().collect();
        assert_eq!(names, vec!["A"]);
        let entries: Vec<&String> = sets.entries("A").expect("A").iter().collect();
        assert_eq!(entries, vec!["2.2.2.2"]);
        let bad = RestoreText("add MISSING 1.1.1.1\n".into());
        assert!(sets.restore(&bad).is_err());
    }
}
