//! Where kproxy's cluster state comes from.
//!
//! A [`Source`] is either the Kubernetes API server ([`ApiSourceConfig`]: list and watch
//! Services and EndpointSlices with kube-proxy's label selector, and the agent's own Node)
//! or manifest files ([`FileSourceConfig`], `--cluster-file`). Both are started the same
//! way and yield the same [`SourceEvent`]s on a [`RunningSource`]:
//!
//! - [`SourceEvent::Store`] carries a [`kproxy_model::StoreEvent`] for the
//!   [`kproxy_model::ClusterStore`]: `Replace` for a complete (re)list of one kind,
//!   `Apply` and `Delete` for watched changes.
//! - [`SourceEvent::Synced`] says a kind's first complete list has been sent; an
//!   [`InitialSync`] tells when all kinds are, so the first sync sees the whole cluster.
//! - [`SourceEvent::Warning`] reports a problem the source works around. While the API
//!   server is away the source retries with [`BackoffPolicy`] and sends nothing else: the
//!   store keeps what it knows, and rules stay programmed.

mod api;
mod backoff;
mod event;
mod file;
mod source;

pub use api::kinds::{node_field_selector, PROXY_LABEL_SELECTOR};
pub use api::ApiSourceConfig;
pub use backoff::BackoffPolicy;
pub use event::{InitialSync, SourceEvent, SourceWarning};
pub use file::FileSourceConfig;
pub use source::{RunningSource, Source, SourceError};
