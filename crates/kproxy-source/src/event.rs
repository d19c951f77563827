//! What a source tells the agent: store events, the end of each kind's initial list, and
//! warnings to log.

use kproxy_model::{ManifestError, ObjectKind, StoreEvent};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// One message from a source.
#[derive(Debug)]
pub enum SourceEvent {
    /// A change to apply to the [`kproxy_model::ClusterStore`].
    Store(StoreEvent),
    /// The first complete list of this kind has been sent (as a `Replace`). Sent once per
    /// kind; the agent syncs for the first time when every kind is synced (see
    /// [`InitialSync`]).
    Synced(ObjectKind),
    /// Something went wrong that the source works around (it retries, or keeps the last
    /// good content); the agent logs it. What is already known stays valid.
    Warning(SourceWarning),
}

/// A problem a source reports and recovers from.
#[derive(Debug, thiserror::Error)]
pub enum SourceWarning {
    /// Listing or watching a kind failed; the source retries with backoff and resumes.
    #[error("watching {kind} objects: {message}; retrying in {} ms", retry_in.as_millis())]
    Watch {
        /// The kind being watched.
        kind: ObjectKind,
        /// The client's error.
        message: String,
        /// The delay before the next attempt.
        retry_in: std::time::Duration,
    },
    /// A manifest file has an error; its previous good content is kept.
    #[error("{}: {error}", path.display())]
    Manifest {
        /// The file.
        path: PathBuf,
        /// The parser's error, naming the document and field.
        error: ManifestError,
    },
    /// A manifest file or directory could not be read; its previous content is kept.
    #[error("{}: {error}", path.display())]
    Unreadable {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
}

/// Tracks which kinds have completed their initial list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialSync {
    pending: BTreeSet<ObjectKind>,
}

impl Default for InitialSync {
    fn default() -> Self {
        InitialSync::new()
    }
}

impl InitialSync {
    /// Waiting for Services, EndpointSlices and the Node.
    pub fn new() -> Self {
        InitialSync {
            pending: [
                ObjectKind::Service,
                ObjectKind::EndpointSlice,
                ObjectKind::Node,
            ]
            .into(),
        }
    }

    /// Notes an event; returns true when this event completes the initial sync.
    pub fn observe(&mut self, event: &SourceEvent) -> bool {
        match event {
            SourceEvent::Synced(kind) => self.pending.remove(kind) && self.pending.is_empty(),
            _ => false,
        }
    }

    /// Whether every kind has been listed.
    pub fn is_complete(&self) -> bool {
        self.pending.is_empty()
    }

    /// The kinds still being listed.
    pub fn pending(&self) -> impl Iterator<Item = ObjectKind> + '_ {
        self.pending.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_once_every_kind_is_synced() {
        let mut sync = InitialSync::new();
        assert!(!sync.observe(&SourceEvent::Synced(ObjectKind::Service)));
        assert!(!sync.observe(&SourceEvent::Store(StoreEvent::Replace(
            ObjectKind::Node,
            Vec::new()
        ))));
        assert!(!sync.observe(&SourceEvent::Synced(ObjectKind::Node)));
        assert_eq!(
            sync.pending().collect::<Vec<_>>(),
            [ObjectKind::EndpointSlice]
        );
        assert!(sync.observe(&SourceEvent::Synced(ObjectKind::EndpointSlice)));
        assert!(sync.is_complete());
        assert!(!sync.observe(&SourceEvent::Synced(ObjectKind::EndpointSlice)));
    }
}
