//! State shared by the test's handle and the HTTP handlers: the history, the live change
//! feed open watches follow, and the request log.

use crate::history::{Change, History};
use crate::resource::ResourceType;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::broadcast;

/// How many live messages a slow watcher may fall behind before its stream is ended (it
/// then resumes from its last resourceVersion, as after any dropped watch).
const LIVE_CAPACITY: usize = 65_536;

/// What open watches receive as it happens.
#[derive(Debug, Clone)]
pub(crate) enum LiveMessage {
    /// An object changed.
    Change(Arc<Change>),
    /// Send a bookmark at this resourceVersion to watches that allow bookmarks.
    Bookmark(u64),
    /// End the watch, after everything published before (so a bookmark sent just before
    /// reaches the client first).
    HangUp,
}

/// One request the server received, as tests inspect it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The resource type the path names, if any.
    pub resource: Option<ResourceType>,
    /// Whether it was a watch.
    pub watch: bool,
    /// The `resourceVersion` parameter, as sent.
    pub resource_version: Option<String>,
    /// The path and query, as sent.
    pub path_and_query: String,
}

impl RecordedRequest {
    /// Whether this is a list (not a watch, not a single-object get) of `resource`.
    pub fn is_list_of(&self, resource: ResourceType) -> bool {
        self.resource == Some(resource) && !self.watch
    }

    /// Whether this is a watch of `resource`.
    pub fn is_watch_of(&self, resource: ResourceType) -> bool {
        self.resource == Some(resource) && self.watch
    }
}

/// Everything the handlers and the test handle share.
pub(crate) struct Shared {
    history: Mutex<History>,
    live: broadcast::Sender<LiveMessage>,
    requests: Mutex<Vec<RecordedRequest>>,
    open_watches: AtomicUsize,
}

impl Shared {
    pub fn new() -> Arc<Self> {
        Arc::new(Shared {
            history: Mutex::new(History::new()),
            live: broadcast::channel(LIVE_CAPACITY).0,
            requests: Mutex::new(Vec::new()),
            open_watches: AtomicUsize::new(0),
        })
    }

    /// Runs `f` on the history while holding its lock; whatever it returns as live
    /// messages is published before the lock is released, so a watch that reads the
    /// history and subscribes under the same lock misses nothing.
    pub fn mutate<T>(&self, f: impl FnOnce(&mut History) -> (T, Vec<LiveMessage>)) -> T {
        let mut history = lock(&self.history);
        let (result, messages) = f(&mut history);
        for message in messages {
            // No receiver (no open watch) is not an error.
            let _ = self.live.send(message);
        }
        result
    }

    /// Reads the history and subscribes to what follows, atomically.
    pub fn read_and_subscribe<T>(
        &self,
        f: impl FnOnce(&History) -> T,
    ) -> (T, broadcast::Receiver<LiveMessage>) {
        let history = lock(&self.history);
        (f(&history), self.live.subscribe())
    }

    /// Reads the history.
    pub fn read<T>(&self, f: impl FnOnce(&History) -> T) -> T {
        f(&lock(&self.history))
    }

    pub fn record(&self, request: RecordedRequest) {
        lock(&self.requests).push(request);
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).clone()
    }

    pub fn open_watches(&self) -> usize {
        self.open_watches.load(Ordering::SeqCst)
    }

    /// Counts an open watch until the guard is dropped.
    pub fn watch_guard(self: &Arc<Self>) -> OpenWatch {
        self.open_watches.fetch_add(1, Ordering::SeqCst);
        OpenWatch(self.clone())
    }
}

/// Held by a running watch stream.
pub(crate) struct OpenWatch(Arc<Shared>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
