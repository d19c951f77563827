//! An in-process fake kube-apiserver for kproxy's tests and scale harness.
//!
//! [`FakeApiServer`] serves Services, EndpointSlices and Nodes over plain HTTP on
//! `127.0.0.1` with the real list/watch protocol: list responses carry
//! `metadata.resourceVersion`; `?watch=1&resourceVersion=N` streams newline-delimited
//! `ADDED`/`MODIFIED`/`DELETED`/`BOOKMARK`/`ERROR` events; label and field selectors filter
//! both (an object relabelled out of a selection is a `DELETED` for its watchers); a
//! resourceVersion older than the compaction point gets an `ERROR` event carrying a `410`
//! Status; a list with `limit` comes in pages joined by `continue` tokens, every page at the
//! first one's resourceVersion (`410 Gone` once that is compacted). The test drives the
//! cluster and the weather: [`FakeApiServer::apply_manifest`], [`FakeApiServer::apply_json`],
//! [`FakeApiServer::delete`], [`FakeApiServer::compact`], [`FakeApiServer::send_bookmarks`],
//! [`FakeApiServer::drop_watches`], [`FakeApiServer::stop`] and [`FakeApiServer::restart`].
//!
//! Not served: writes over HTTP, streaming lists (`sendInitialEvents`), protobuf.

mod filter;
mod history;
mod http;
mod kubeconfig;
mod page;
mod query;
mod resource;
mod selector;
mod server;
mod shared;
mod watch;

pub use history::ApplyError;
pub use kubeconfig::kubeconfig_yaml;
pub use resource::ResourceType;
pub use server::{FakeApiError, FakeApiServer};
pub use shared::RecordedRequest;
