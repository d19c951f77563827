//! A watch stream: the events since the requested resourceVersion, then live changes, as
//! newline-delimited JSON, until the client leaves, the timeout passes or the test hangs up.

use crate::filter::{bookmark_event, watch_event, Filter};
use crate::history::{Expired, History};
use crate::shared::{LiveMessage, Shared};
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchStart {
    /// No (or `0`) resourceVersion: every current object as `ADDED`, then changes.
    Now,
    /// Changes after this resourceVersion.
    After(u64),
}

/// How a watch behaves besides its filter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WatchOptions {
    pub start: WatchStart,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
}

/// Starts a watch and returns the stream of lines its response body is made of.
pub(crate) fn start_watch(
    shared: &Arc<Shared>,
    filter: Filter,
    options: WatchOptions,
) -> mpsc::Receiver<Bytes> {
    let ((backlog, after), live) =
        shared.read_and_subscribe(|history| backlog(history, &filter, options.start));
    let (lines, body) = mpsc::channel(64);
    let pump = Pump {
        filter,
        after,
        bookmarks: options.bookmarks,
        deadline: options.timeout.map(|t| Instant::now() + t),
        live,
        lines,
    };
    let guard = shared.watch_guard();
    tokio::spawn(async move {
        let _open = guard;
        pump.run(backlog).await;
    });
    body
}

/// The events owed before live changes, and the resourceVersion they reach; `after` is
/// `None` when the watch is expired and ends after its error event.
fn backlog(history: &History, filter: &Filter, start: WatchStart) -> (Vec<Value>, Option<u64>) {
    let now = history.resource_version();
    match start {
        WatchStart::Now => {
            let added = history
                .objects_of(filter.resource)
                .filter(|o| filter.matches(o))
                .map(|o| watch_event("ADDED", o))
                .collect();
            (added, Some(now))
        }
        WatchStart::After(version) => match history.changes_since(version) {
            Ok(changes) => {
                let events = changes.iter().filter_map(|c| filter.event_for(c)).collect();
                (events, Some(version.max(now)))
            }
            Err(expired) => (vec![expired_event(expired)], None),
        },
    }
}

/// The `ERROR` event the API server sends when the requested history is compacted.
fn expired_event(expired: Expired) -> Value {
    watch_event(
        "ERROR",
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": format!("too old resource version: {} ({})", expired.requested, expired.oldest),
            "reason": "Expired",
            "code": 410,
        }),
    )
}

/// The task feeding one watch response.
struct Pump {
    filter: Filter,
    after: Option<u64>,
    bookmarks: bool,
    deadline: Option<Instant>,
    live: broadcast::Receiver<LiveMessage>,
    lines: mpsc::Sender<Bytes>,
}

impl Pump {
    async fn run(mut self, backlog: Vec<Value>) {
        for event in backlog {
            if !self.send(&event).await {
                return;
            }
        }
        let Some(after) = self.after else { return };
        while let Some(message) = self.next_message().await {
            let event = match message {
                LiveMessage::HangUp => return,
                LiveMessage::Change(change) if change.resource_version > after => {
                    self.filter.event_for(&change)
                }
                LiveMessage::Bookmark(version) if self.bookmarks => {
                    Some(bookmark_event(self.filter.resource, version))
                }
                LiveMessage::Change(_) | LiveMessage::Bookmark(_) => None,
            };
            if let Some(event) = event {
                if !self.send(&event).await {
                    return;
                }
            }
        }
    }

    /// The next live message, or `None` when the stream should end: timed out, client gone, or fallen too far behind (the client then resumes from its version).
    async fn next_message(&mut self) -> Option<LiveMessage> {
        let deadline = self.deadline;
        tokio::select! {
            biased;
            _ = self.lines.closed() => None,
            _ = until(deadline) => None,
            message = self.live.recv() => message.ok(),
        }
    }

    async fn send(&self, event: &Value) -> bool {
        let mut line = event.to_string().into_bytes();
        line.push(b'\n');
        self.lines.send(Bytes::from(line)).await.is_ok()
    }
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
