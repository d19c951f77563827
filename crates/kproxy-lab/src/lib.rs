//! kproxy-lab: a node, its pods and outside clients built out of network namespaces on
//! this machine, with kproxy running on the node, for end-to-end tests, the scale harness
//! and `kproxy demo`.
//!
//! - [`Lab`] ([`topology`]) builds the namespaces and links along the address [`plan`];
//!   pods run [`server`]s that answer with their name and the client address they saw.
//! - [`client`] connects from any namespace and says where the connection landed
//!   ([`Outcome`]).
//! - [`Agent`] ([`agent`]) runs the `kproxy` binary ([`AgentBinary`]) in the node
//!   namespace in a [`ProxyMode`], against a cluster file or a [`LabApiServer`] (the
//!   project's fake API server, listening inside the node namespace).
//! - [`demo`] is `kproxy demo`.
//!
//! Nothing here touches the root namespace's interfaces, routes or firewall; every
//! namespace is deleted when its owner drops, also when a test panics.

pub mod agent;
pub mod apiserver;
pub mod binary;
pub mod client;
pub mod command;
pub mod demo;
pub mod error;
pub mod mode;
pub mod netns;
pub mod plan;
pub mod require;
pub mod server;
pub mod sweep;
pub mod topology;

pub use agent::{Agent, AgentOptions, ClusterSource};
pub use apiserver::LabApiServer;
pub use binary::AgentBinary;
pub use client::{tcp_probe, udp_probe, Landing, Outcome, Probe, UdpSession};
pub use demo::{run_demo, DemoError, DemoReport};
pub use error::LabError;
pub use mode::ProxyMode;
pub use netns::Netns;
pub use topology::{Lab, LabSpec};
