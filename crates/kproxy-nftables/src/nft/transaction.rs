//! A transaction: operations on one table, collected in memory and rendered as one
//! `nft -f -` batch that the kernel applies atomically.

use super::objects::{Chain, Element, Family, Map, Object, Rule, Set, Table};
use super::text::quote_comment;
use std::fmt::Write;

/// Names a table-level object that can be flushed or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// The transaction's table.
    Table,
    /// A chain.
    Chain(String),
    /// A set.
    Set(String),
    /// A map.
    Map(String),
}

/// One operation. Rules are only ever added: chains are flushed and refilled. Objects are
/// boxed so an operation stays small: a full sync holds hundreds of thousands of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// `add`: create unless it exists (elements: error if the key exists with another value).
    Add(Box<Object>),
    /// `create`: create, failing if it exists.
    Create(Box<Object>),
    /// `flush`: empty a table, chain, set or map.
    Flush(Named),
    /// `delete`: remove a table, chain, set or map.
    Delete(Named),
    /// `delete element`: remove one element.
    DeleteElement(Box<Element>),
}

/// Operations on one table, in order: kept typed, or (a transaction made with
/// [`Transaction::written`]) rendered as each one is pushed, keeping only the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    family: Family,
    table: String,
    ops: Vec<Operation>,
    /// The rendered operations of a written transaction.
    text: Option<String>,
    /// How many operations `text` holds.
    written: usize,
}

impl Transaction {
    /// An empty transaction on `family table`.
    pub fn new(family: Family, table: impl Into<String>) -> Transaction {
        Transaction {
            family,
            table: table.into(),
            ops: Vec::new(),
            text: None,
            written: 0,
        }
    }

    /// An empty transaction on `family table` that renders each operation as it is
    /// pushed and keeps only its `nft -f -` text (a large batch then holds no typed
    /// objects): [`operations`](Self::operations) stays empty, [`len`](Self::len)
    /// counts them.
    pub fn written(family: Family, table: impl Into<String>) -> Transaction {
        Transaction {
            text: Some(String::new()),
            ..Transaction::new(family, table)
        }
    }

    /// An empty transaction of the same kind (typed or written) on the same table.
    pub fn empty_like(&self) -> Transaction {
        let empty = Transaction::new(self.family, self.table.clone());
        match self.text {
            Some(_) => Transaction {
                text: Some(String::new()),
                ..empty
            },
            None => empty,
        }
    }

    /// The family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Appends any operation.
    pub fn push(&mut self, op: Operation) {
        match &mut self.text {
            Some(text) => {
                render_op(self.family, &self.table, &op, text);
                text.push('\n');
                self.written += 1;
            }
            None => self.ops.push(op),
        }
    }

    /// Appends `add`.
    pub fn add(&mut self, object: impl Into<Object>) {
        self.push(Operation::Add(Box::new(object.into())));
    }

    /// Appends `flush`.
    pub fn flush(&mut self, what: Named) {
        self.push(Operation::Flush(what));
    }

    /// Appends `delete`.
    pub fn delete(&mut self, what: Named) {
        self.push(Operation::Delete(what));
    }

    /// Appends `delete element`.
    pub fn delete_element(&mut self, element: Element) {
        self.push(Operation::DeleteElement(Box::new(element)));
    }

    /// Moves every operation of `other` (same table) to the end of this one.
    /// A written `other` makes this one written too.
    pub fn append(&mut self, other: &mut Transaction) {
        if let Some(lines) = other.text.as_mut() {
            if self.text.is_none() {
                self.text = Some(self.render());
                self.written = std::mem::take(&mut self.ops).len();
            }
            if let Some(own) = &mut self.text {
                own.push_str(lines);
            }
            lines.clear();
            self.written += std::mem::take(&mut other.written);
        }
        for op in std::mem::take(&mut other.ops) {
            self.push(op);
        }
    }

    /// Makes room for `additional` more operations.
    pub fn reserve(&mut self, additional: usize) {
        self.ops.reserve_exact(additional);
    }

    /// The typed operations (none in a [`written`](Self::written) transaction).
    pub fn operations(&self) -> &[Operation] {
        &self.ops
    }

    /// The typed operations, taken out (none in a [`written`](Self::written)
    /// transaction).
    pub fn into_operations(self) -> Vec<Operation> {
        self.ops
    }

    /// Number of operations (what upstream's tests count).
    pub fn len(&self) -> usize {
        self.written + self.ops.len()
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A written transaction's text, without copying it (`None` for a typed one).
    pub fn written_text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// The `nft -f -` text, one operation per line (a copy of a written transaction's
    /// text).
    pub fn render(&self) -> String {
        if let Some(text) = &self.text {
            return text.clone();
        }
        // About 115 bytes per operation in a full sync: one allocation, no regrowth.
        let mut out = String::with_capacity(self.ops.len() * 128);
        for op in &self.ops {
            render_op(self.family, &self.table, op, &mut out);
            out.push('\n');
        }
        out
    }
}

fn prefix(family: Family, table: &str, verb: &str, kind: &str, out: &mut String) {
    let _ = write!(out, "{verb} {kind} {family} {table}");
}

fn render_op(family: Family, table: &str, op: &Operation, out: &mut String) {
    match op {
        Operation::Add(object) => render_object(family, table, "add", object, out),
        Operation::Create(object) => render_object(family, table, "create", object, out),
        Operation::Flush(named) => render_named(family, table, "flush", named, out),
        Operation::Delete(named) => render_named(family, table, "delete", named, out),
        Operation::DeleteElement(e) => {
            prefix(family, table, "delete", "element", out);
            let _ = write!(out, " {} {{ {} }}", e.container, e.key);
        }
    }
}

fn render_named(family: Family, table: &str, verb: &str, named: &Named, out: &mut String) {
    let (kind, name) = match named {
        Named::Table => ("table", None),
        Named::Chain(name) => ("chain", Some(name)),
        Named::Set(name) => ("set", Some(name)),
        Named::Map(name) => ("map", Some(name)),
    };
    prefix(family, table, verb, kind, out);
    if let Some(name) = name {
        out.push(' ');
        out.push_str(name);
    }
}

fn render_object(family: Family, table: &str, verb: &str, object: &Object, out: &mut String) {
    prefix(family, table, verb, object.keyword(), out);
    let _ = match object {
        Object::Table(t) => write!(out, "{}", table_body(t)),
        Object::Chain(c) => write!(out, " {}{}", c.name, chain_body(c)),
        Object::Rule(r) => {
            out.push(' ');
            out.push_str(&r.chain);
            out.push(' ');
            out.push_str(&r.body);
            if let Some(c) = &r.comment {
                out.push_str(" comment ");
                out.push_str(&quote_comment(c));
            }
            Ok(())
        }
        Object::Set(s) => write!(out, " {} {}", s.name, set_body(s)),
        Object::Map(m) => write!(out, " {} {}", m.name, map_body(m)),
        Object::Element(e) => write!(out, " {} {{ {} }}", e.container, element_text(e)),
    };
}

fn table_body(table: &Table) -> String {
    match &table.comment {
        Some(c) => format!(" {{ comment {} ; }}", quote_comment(c)),
        None => String::new(),
    }
}

fn chain_body(chain: &Chain) -> String {
    let mut parts = Vec::new();
    if let Some(base) = &chain.base {
        parts.push(format!(
            "type {} hook {} priority {}",
            base.kind.keyword(),
            base.hook.keyword(),
            base.priority
        ));
    }
    if let Some(c) = &chain.comment {
        parts.push(format!("comment {}", quote_comment(c)));
    }
    braced(&parts)
}

fn braced(parts: &[String]) -> String {
    if parts.is_empty() {
        return String::new();
    }
    let mut out = String::from(" {");
    for part in parts {
        let _ = write!(out, " {part} ;");
    }
    out.push_str(" }");
    out
}

fn set_body(set: &Set) -> String {
    let mut parts = vec![format!("type {}", set.key_type)];
    if !set.flags.is_empty() {
        parts.push(format!("flags {}", set.flags.join(",")));
    }
    if let Some(t) = set.timeout {
        parts.push(format!("timeout {t}s"));
    }
    if let Some(c) = &set.comment {
        parts.push(format!("comment {}", quote_comment(c)));
    }
    braced(&parts).trim_start().to_string()
}

fn map_body(map: &Map) -> String {
    let mut parts = vec![format!("type {} : {}", map.key_type, map.value_type)];
    if !map.flags.is_empty() {
        parts.push(format!("flags {}", map.flags.join(",")));
    }
    if let Some(c) = &map.comment {
        parts.push(format!("comment {}", quote_comment(c)));
    }
    braced(&parts).trim_start().to_string()
}

/// An element's text inside braces: key, quoted comment, then `: value`.
pub fn element_text(e: &Element) -> String {
    let mut out = e.key.clone();
    if let Some(c) = &e.comment {
        let _ = write!(out, " comment {}", quote_comment(c));
    }
    if let Some(v) = &e.value {
        let _ = write!(out, " : {v}");
    }
    out
}

macro_rules! into_object {
    ($($t:ident),*) => {$(
        impl From<$t> for Object {
            fn from(value: $t) -> Object {
                Object::$t(value)
            }
        }
    )*};
}
into_object!(Table, Chain, Rule, Set, Map, Element);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::objects::{BaseChain, ChainType, Hook};

    #[test]
    fn renders_upstream_spelling() {
        let mut tx = Transaction::new(Family::Ip, "kube-proxy");
        tx.add(Table {
            comment: Some("rules for kube-proxy".into()),
        });
        tx.add(Chain {
            name: "nat-prerouting".into(),
            base: Some(BaseChain {
                kind: ChainType::Nat,
                hook: Hook::Prerouting,
                priority: -100,
            }),
            comment: None,
        });
        tx.add(Set {
            name: "affinity-X".into(),
            key_type: "ipv4_addr".into(),
            flags: vec!["dynamic".into(), "timeout".into()],
            timeout: Some(10800),
            comment: None,
        });
        tx.add(Element {
            container: "no-endpoint-services".into(),
            key: "172.30.0.46 . tcp . 80".into(),
            comment: Some("ns6/svc6:p80".into()),
            value: Some("goto reject-chain".into()),
        });
        tx.flush(Named::Chain("services".into()));
        let expected = "add table ip kube-proxy { comment \"rules for kube-proxy\" ; }\n\
add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }\n\
add set ip kube-proxy affinity-X { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }\n\
add element ip kube-proxy no-endpoint-services { 172.30.0.46 . tcp . 80 comment \"ns6/svc6:p80\" : goto reject-chain }\n\
flush chain ip kube-proxy services\n";
        assert_eq!(tx.render(), expected);
        assert_eq!(tx.len(), 5);
    }

    #[test]
    fn written_transactions_keep_the_same_text() {
        let ops = || {
            [
                Operation::Add(Box::new(Object::Chain(Chain::regular("service-X")))),
                Operation::Flush(Named::Chain("service-X".into())),
                Operation::Add(Box::new(Object::Rule(Rule {
                    chain: "service-X".into(),
                    body: "ip daddr 10.0.0.1 jump mark-for-masquerade".into(),
                    comment: Some("ns/svc".into()),
                }))),
            ]
        };
        let mut typed = Transaction::new(Family::Ip, "kube-proxy");
        let mut written = Transaction::written(Family::Ip, "kube-proxy");
        for op in ops() {
            typed.push(op.clone());
            written.push(op);
        }
        assert_eq!(written.render(), typed.render());
        assert_eq!(written.len(), 3);
        assert!(written.operations().is_empty());
        assert!(written.empty_like().is_empty());

        let mut joined = typed.clone();
        joined.append(&mut written);
        assert!(written.is_empty());
        assert_eq!(joined.len(), 6);
        assert_eq!(joined.render(), typed_text_times(2));
        joined.append(&mut typed);
        assert_eq!(joined.len(), 9);
        assert_eq!(joined.render(), typed_text_times(3));
    }

    fn typed_text_times(n: usize) -> String {
        "add chain ip kube-proxy service-X\n\
flush chain ip kube-proxy service-X\n\
add rule ip kube-proxy service-X ip daddr 10.0.0.1 jump mark-for-masquerade comment \"ns/svc\"\n"
            .repeat(n)
    }
}
