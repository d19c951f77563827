//! The API source: lists and watches Services, EndpointSlices and the agent's Node through
//! kube-runtime's watcher (resume from the last resourceVersion, relist on `410 Gone`),
//! with exponential backoff while the API server is away.

mod connect;
mod feed;
pub mod kinds;

use crate::backoff::{Backoff, BackoffPolicy};
use crate::event::{SourceEvent, SourceWarning};
use crate::source::SourceError;
use feed::KindFeed;
use futures::StreamExt;
use kinds::{node_field_selector, Watched, WatchedKind, PROXY_LABEL_SELECTOR};
use kproxy_model::slim::{SlimEndpointSlice, SlimNode, SlimService};
use kube::runtime::watcher::{self, watcher};
use kube::{Api, Client};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Where the API server is and what to watch.
#[derive(Debug, Clone, Default)]
pub struct ApiSourceConfig {
    /// `--kubeconfig`: path to a kubeconfig file.
    pub kubeconfig: Option<PathBuf>,
    /// `--master`: the API server URL, overriding the kubeconfig's.
    pub master: Option<String>,
    /// The agent's node name (`--hostname-override` or the host name); its Node is watched.
    pub node_name: String,
    /// Delays between attempts while the API server is unreachable.
    pub backoff: BackoffPolicy,
}

/// Connects and starts one watch task per kind, all sending into `events`.
pub(crate) async fn start(
    config: ApiSourceConfig,
    events: mpsc::Sender<SourceEvent>,
) -> Result<Vec<JoinHandle<()>>, SourceError> {
    let client = connect::connect(config.kubeconfig.as_deref(), config.master.as_deref()).await?;
    let proxied = watcher::Config::default().labels(PROXY_LABEL_SELECTOR);
    let own_node = watcher::Config::default().fields(&node_field_selector(&config.node_name));
    Ok(vec![
        spawn_watch::<SlimService>(&client, proxied.clone(), config.backoff, events.clone()),
        spawn_watch::<SlimEndpointSlice>(&client, proxied, config.backoff, events.clone()),
        spawn_watch::<SlimNode>(&client, own_node, config.backoff, events),
    ])
}

fn spawn_watch<K: WatchedKind>(
    client: &Client,
    config: watcher::Config,
    policy: BackoffPolicy,
    events: mpsc::Sender<SourceEvent>,
) -> JoinHandle<()> {
    let api = Api::<Watched<K>>::all(client.clone());
    tokio::spawn(watch_kind(api, config, policy, events))
}

/// Follows one kind until the consumer goes away. The watcher recovers by itself on the
/// next poll after an error; this loop decides how long to wait before that poll.
async fn watch_kind<K: WatchedKind>(
    api: Api<Watched<K>>,
    config: watcher::Config,
    policy: BackoffPolicy,
    events: mpsc::Sender<SourceEvent>,
) {
    let mut feed = KindFeed::new(K::KIND);
    let mut backoff = Backoff::new(policy);
    let mut stream = std::pin::pin!(watcher(api, config));
    while let Some(item) = stream.next().await {
        let (out, pause) = match item {
            Ok(event) => {
                if KindFeed::is_progress(&event) {
                    backoff.on_progress();
                }
                (feed.on_event(event), None)
            }
            Err(error) => {
                let delay = if is_expired(&error) {
                    // The server answered: no reason to wait before the relist.
                    backoff.on_progress();
                    Duration::ZERO
                } else {
                    backoff.on_failure(Instant::now())
                };
                let warning = SourceWarning::Watch {
                    kind: K::KIND,
                    message: error.to_string(),
                    retry_in: delay,
                };
                (vec![SourceEvent::Warning(warning)], Some(delay))
            }
        };
        for event in out {
            if events.send(event).await.is_err() {
                return;
            }
        }
        if let Some(delay) = pause.filter(|d| !d.is_zero()) {
            tokio::time::sleep(delay).await;
        }
    }
}

/// Whether the watch ended with `410 Gone` (its resourceVersion was compacted away): the
/// API server is answering, and the watcher lists again on its next poll, which should
/// come at once rather than after the backoff grown while the server was unreachable.
fn is_expired(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::WatchError(status) if status.code == 410)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch_error(code: u16) -> watcher::Error {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": code, "reason": "Expired", "message": "too old"
        }))
        .expect("status");
        watcher::Error::WatchError(Box::new(status))
    }

    #[test]
    fn only_gone_relists_without_backoff() {
        assert!(is_expired(&watch_error(410)));
        assert!(!is_expired(&watch_error(500)));
        assert!(!is_expired(&watcher::Error::NoResourceVersion));
    }
}
