//! Where a sync's operations go, in an order the kernel accepts at every prefix: the fixed
//! objects, then each service port in turn (its chains created and flushed, its affinity
//! sets, its rules), flushes of stale chains, element changes (each key's deletion before
//! its addition), and finally set deletions (once no rule refers to them). Operations are handed on in
//! batches as they fill, so a full sync holds one batch, not the whole transaction.

use super::elements::ElementKey;
use crate::nft::{Chain, Element, Family, Named, Object, Operation, Set, Transaction};
use crate::render::ChainContent;
use std::collections::BTreeSet;

/// Cuts a stream of operations into transactions of at most `limit` operations, each
/// rendered as nft text as it is written (no typed objects are held), and hands each one
/// to `send` as soon as it is full.
pub(super) struct Batches<'a> {
    current: Transaction,
    limit: usize,
    operations: usize,
    send: &'a mut dyn FnMut(Transaction),
}

impl<'a> Batches<'a> {
    /// Batches of at most `limit` (at least 1) operations on `family table`.
    pub(super) fn new(
        family: Family,
        table: &str,
        limit: usize,
        send: &'a mut dyn FnMut(Transaction),
    ) -> Batches<'a> {
        Batches {
            current: Transaction::written(family, table),
            limit: limit.max(1),
            operations: 0,
            send,
        }
    }

    fn push(&mut self, op: Operation) {
        self.current.push(op);
        if self.current.len() >= self.limit {
            self.send_current();
        }
    }

    fn send_current(&mut self) {
        if self.current.is_empty() {
            return;
        }
        let empty = self.current.empty_like();
        let batch = std::mem::replace(&mut self.current, empty);
        self.operations += batch.len();
        (self.send)(batch);
    }
}

/// A sync's operations, written port by port into [`Batches`]; set deletions wait until
/// every rule is written.
pub(super) struct SyncWriter<'a> {
    out: Batches<'a>,
    set_deletes: Transaction,
    /// Element keys whose owners changed, for reconciliation.
    pub(super) touched: BTreeSet<ElementKey>,
}

impl<'a> SyncWriter<'a> {
    /// A writer sending into `out`.
    pub(super) fn new(out: Batches<'a>) -> SyncWriter<'a> {
        SyncWriter {
            set_deletes: Transaction::new(out.current.family(), out.current.table()),
            touched: BTreeSet::new(),
            out,
        }
    }

    /// Sends every operation of `tx` (the fixed objects) now. When batches are bounded
    /// (a first sync) they end a batch of their own: base chains, sets and maps go
    /// through `nft`, while the service ports after them can go over netlink.
    pub(super) fn write_all(&mut self, tx: Transaction) {
        tx.into_operations()
            .into_iter()
            .for_each(|op| self.out.push(op));
        if self.out.limit != usize::MAX {
            self.out.send_current();
        }
    }

    /// Writes one service port: each chain created and flushed, its sets, then the
    /// chains' rules.
    pub(super) fn write_port(&mut self, chains: Vec<ChainContent>, sets: Vec<Set>) {
        for chain in &chains {
            self.out
                .push(Operation::Add(Box::new(Object::Chain(Chain::regular(
                    chain.name.as_str(),
                )))));
            self.out
                .push(Operation::Flush(Named::Chain(chain.name.clone())));
        }
        for set in sets {
            self.out.push(Operation::Add(Box::new(Object::Set(set))));
        }
        for rule in chains.into_iter().flat_map(|c| c.rules) {
            self.out.push(Operation::Add(Box::new(Object::Rule(rule))));
        }
    }

    /// Flushes a chain no port uses any more.
    pub(super) fn flush_stale(&mut self, name: &str) {
        self.out
            .push(Operation::Flush(Named::Chain(name.to_string())));
    }

    /// Empties a set or map of elements now, before the element changes.
    pub(super) fn flush_container(&mut self, named: Named) {
        self.out.push(Operation::Flush(named));
    }

    /// Deletes an element now (after every port's chains).
    pub(super) fn delete_element(&mut self, element: Element) {
        self.out.push(Operation::DeleteElement(Box::new(element)));
    }

    /// Adds an element now (after every port's chains).
    pub(super) fn add_element(&mut self, element: Element) {
        self.out
            .push(Operation::Add(Box::new(Object::Element(element))));
    }

    /// Deletes an affinity set once every rule is written.
    pub(super) fn delete_set(&mut self, name: &str) {
        self.set_deletes.delete(Named::Set(name.to_string()));
    }

    /// Sends the set deletions and the last batch; returns how many operations were sent
    /// in all.
    pub(super) fn finish(mut self) -> usize {
        for op in self.set_deletes.into_operations() {
            self.out.push(op);
        }
        self.out.send_current();
        self.out.operations
    }
}
