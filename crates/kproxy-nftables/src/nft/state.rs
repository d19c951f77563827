//! An in-memory ruleset that applies operations with the kernel's rules (what must exist,
//! what may not be deleted while referenced) and dumps itself as `add` commands. The fake
//! runner and the tracer are built on it.

use super::objects::{Chain, Element, Family, Map, Object, Rule, Set, Table};
use super::parse::parse_commands;
use super::transaction::{element_text, Named, Operation, Transaction};
use std::collections::BTreeMap;

/// Why an operation was refused (the kernel's errno, in words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// ENOENT.
    #[error("no such {kind} {name:?}")]
    NotFound {
        /// Object type.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// EEXIST.
    #[error("{kind} {name:?} exists with different content")]
    Exists {
        /// Object type.
        kind: &'static str,
        /// Its name or key.
        name: String,
    },
    /// EBUSY.
    #[error("{kind} {name:?} is still referenced")]
    Busy {
        /// Object type.
        kind: &'static str,
        /// Its name.
        name: String,
    },
}

/// A chain and its rules in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainState {
    /// The chain definition.
    pub chain: Chain,
    /// Its rules.
    pub rules: Vec<Rule>,
}

/// One table's content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableState {
    /// The table comment.
    pub comment: Option<String>,
    /// Chains by name.
    pub chains: BTreeMap<String, ChainState>,
    /// Sets by name.
    pub sets: BTreeMap<String, Set>,
    /// Maps by name.
    pub maps: BTreeMap<String, Map>,
    /// Elements by container, then key.
    pub elements: BTreeMap<String, BTreeMap<String, Element>>,
}

/// Every table of a ruleset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RulesetState {
    tables: BTreeMap<(Family, String), TableState>,
}

impl RulesetState {
    /// An empty ruleset.
    pub fn new() -> RulesetState {
        RulesetState::default()
    }

    /// Loads `add ...` command text (as [`dump`](Self::dump) or a transaction writes it).
    pub fn from_commands(text: &str) -> Result<RulesetState, String> {
        let mut state = RulesetState::new();
        for command in parse_commands(text).map_err(|e| e.to_string())? {
            state
                .apply_op(command.family, &command.table, &command.op)
                .map_err(|e| e.to_string())?;
        }
        Ok(state)
    }

    /// One table, if it exists.
    pub fn table(&self, family: Family, name: &str) -> Option<&TableState> {
        self.tables.get(&(family, name.to_string()))
    }

    /// Replaces (or with `None` removes) one table.
    pub fn set_table(&mut self, family: Family, name: &str, table: Option<TableState>) {
        let key = (family, name.to_string());
        match table {
            Some(t) => self.tables.insert(key, t),
            None => self.tables.remove(&key),
        };
    }

    /// Every table.
    pub fn tables(&self) -> impl Iterator<Item = (&(Family, String), &TableState)> {
        self.tables.iter()
    }

    /// Applies a transaction atomically: all operations or none.
    pub fn apply(&mut self, tx: &Transaction) -> Result<(), StateError> {
        let mut next = self.clone();
        for op in tx.operations() {
            next.apply_op(tx.family(), tx.table(), op)?;
        }
        *self = next;
        Ok(())
    }

    /// Applies one operation.
    pub fn apply_op(
        &mut self,
        family: Family,
        table: &str,
        op: &Operation,
    ) -> Result<(), StateError> {
        let key = (family, table.to_string());
        let table_object = match op {
            Operation::Add(object) | Operation::Create(object) => match object.as_ref() {
                Object::Table(t) => Some(t),
                _ => None,
            },
            _ => None,
        };
        if let Some(t) = table_object {
            let entry = self.tables.entry(key).or_default();
            if t.comment.is_some() {
                entry.comment = t.comment.clone();
            }
            return Ok(());
        }
        if let Operation::Delete(Named::Table) = op {
            return match self.tables.remove(&key) {
                Some(_) => Ok(()),
                None => Err(not_found("table", table)),
            };
        }
        let state = self
            .tables
            .get_mut(&key)
            .ok_or_else(|| not_found("table", table))?;
        state.apply(op)
    }

    /// The ruleset as `add` commands: tables, sets, maps, chains, rules, elements.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for ((family, name), table) in &self.tables {
            let mut tx = Transaction::new(*family, name.clone());
            table.write_to(&mut tx);
            out.push_str(&tx.render());
        }
        out
    }
}

fn not_found(kind: &'static str, name: &str) -> StateError {
    StateError::NotFound {
        kind,
        name: name.to_string(),
    }
}

impl TableState {
    fn apply(&mut self, op: &Operation) -> Result<(), StateError> {
        match op {
            Operation::Add(object) => self.add(object, false),
            Operation::Create(object) => self.add(object, true),
            Operation::Flush(named) => self.flush(named),
            Operation::Delete(named) => self.delete(named),
            Operation::DeleteElement(e) => {
                let container = self.container_mut(&e.container)?;
                match container.remove(&e.key) {
                    Some(_) => Ok(()),
                    None => Err(not_found("element", &format!("{} {}", e.container, e.key))),
                }
            }
        }
    }

    fn add(&mut self, object: &Object, exclusive: bool) -> Result<(), StateError> {
        match object {
            Object::Table(_) => Ok(()),
            Object::Chain(c) => self.add_chain(c, exclusive),
            Object::Rule(r) => self.add_rule(r),
            Object::Set(s) => {
                self.check_new_container(
                    &s.name,
                    "set",
                    exclusive,
                    self.sets.get(&s.name) == Some(s),
                )?;
                self.sets.insert(s.name.clone(), s.clone());
                self.elements.entry(s.name.clone()).or_default();
                Ok(())
            }
            Object::Map(m) => {
                self.check_new_container(
                    &m.name,
                    "map",
                    exclusive,
                    self.maps.get(&m.name) == Some(m),
                )?;
                self.maps.insert(m.name.clone(), m.clone());
                self.elements.entry(m.name.clone()).or_default();
                Ok(())
            }
            Object::Element(e) => self.add_element(e, exclusive),
        }
    }

    fn check_new_container(
        &self,
        name: &str,
        kind: &'static str,
        exclusive: bool,
        same: bool,
    ) -> Result<(), StateError> {
        let exists = self.sets.contains_key(name) || self.maps.contains_key(name);
        if exists && (exclusive || !same) {
            return Err(StateError::Exists {
                kind,
                name: name.to_string(),
            });
        }
        Ok(())
    }

    fn add_chain(&mut self, chain: &Chain, exclusive: bool) -> Result<(), StateError> {
        match self.chains.get_mut(&chain.name) {
            Some(existing)
                if exclusive || (chain.base.is_some() && existing.chain.base != chain.base) =>
            {
                Err(StateError::Exists {
                    kind: "chain",
                    name: chain.name.clone(),
                })
            }
            Some(existing) => {
                if chain.comment.is_some() {
                    existing.chain.comment = chain.comment.clone();
                }
                Ok(())
            }
            None => {
                self.chains.insert(
                    chain.name.clone(),
                    ChainState {
                        chain: chain.clone(),
                        rules: Vec::new(),
                    },
                );
                Ok(())
            }
        }
    }

    fn add_rule(&mut self, rule: &Rule) -> Result<(), StateError> {
        for target in chain_references(&rule.body) {
            if !self.chains.contains_key(target) {
                return Err(not_found("chain", target));
            }
        }
        for set in set_references(&rule.body) {
            if !self.elements.contains_key(set) {
                return Err(not_found("set", set));
            }
        }
        let chain = self
            .chains
            .get_mut(&rule.chain)
            .ok_or_else(|| not_found("chain", &rule.chain))?;
        chain.rules.push(rule.clone());
        Ok(())
    }

    fn add_element(&mut self, e: &Element, exclusive: bool) -> Result<(), StateError> {
        if let Some(value) = &e.value {
            for target in chain_references(value) {
                if !self.chains.contains_key(target) {
                    return Err(not_found("chain", target));
                }
            }
        }
        let container = self.container_mut(&e.container)?;
        match container.get(&e.key) {
            Some(old) if exclusive || old.value != e.value => Err(StateError::Exists {
                kind: "element",
                name: format!("{} {}", e.container, e.key),
            }),
            Some(_) => Ok(()),
            None => {
                container.insert(e.key.clone(), e.clone());
                Ok(())
            }
        }
    }

    fn container_mut(&mut self, name: &str) -> Result<&mut BTreeMap<String, Element>, StateError> {
        self.elements
            .get_mut(name)
            .ok_or_else(|| not_found("set", name))
    }

    fn flush(&mut self, named: &Named) -> Result<(), StateError> {
        match named {
            Named::Table => {
                self.chains.values_mut().for_each(|c| c.rules.clear());
                self.elements.values_mut().for_each(BTreeMap::clear);
                Ok(())
            }
            Named::Chain(name) => {
                let chain = self
                    .chains
                    .get_mut(name)
                    .ok_or_else(|| not_found("chain", name))?;
                chain.rules.clear();
                Ok(())
            }
            Named::Set(name) | Named::Map(name) => {
                self.container_mut(name)?.clear();
                Ok(())
            }
        }
    }

    fn delete(&mut self, named: &Named) -> Result<(), StateError> {
        match named {
            Named::Table => Ok(()),
            Named::Chain(name) => {
                if !self.chains.contains_key(name) {
                    return Err(not_found("chain", name));
                }
                if self.chain_is_referenced(name) {
                    return Err(StateError::Busy {
                        kind: "chain",
                        name: name.clone(),
                    });
                }
                self.chains.remove(name);
                Ok(())
            }
            Named::Set(name) | Named::Map(name) => {
                if !self.elements.contains_key(name) {
                    return Err(not_found("set", name));
                }
                let used = self
                    .chains
                    .values()
                    .flat_map(|c| &c.rules)
                    .any(|r| set_references(&r.body).any(|s| s == name));
                if used {
                    return Err(StateError::Busy {
                        kind: "set",
                        name: name.clone(),
                    });
                }
                self.sets.remove(name);
                self.maps.remove(name);
                self.elements.remove(name);
                Ok(())
            }
        }
    }

    fn chain_is_referenced(&self, name: &str) -> bool {
        let from_rules = self
            .chains
            .values()
            .filter(|c| c.chain.name != name)
            .flat_map(|c| &c.rules)
            .any(|r| chain_references(&r.body).any(|t| t == name));
        let from_elements = self
            .elements
            .values()
            .flat_map(BTreeMap::values)
            .filter_map(|e| e.value.as_deref())
            .any(|v| chain_references(v).any(|t| t == name));
        from_rules || from_elements
    }

    /// Writes this table's content into `tx` as `add` operations.
    pub fn write_to(&self, tx: &mut Transaction) {
        tx.add(Table {
            comment: self.comment.clone(),
        });
        self.sets.values().for_each(|s| tx.add(s.clone()));
        self.maps.values().for_each(|m| tx.add(m.clone()));
        self.chains.values().for_each(|c| tx.add(c.chain.clone()));
        for chain in self.chains.values() {
            chain.rules.iter().for_each(|r| tx.add(r.clone()));
        }
        for elements in self.elements.values() {
            elements.values().for_each(|e| tx.add(e.clone()));
        }
    }

    /// An element's rendered form (for comparisons).
    pub fn element_line(e: &Element) -> String {
        element_text(e)
    }
}

/// Chains named after `jump`/`goto` in a rule body or element value.
pub fn chain_references(text: &str) -> impl Iterator<Item = &str> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut targets = Vec::new();
    for pair in words.windows(2) {
        if pair[0] == "jump" || pair[0] == "goto" {
            targets.push(pair[1].trim_end_matches(','));
        }
    }
    targets.into_iter()
}

/// Sets and maps named with `@` in a rule body.
pub fn set_references(text: &str) -> impl Iterator<Item = &str> {
    text.split_whitespace()
        .filter_map(|w| w.strip_prefix('@'))
        .map(|w| w.trim_end_matches([',', '}']))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "add table ip t\n\
add chain ip t a\n\
add chain ip t b\n\
add map ip t m { type ipv4_addr : verdict ; }\n\
add rule ip t a jump b\n\
add element ip t m { 1.2.3.4 : goto b }\n";

    fn tx(text: &str) -> Transaction {
        let mut tx = Transaction::new(Family::Ip, "t");
        for c in parse_commands(text).expect("valid") {
            tx.push(c.op);
        }
        tx
    }

    #[test]
    fn referenced_chain_cannot_be_deleted_until_unreferenced() {
        let mut state = RulesetState::from_commands(BASE).expect("loads");
        let before = state.clone();
        let err = state.apply(&tx("delete chain ip t b"));
        assert!(matches!(err, Err(StateError::Busy { .. })));
        assert_eq!(state, before, "failed transactions change nothing");
        state
            .apply(&tx(
                "flush chain ip t a\ndelete element ip t m { 1.2.3.4 }\ndelete chain ip t b",
            ))
            .expect("unreferenced now");
        assert!(!state.dump().contains("chain ip t b"));
    }

    #[test]
    fn element_with_other_value_is_refused() {
        let mut state = RulesetState::from_commands(BASE).expect("loads");
        assert!(state
            .apply(&tx("add element ip t m { 1.2.3.4 : drop }"))
            .is_err());
        assert!(state
            .apply(&tx("add element ip t m { 1.2.3.4 : goto b }"))
            .is_ok());
        assert!(state.apply(&tx("add rule ip t a goto missing")).is_err());
    }

    #[test]
    fn dump_round_trips() {
        let state = RulesetState::from_commands(BASE).expect("loads");
        let again = RulesetState::from_commands(&state.dump()).expect("reloads");
        assert_eq!(state, again);
    }
}
