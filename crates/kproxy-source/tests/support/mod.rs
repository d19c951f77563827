//! A consumer that folds a source's events into a store, as the agent's sync loop does,
//! and keeps a readable log of them.

use kproxy_model::{ClusterStore, StoreEvent};
use kproxy_source::{InitialSync, RunningSource, SourceEvent};
use std::time::Duration;
use tokio::time::{timeout_at, Instant};

/// The longest any test waits for something to happen.
const PATIENCE: Duration = Duration::from_secs(15);

/// Reads a source, applies its events to a store and logs them as text.
pub struct Consumer {
    source: RunningSource,
    /// The store the events were applied to.
    pub store: ClusterStore,
    /// One line per event: `replace Service [ns/a]`, `apply Node n1`, `synced Service`, `warning ...`.
    pub log: Vec<String>,
    sync: InitialSync,
}

impl Consumer {
    pub fn new(source: RunningSource) -> Self {
        Consumer {
            source,
            store: ClusterStore::new(),
            log: Vec::new(),
            sync: InitialSync::new(),
        }
    }

    /// Reads events until `done` holds; panics (naming `what` and the log) after `PATIENCE`.
    pub async fn wait_for(&mut self, what: &str, done: impl Fn(&Consumer) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            match timeout_at(deadline, self.source.recv()).await {
                Ok(Some(event)) => self.take(event),
                Ok(None) => panic!(
                    "source stopped while waiting for {what}; log: {:#?}",
                    self.log
                ),
                Err(_) => panic!("timed out waiting for {what}; log: {:#?}", self.log),
            }
        }
    }

    /// Reads events for `period`; returns the lines logged meanwhile.
    pub async fn read_for(&mut self, period: Duration) -> Vec<String> {
        let start = self.log.len();
        let deadline = Instant::now() + period;
        while let Ok(Some(event)) = timeout_at(deadline, self.source.recv()).await {
            self.take(event);
        }
        self.log[start..].to_vec()
    }

    /// Waits until every kind has completed its initial list.
    pub async fn initial_sync(&mut self) {
        self.wait_for("the initial sync", |c| c.sync.is_complete())
            .await;
    }

    /// Whether this exact line was logged.
    pub fn logged(&self, line: &str) -> bool {
        self.log.iter().any(|l| l == line)
    }

    /// Lines starting with `prefix`.
    pub fn lines_starting(&self, prefix: &str) -> Vec<String> {
        self.log
            .iter()
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// `namespace/name` of every Service in the store.
    pub fn services(&self) -> Vec<String> {
        self.store
            .services()
            .map(|(name, _)| name.to_string())
            .collect()
    }

    fn take(&mut self, event: SourceEvent) {
        self.sync.observe(&event);
        self.log.push(describe(&event));
        if let SourceEvent::Store(store_event) = event {
            self.store.apply(store_event);
        }
    }
}

/// One line for an event.
pub fn describe(event: &SourceEvent) -> String {
    match event {
        SourceEvent::Store(StoreEvent::Replace(kind, objects)) => {
            let names: Vec<String> = objects
                .iter()
                .map(|o| {
                    let r = o.object_ref();
                    if r.namespace.is_empty() {
                        r.name
                    } else {
                        format!("{}/{}", r.namespace, r.name)
                    }
                })
                .collect();
            format!("replace {kind} [{}]", names.join(", "))
        }
        SourceEvent::Store(StoreEvent::Apply(object)) => format!("apply {}", object.object_ref()),
        SourceEvent::Store(StoreEvent::Delete(object_ref)) => format!("delete {object_ref}"),
        SourceEvent::Synced(kind) => format!("synced {kind}"),
        SourceEvent::Warning(warning) => format!("warning {warning}"),
    }
}
