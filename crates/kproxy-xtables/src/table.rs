//! One x_tables table: decoded from the kernel's entries, changed by a restore section's
//! commands as `iptables-legacy-restore --noflush` changes it, and encoded back into an
//! `IPT_SO_SET_REPLACE` blob laid out as libiptc lays it out (built-in chains in hook
//! order, then user chains sorted by name), with the map that carries the counters of
//! every unchanged rule over to the new table.

use crate::layout::{
    self, c_name, EntryLayout, Family, COUNTERS_INFO_HEADER, COUNTERS_SIZE, ERROR_NAME_LEN,
    ERROR_TARGET, ERROR_TARGET_SIZE, EXTENSION_HEADER, GET_INFO_LEN, HOOKS, HOOK_CHAINS,
    REPLACE_HEADER, STANDARD_TARGET_SIZE, TABLE_NAME_LEN, VERDICT_ACCEPT, VERDICT_RETURN,
};
use crate::restore::{Command, Section};
use crate::rule::{append_standard, EncodedRule, Jump};
use crate::{Result, XtError};
use rustc_hash::FxHashMap;

/// A table's info (`IPT_SO_GET_INFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableInfo {
    /// Bit per hook the table has a built-in chain for.
    pub valid_hooks: u32,
    /// Offset of each built-in chain's first entry.
    pub hook_entry: [u32; HOOKS],
    /// Offset of each built-in chain's policy entry.
    pub underflow: [u32; HOOKS],
    /// Number of entries.
    pub num_entries: u32,
    /// Size of the entries in bytes.
    pub size: u32,
}

impl TableInfo {
    /// Reads the `getsockopt` answer (`struct ipt_getinfo`).
    pub fn from_bytes(bytes: &[u8]) -> Result<TableInfo> {
        if bytes.len() < GET_INFO_LEN {
            return Err(XtError::Corrupt("short table info".into()));
        }
        let word = |i: usize| layout::read_u32(bytes, TABLE_NAME_LEN + 4 * i).unwrap_or(0);
        let mut hook_entry = [0; HOOKS];
        let mut underflow = [0; HOOKS];
        for hook in 0..HOOKS {
            hook_entry[hook] = word(1 + hook);
            underflow[hook] = word(1 + HOOKS + hook);
        }
        Ok(TableInfo {
            valid_hooks: word(0),
            hook_entry,
            underflow,
            num_entries: word(1 + 2 * HOOKS),
            size: word(2 + 2 * HOOKS),
        })
    }
}

#[derive(Debug)]
enum Bytes {
    /// A rule read from the kernel: its range in the old entries.
    Old { start: usize, len: usize },
    /// A rule of this restore.
    New(Vec<u8>),
}

#[derive(Debug)]
enum RuleJump {
    Fixed,
    Chain(usize),
    Fallthrough,
}

#[derive(Debug)]
struct Rule {
    bytes: Bytes,
    jump: RuleJump,
    /// Index of the kernel entry this rule is, to carry its counters over.
    old_index: Option<u32>,
}

#[derive(Debug)]
struct Chain {
    name: String,
    hook: Option<usize>,
    policy: i32,
    policy_index: Option<u32>,
    rules: Vec<Rule>,
    references: u32,
    deleted: bool,
}

/// A table being changed.
#[derive(Debug)]
pub struct Table {
    family: Family,
    name: String,
    info: TableInfo,
    old: Vec<u8>,
    chains: Vec<Chain>,
    by_name: FxHashMap<String, usize>,
}

/// A table encoded for `IPT_SO_SET_REPLACE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    /// `struct ipt_replace` and the entries. The counters pointer (at
    /// [`layout::REPLACE_COUNTERS_POINTER`]) is left for the caller to fill in.
    pub blob: Vec<u8>,
    /// Number of entries the table had (the kernel returns their counters).
    pub old_entries: u32,
    /// For each new entry, the old entry whose counters it keeps.
    pub counter_map: Vec<Option<u32>>,
}

impl Table {
    /// Decodes the kernel's `entries` of table `name`.
    pub fn decode(family: Family, name: &str, info: TableInfo, old: Vec<u8>) -> Result<Table> {
        let layout = family.layout();
        let corrupt = |what: String| XtError::Corrupt(format!("{name}: {what}"));
        let mut entries = Vec::new();
        let mut at = 0usize;
        while at < old.len() {
            let entry =
                Entry::at(&old, at, &layout).ok_or_else(|| corrupt(format!("entry at {at}")))?;
            at += entry.size;
            entries.push(entry);
        }
        let mut table = Table {
            family,
            name: name.to_string(),
            info,
            old: Vec::new(),
            chains: Vec::new(),
            by_name: FxHashMap::default(),
        };
        let valid = |hook: usize| info.valid_hooks & (1 << hook) != 0;
        let hook_at = |offset: usize, of: &[u32; HOOKS]| {
            (0..HOOKS).find(|&h| valid(h) && of[h] as usize == offset)
        };
        // User chains' first rules, in increasing offset order (heads come in table order).
        let mut first_rule: Vec<(usize, usize)> = Vec::new();
        let mut pending: Vec<(usize, usize, usize)> = Vec::new();
        let mut current: Option<usize> = None;
        for (index, entry) in entries.iter().enumerate() {
            let offset = entry.offset;
            if let Some(hook) = hook_at(offset, &info.hook_entry) {
                current = Some(table.add_chain(HOOK_CHAINS[hook], Some(hook)));
            }
            if let Some(hook) = hook_at(offset, &info.underflow) {
                let chain = current
                    .filter(|&c| table.chains[c].hook == Some(hook))
                    .ok_or_else(|| corrupt(format!("policy of hook {hook} outside its chain")))?;
                table.chains[chain].policy = entry.verdict.unwrap_or(VERDICT_ACCEPT);
                table.chains[chain].policy_index = Some(index as u32);
                current = None;
                continue;
            }
            if entry.error {
                if index + 1 == entries.len() {
                    break;
                }
                let name_at = offset + entry.target + EXTENSION_HEADER;
                let name = String::from_utf8_lossy(c_name(&old[name_at..name_at + ERROR_NAME_LEN]));
                let chain = table.add_chain(&name, None);
                first_rule.push((offset + entry.size, chain));
                current = Some(chain);
                continue;
            }
            let chain =
                current.ok_or_else(|| corrupt(format!("rule at {offset} outside chains")))?;
            let next_is_head = entries.get(index + 1).is_some_and(|next| next.error);
            if table.chains[chain].hook.is_none() && next_is_head {
                if entry.verdict != Some(VERDICT_RETURN) {
                    return Err(corrupt(format!(
                        "chain {} ends without RETURN",
                        table.chains[chain].name
                    )));
                }
                current = None;
                continue;
            }
            let jump = match entry.verdict {
                Some(v) if v >= 0 && v as usize == offset + entry.size => RuleJump::Fallthrough,
                Some(v) if v >= 0 => {
                    pending.push((chain, table.chains[chain].rules.len(), v as usize));
                    RuleJump::Fixed
                }
                _ => RuleJump::Fixed,
            };
            table.chains[chain].rules.push(Rule {
                bytes: Bytes::Old {
                    start: offset,
                    len: entry.size,
                },
                jump,
                old_index: Some(index as u32),
            });
        }
        for (chain, rule, target) in pending {
            let found = first_rule
                .binary_search_by_key(&target, |&(offset, _)| offset)
                .map_err(|_| corrupt(format!("jump to offset {target}")))?;
            let to = first_rule[found].1;
            table.chains[chain].rules[rule].jump = RuleJump::Chain(to);
            table.chains[to].references += 1;
        }
        table.old = old;
        Ok(table)
    }

    fn add_chain(&mut self, name: &str, hook: Option<usize>) -> usize {
        let index = self.chains.len();
        self.chains.push(Chain {
            name: name.to_string(),
            hook,
            policy: VERDICT_ACCEPT,
            policy_index: None,
            rules: Vec::new(),
            references: 0,
            deleted: false,
        });
        self.by_name.insert(name.to_string(), index);
        index
    }

    /// Applies a section's commands, as `iptables-restore --noflush` does.
    pub fn apply(&mut self, section: Section) -> Result<()> {
        for command in section.commands {
            match command {
                Command::Declare { chain, policy } => match self.by_name.get(&chain) {
                    Some(&c) if self.chains[c].hook.is_some() => {
                        if policy != "-" {
                            return Err(XtError::Unsupported(format!("policy of {chain}")));
                        }
                    }
                    Some(&c) => self.flush(c),
                    None => self.create(&chain)?,
                },
                Command::Create(chain) => {
                    if self.by_name.contains_key(&chain) {
                        return Err(XtError::Invalid(format!("chain {chain} already exists")));
                    }
                    self.create(&chain)?;
                }
                Command::Flush(chain) => {
                    let c = self.existing(&chain)?;
                    self.flush(c);
                }
                Command::DeleteChain(chain) => self.delete_chain(&chain)?,
                Command::Append(chain, rule) => {
                    let c = self.existing(&chain)?;
                    let rule = self.resolve(rule)?;
                    self.add_reference(&rule.jump);
                    self.chains[c].rules.push(rule);
                }
                Command::Insert(chain, position, rule) => {
                    let c = self.existing(&chain)?;
                    if position > self.chains[c].rules.len() + 1 {
                        return Err(XtError::Invalid(format!(
                            "index of insertion too big in {chain}"
                        )));
                    }
                    let rule = self.resolve(rule)?;
                    self.add_reference(&rule.jump);
                    self.chains[c].rules.insert(position - 1, rule);
                }
                Command::Delete(chain, rule) => {
                    let c = self.existing(&chain)?;
                    let probe = self.resolve(rule)?;
                    let found = self.chains[c]
                        .rules
                        .iter()
                        .position(|r| self.same_rule(r, &probe));
                    let Some(found) = found else {
                        return Err(XtError::Invalid(format!(
                            "no such rule in {chain} to delete"
                        )));
                    };
                    let removed = self.chains[c].rules.remove(found);
                    self.drop_reference(&removed.jump);
                }
            }
        }
        Ok(())
    }

    fn existing(&self, chain: &str) -> Result<usize> {
        self.by_name
            .get(chain)
            .copied()
            .ok_or_else(|| XtError::Invalid(format!("chain {chain} does not exist")))
    }

    fn create(&mut self, chain: &str) -> Result<()> {
        if HOOK_CHAINS.contains(&chain) {
            return Err(XtError::Invalid(format!(
                "table {} has no built-in chain {chain}",
                self.name
            )));
        }
        self.add_chain(chain, None);
        Ok(())
    }

    fn flush(&mut self, chain: usize) {
        let rules = std::mem::take(&mut self.chains[chain].rules);
        for rule in &rules {
            self.drop_reference(&rule.jump);
        }
    }

    fn add_reference(&mut self, jump: &RuleJump) {
        if let RuleJump::Chain(to) = jump {
            self.chains[*to].references += 1;
        }
    }

    fn drop_reference(&mut self, jump: &RuleJump) {
        if let RuleJump::Chain(to) = jump {
            self.chains[*to].references -= 1;
        }
    }

    fn delete_chain(&mut self, chain: &str) -> Result<()> {
        let c = self.existing(chain)?;
        let target = &self.chains[c];
        if target.hook.is_some() {
            return Err(XtError::Invalid(format!(
                "cannot delete built-in chain {chain}"
            )));
        }
        if target.references > 0 {
            return Err(XtError::Invalid(format!(
                "chain {chain} is still referenced"
            )));
        }
        if !target.rules.is_empty() {
            return Err(XtError::Invalid(format!("chain {chain} is not empty")));
        }
        self.chains[c].deleted = true;
        self.by_name.remove(chain);
        Ok(())
    }

    /// A rule of this restore, its jump resolved to a chain of the table.
    fn resolve(&self, rule: EncodedRule) -> Result<Rule> {
        let jump = match rule.jump {
            Jump::Fixed => RuleJump::Fixed,
            Jump::Fallthrough => RuleJump::Fallthrough,
            Jump::Chain(name) => {
                let to = *self.by_name.get(name.as_ref()).ok_or_else(|| {
                    XtError::Unsupported(format!("target {name} (no such chain)"))
                })?;
                if self.chains[to].hook.is_some() {
                    return Err(XtError::Invalid(format!("jump to built-in chain {name}")));
                }
                RuleJump::Chain(to)
            }
        };
        Ok(Rule {
            bytes: Bytes::New(rule.bytes),
            jump,
            old_index: None,
        })
    }

    fn bytes<'a>(&'a self, rule: &'a Rule) -> &'a [u8] {
        match &rule.bytes {
            Bytes::Old { start, len } => &self.old[*start..*start + *len],
            Bytes::New(bytes) => bytes,
        }
    }

    /// Whether two rules are the same rule, as `iptables -D` compares them: everything but
    /// the counters, the kernel's bookkeeping and the offset a jump resolves to.
    fn same_rule(&self, a: &Rule, b: &Rule) -> bool {
        let same_jump = match (&a.jump, &b.jump) {
            (RuleJump::Chain(x), RuleJump::Chain(y)) => x == y,
            (RuleJump::Fixed, RuleJump::Fixed) | (RuleJump::Fallthrough, RuleJump::Fallthrough) => {
                true
            }
            _ => false,
        };
        let layout = self.family.layout();
        let (x, y) = (self.bytes(a), self.bytes(b));
        if !same_jump || x.len() != y.len() {
            return false;
        }
        let target = usize::from(layout::read_u16(x, layout.target_offset).unwrap_or(0));
        let verdict = target + EXTENSION_HEADER;
        let skip_verdict = !matches!(a.jump, RuleJump::Fixed);
        let ranges = [
            0..layout.comefrom,
            layout.counters + COUNTERS_SIZE..if skip_verdict { verdict } else { x.len() },
            if skip_verdict {
                verdict + 4..x.len()
            } else {
                0..0
            },
        ];
        ranges.into_iter().all(|r| x.get(r.clone()) == y.get(r))
    }

    /// Built-in chains in hook order, then user chains by name.
    fn order(&self) -> Vec<usize> {
        let mut builtin: Vec<usize> = (0..self.chains.len())
            .filter(|&c| self.chains[c].hook.is_some())
            .collect();
        builtin.sort_by_key(|&c| self.chains[c].hook);
        let mut user: Vec<usize> = (0..self.chains.len())
            .filter(|&c| self.chains[c].hook.is_none() && !self.chains[c].deleted)
            .collect();
        user.sort_by(|&a, &b| {
            self.chains[a]
                .name
                .as_bytes()
                .cmp(self.chains[b].name.as_bytes())
        });
        builtin.extend(user);
        builtin
    }

    /// Encodes the table for `IPT_SO_SET_REPLACE`.
    pub fn encode(&self) -> Result<Replacement> {
        let layout = self.family.layout();
        let head_size = layout.size + ERROR_TARGET_SIZE;
        let foot_size = layout.size + STANDARD_TARGET_SIZE;
        let order = self.order();
        let mut first_rule = vec![0usize; self.chains.len()];
        let mut size = 0usize;
        let mut entries = 0usize;
        for &c in &order {
            let chain = &self.chains[c];
            if chain.hook.is_none() {
                size += head_size;
                entries += 1;
            }
            first_rule[c] = size;
            size += chain
                .rules
                .iter()
                .map(|r| self.bytes(r).len())
                .sum::<usize>()
                + foot_size;
            entries += chain.rules.len() + 1;
        }
        size += head_size;
        entries += 1;
        let too_big = || XtError::Invalid(format!("table {} too large", self.name));
        let size32 = u32::try_from(size).map_err(|_| too_big())?;
        let mut blob = Vec::with_capacity(REPLACE_HEADER + size);
        blob.resize(REPLACE_HEADER, 0);
        let mut counter_map = Vec::with_capacity(entries);
        let mut hook_entry = [0u32; HOOKS];
        let mut underflow = [0u32; HOOKS];
        for &c in &order {
            let chain = &self.chains[c];
            let offset = |blob: &Vec<u8>| (blob.len() - REPLACE_HEADER) as u32;
            match chain.hook {
                Some(hook) => hook_entry[hook] = offset(&blob),
                None => {
                    push_head(&mut blob, &layout, chain.name.as_bytes());
                    counter_map.push(None);
                }
            }
            for rule in &chain.rules {
                let at = blob.len();
                blob.extend_from_slice(self.bytes(rule));
                let entry = &mut blob[at..];
                entry[layout.comefrom..layout.comefrom + 4].fill(0);
                entry[layout.counters..layout.counters + COUNTERS_SIZE].fill(0);
                let verdict = match rule.jump {
                    RuleJump::Fixed => None,
                    RuleJump::Chain(to) => Some(first_rule[to]),
                    RuleJump::Fallthrough => Some(at - REPLACE_HEADER + entry.len()),
                };
                if let Some(verdict) = verdict {
                    let target =
                        usize::from(layout::read_u16(entry, layout.target_offset).unwrap_or(0));
                    let v = i32::try_from(verdict).map_err(|_| too_big())?;
                    entry[target + EXTENSION_HEADER..target + EXTENSION_HEADER + 4]
                        .copy_from_slice(&v.to_ne_bytes());
                }
                counter_map.push(rule.old_index);
            }
            match chain.hook {
                Some(hook) => {
                    underflow[hook] = offset(&blob);
                    push_foot(&mut blob, &layout, chain.policy);
                    counter_map.push(chain.policy_index);
                }
                None => {
                    push_foot(&mut blob, &layout, VERDICT_RETURN);
                    counter_map.push(None);
                }
            }
        }
        push_head(&mut blob, &layout, ERROR_TARGET.as_bytes());
        counter_map.push(None);
        let name = self.name.as_bytes();
        blob[..name.len()].copy_from_slice(name);
        layout::put_u32(&mut blob, 32, self.info.valid_hooks);
        layout::put_u32(&mut blob, 36, counter_map.len() as u32);
        layout::put_u32(&mut blob, 40, size32);
        for hook in 0..HOOKS {
            layout::put_u32(&mut blob, 44 + 4 * hook, hook_entry[hook]);
            layout::put_u32(&mut blob, 64 + 4 * hook, underflow[hook]);
        }
        layout::put_u32(&mut blob, 84, self.info.num_entries);
        Ok(Replacement {
            blob,
            old_entries: self.info.num_entries,
            counter_map,
        })
    }

    /// The `IPT_SO_SET_ADD_COUNTERS` argument that gives the new table's kept rules the
    /// counters the kernel returned for the old table, or `None` when all are zero.
    pub fn counters(&self, replacement: &Replacement, old_counters: &[u8]) -> Option<Vec<u8>> {
        let mut out =
            vec![0u8; COUNTERS_INFO_HEADER + COUNTERS_SIZE * replacement.counter_map.len()];
        let mut any = false;
        for (new, old) in replacement.counter_map.iter().enumerate() {
            let Some(old) = old else { continue };
            let from = *old as usize * COUNTERS_SIZE;
            let Some(counters) = old_counters.get(from..from + COUNTERS_SIZE) else {
                continue;
            };
            if counters.iter().any(|&b| b != 0) {
                any = true;
                let to = COUNTERS_INFO_HEADER + new * COUNTERS_SIZE;
                out[to..to + COUNTERS_SIZE].copy_from_slice(counters);
            }
        }
        if !any {
            return None;
        }
        let name = self.name.as_bytes();
        out[..name.len()].copy_from_slice(name);
        layout::put_u32(
            &mut out,
            TABLE_NAME_LEN,
            replacement.counter_map.len() as u32,
        );
        Some(out)
    }
}

/// The parts of one entry the decoder looks at.
struct Entry {
    offset: usize,
    size: usize,
    /// The target's offset in the entry.
    target: usize,
    /// The target is `ERROR` (a chain head, or the table's end).
    error: bool,
    /// The verdict of a standard target.
    verdict: Option<i32>,
}

impl Entry {
    fn at(blob: &[u8], offset: usize, layout: &EntryLayout) -> Option<Entry> {
        let target = usize::from(layout::read_u16(blob, offset + layout.target_offset)?);
        let size = usize::from(layout::read_u16(blob, offset + layout.target_offset + 2)?);
        if target < layout.size || target + EXTENSION_HEADER > size || offset + size > blob.len() {
            return None;
        }
        let name =
            c_name(&blob[offset + target + 2..offset + target + 2 + layout::EXTENSION_NAME_LEN]);
        let verdict = if name.is_empty() {
            let at = offset + target + EXTENSION_HEADER;
            Some(i32::from_ne_bytes(blob.get(at..at + 4)?.try_into().ok()?))
        } else {
            None
        };
        Some(Entry {
            offset,
            size,
            target,
            error: name == ERROR_TARGET.as_bytes(),
            verdict,
        })
    }
}

/// Appends an entry that matches everything, with a target of `target_size` bytes to be
/// written after it; returns where the target starts.
fn push_unconditional(blob: &mut Vec<u8>, layout: &EntryLayout, target_size: usize) -> usize {
    let at = blob.len();
    blob.resize(at + layout.size, 0);
    layout::put_u16(blob, at + layout.target_offset, layout.size as u16);
    layout::put_u16(
        blob,
        at + layout.target_offset + 2,
        (layout.size + target_size) as u16,
    );
    blob.len()
}

/// A user chain's head (an `ERROR` target named after the chain), or the table's end.
fn push_head(blob: &mut Vec<u8>, layout: &EntryLayout, name: &[u8]) {
    let target = push_unconditional(blob, layout, ERROR_TARGET_SIZE);
    blob.resize(target + ERROR_TARGET_SIZE, 0);
    layout::put_u16(blob, target, ERROR_TARGET_SIZE as u16);
    blob[target + 2..target + 2 + ERROR_TARGET.len()].copy_from_slice(ERROR_TARGET.as_bytes());
    let len = name.len().min(ERROR_NAME_LEN - 1);
    blob[target + EXTENSION_HEADER..target + EXTENSION_HEADER + len].copy_from_slice(&name[..len]);
}

/// A built-in chain's policy, or a user chain's closing `RETURN`.
fn push_foot(blob: &mut Vec<u8>, layout: &EntryLayout, verdict: i32) {
    push_unconditional(blob, layout, STANDARD_TARGET_SIZE);
    append_standard(blob, verdict);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::parse;

    /// The table the kernel starts a namespace with: each valid hook's chain empty, with an
    /// ACCEPT policy.
    fn initial_entries(family: Family, valid_hooks: u32) -> (TableInfo, Vec<u8>) {
        let layout = family.layout();
        let mut blob = Vec::new();
        let mut info = TableInfo {
            valid_hooks,
            hook_entry: [0; HOOKS],
            underflow: [0; HOOKS],
            num_entries: 0,
            size: 0,
        };
        for hook in (0..HOOKS).filter(|h| valid_hooks & (1 << h) != 0) {
            info.hook_entry[hook] = blob.len() as u32;
            info.underflow[hook] = blob.len() as u32;
            push_foot(&mut blob, &layout, VERDICT_ACCEPT);
            info.num_entries += 1;
        }
        push_head(&mut blob, &layout, ERROR_TARGET.as_bytes());
        info.num_entries += 1;
        info.size = blob.len() as u32;
        (info, blob)
    }

    /// The table's chain names, built-in ones first.
    fn chain_names(table: &Table) -> Vec<&str> {
        table
            .order()
            .into_iter()
            .map(|c| table.chains[c].name.as_str())
            .collect()
    }

    /// The nat table's built-in chains, then `user` chains.
    fn after_built_ins<'a>(user: &[&'a str]) -> Vec<&'a str> {
        let mut names = vec!["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"];
        names.extend_from_slice(user);
        names
    }

    const NAT_HOOKS: u32 = 0b11011;

    fn table_after(family: Family, inputs: &[&str]) -> Table {
        let (info, blob) = initial_entries(family, NAT_HOOKS);
        let mut table = Table::decode(family, "nat", info, blob).expect("decode");
        for input in inputs {
            for section in parse(family, input).expect("parse") {
                table.apply(section).expect("apply");
            }
            let replacement = table.encode().expect("encode");
            let info = info_of(&replacement);
            table = Table::decode(
                family,
                "nat",
                info,
                replacement.blob[REPLACE_HEADER..].to_vec(),
            )
            .expect("decode again");
        }
        table
    }

    fn info_of(replacement: &Replacement) -> TableInfo {
        let word = |at: usize| layout::read_u32(&replacement.blob, at).unwrap_or(0);
        let mut info = TableInfo {
            valid_hooks: word(32),
            hook_entry: [0; HOOKS],
            underflow: [0; HOOKS],
            num_entries: word(36),
            size: word(40),
        };
        for hook in 0..HOOKS {
            info.hook_entry[hook] = word(44 + 4 * hook);
            info.underflow[hook] = word(64 + 4 * hook);
        }
        info
    }

    #[test]
    fn chains_come_back_sorted_after_the_built_in_ones() {
        let table = table_after(
            Family::V4,
            &["*nat\n:KUBE-SVC-B - [0:0]\n:KUBE-SEP-A - [0:0]\n-A KUBE-SVC-B -j KUBE-SEP-A\n-A PREROUTING -j KUBE-SVC-B\nCOMMIT\n"],
        );
        assert_eq!(
            chain_names(&table),
            after_built_ins(&["KUBE-SEP-A", "KUBE-SVC-B"])
        );
        let svc = table.by_name["KUBE-SVC-B"];
        assert!(matches!(
            table.chains[svc].rules[0].jump,
            RuleJump::Chain(_)
        ));
        assert_eq!(table.chains[table.by_name["KUBE-SEP-A"]].references, 1);
    }

    #[test]
    fn deletes_inserts_and_chain_removal_follow_restore() {
        let first = "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-A - [0:0]\n:KUBE-SVC-B - [0:0]\n-A KUBE-SERVICES -d 10.0.0.1/32 -j KUBE-SVC-A\n-A KUBE-SERVICES -d 10.0.0.2/32 -j KUBE-SVC-B\nCOMMIT\n";
        let second = "*nat\n:KUBE-SVC-B - [0:0]\n-D KUBE-SERVICES -d 10.0.0.2/32 -j KUBE-SVC-B\n-I KUBE-SERVICES 1 -d 10.0.0.3/32 -j KUBE-SVC-A\n-X KUBE-SVC-B\nCOMMIT\n";
        let table = table_after(Family::V4, &[first, second]);
        assert_eq!(
            chain_names(&table),
            after_built_ins(&["KUBE-SERVICES", "KUBE-SVC-A"])
        );
        let services = &table.chains[table.by_name["KUBE-SERVICES"]];
        assert_eq!(services.rules.len(), 2);
        assert_eq!(&table.bytes(&services.rules[0])[4..8], &[10, 0, 0, 3]);
        assert_eq!(table.chains[table.by_name["KUBE-SVC-A"]].references, 2);
    }

    #[test]
    fn refusals_match_the_tools() {
        let (info, blob) = initial_entries(Family::V4, NAT_HOOKS);
        let cases = [
            (
                "*nat\n:KUBE-A - [0:0]\n:KUBE-B - [0:0]\n-A KUBE-A -j KUBE-B\n-X KUBE-B\nCOMMIT\n",
                "still referenced",
            ),
            ("*nat\n-A KUBE-NONE -j ACCEPT\nCOMMIT\n", "does not exist"),
            (
                "*nat\n:KUBE-A - [0:0]\n-D KUBE-A -j ACCEPT\nCOMMIT\n",
                "no such rule",
            ),
            (
                "*nat\n:KUBE-A - [0:0]\n-I KUBE-A 3 -j ACCEPT\nCOMMIT\n",
                "too big",
            ),
        ];
        for (input, message) in cases {
            let mut table = Table::decode(Family::V4, "nat", info, blob.clone()).expect("decode");
            let section = parse(Family::V4, input).expect("parse").remove(0);
            match table.apply(section) {
                Err(XtError::Invalid(m)) => assert!(m.contains(message), "{m}"),
                other => panic!("{input}: {other:?}"),
            }
        }
        let mut table = Table::decode(Family::V4, "nat", info, blob).expect("decode");
        let section = parse(Family::V4, "*nat\n-A PREROUTING -j LOG\nCOMMIT\n")
            .expect("parse")
            .remove(0);
        assert!(matches!(table.apply(section), Err(XtError::Unsupported(_))));
    }

    #[test]
    fn kept_rules_keep_their_counters() {
        let table = table_after(
            Family::V6,
            &["*nat\n:KUBE-A - [0:0]\n-A KUBE-A -j ACCEPT\n-A PREROUTING -j KUBE-A\nCOMMIT\n"],
        );
        let replacement = table.encode().expect("encode");
        let old_entries = replacement.old_entries as usize;
        let mut old_counters = vec![0u8; old_entries * COUNTERS_SIZE];
        old_counters[0] = 7;
        let counters = table.counters(&replacement, &old_counters).expect("some");
        assert_eq!(counters[COUNTERS_INFO_HEADER], 7);
        assert!(table
            .counters(&replacement, &vec![0; old_entries * COUNTERS_SIZE])
            .is_none());
    }
}
