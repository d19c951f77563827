//! The ipvs mode from kproxy's model.
//!
//! - [`render`]: a snapshot and the host's addresses in, the [`DesiredState`] out: virtual
//!   servers with real servers, kube-ipvs0 addresses, ipset entries, firewall facts.
//! - [`render_rules`]: the mode's `iptables-restore` text (a fixed set of chains matching
//!   the ipsets).
//! - [`IpvsProxier`]: per sync, plans every change from the desired state and an
//!   [`Observed`] kernel state (IPVS ops through [`crate::plan()`], ipset restore text,
//!   iptables restore text, addresses to bind and unbind), and keeps graceful-termination
//!   timers between syncs. Pure.
//! - [`IpvsKernel`]: observes the kernel and applies an [`IpvsSyncPlan`] through the
//!   crate's seams; [`fakes`] holds in-memory stand-ins for tests.

mod desired;
pub mod fakes;
mod host;
mod kernel;
mod node_addresses;
mod proxier;
mod rules;
mod service;
mod sets;
mod settings;

pub use desired::{render, DesiredState, HealthCheck};
pub use host::{
    parse_addresses_except, split_args, HostAddresses, IpCommandHost, IptablesCommand,
    IptablesRunner,
};
pub use kernel::{ApplyReport, IpvsKernel};
pub use node_addresses::{node_addresses, node_port_ips, usable_node_address};
pub use proxier::{IpvsProxier, IpvsSyncPlan, Observed};
pub use rules::{
    chain_declarations, jump_rules, render_cleanup, render_rules, FILTER_CHAINS, NAT_CHAINS,
};
pub use service::ipvs_protocol;
pub use sets::{build_sets, set_name, SetEntries};
pub use settings::{IpvsSettings, DRAIN_CHECK_PERIOD};

#[cfg(test)]
mod tests;
