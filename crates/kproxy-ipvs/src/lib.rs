//! The kernel side of kproxy's ipvs mode.
//!
//! - [`IpvsHandle`]: read and change the IPVS table. [`NetlinkIpvs`] talks
//!   generic netlink to the kernel (the message encoding is pure and unit
//!   tested); [`FakeIpvs`] answers like the kernel, in memory.
//! - [`plan()`]: the pure diff from the table as it is to the table a mode
//!   wants, as a list of [`IpvsOp`], with graceful termination of real servers
//!   ([`graceful`]).
//! - [`ipset`]: `ipset restore` text for kube-proxy's sets, and a runner.
//! - [`link`] and [`sysctl`]: the `kube-ipvs0` dummy interface and the
//!   sysctls IPVS mode needs.
//! - [`mode`]: the ipvs mode itself, from kproxy's model: renderer, proxier
//!   state machine ([`IpvsProxier`]) and kernel facade ([`IpvsKernel`]).
//! - [`conformance`]: checks one upstream conformance case
//!   ([`conformance::check_case`]).
//!
//! Tests that need the kernel run in a User-Mode Linux guest:
//! `tools/ipvs-vm/test`.

pub mod conformance;
mod error;
mod fake;
pub mod graceful;
mod handle;
pub mod ipset;
pub mod link;
pub mod mode;
mod netlink;
mod netlink_handle;
mod ops;
mod plan;
pub mod sysctl;
mod tool;
mod types;

pub use error::{Error, Result};
pub use fake::FakeIpvs;
pub use graceful::{DrainPolicy, Draining};
pub use handle::IpvsHandle;
pub use mode::{IpvsKernel, IpvsProxier, IpvsSettings, IpvsSyncPlan, Observed};
pub use netlink_handle::NetlinkIpvs;
pub use ops::{Failure, IpvsOp};
pub use plan::{plan, DesiredService, Plan, PlanOptions};
pub use types::{
    ConnectionCounts, Destination, ForwardMethod, Persistence, Protocol, RealServer, RealServerKey,
    SchedFlags, Scheduler, ServiceKey, ServiceState, Timeouts, VirtualServer,
};
