//! kproxy's node agent: what runs as `kproxy` on every node, a drop-in for kube-proxy.
//!
//! - [`flags`] and [`config`]: kube-proxy's flags and KubeProxyConfiguration file, resolved
//!   with kube-proxy's precedence into an [`AgentConfig`].
//! - [`sync_loop`]: source events into the cluster store, changes coalesced by the
//!   [`bounded_runner`], per-family snapshots handed to a [`mode::ProxyMode`]; conntrack
//!   cleanup ([`conntrack`]), health-check node ports ([`hcserver`]), health ([`healthz`])
//!   and [`metrics`] shared by every mode.
//! - [`iptables_mode`]: the iptables mode over the pure renderer in `kproxy-iptables`;
//!   [`nftables_mode`]: the nftables mode over `kproxy-nftables`' proxier;
//!   [`ipvs_mode`]: the ipvs mode over `kproxy-ipvs`' proxier and kernel facade;
//!   [`chain_audit`]: the iptables mode's check that no service chain was deleted or flushed.
//! - [`startup`]: builds the configured mode, removing other modes' leftovers first.
//! - [`kernel`]: the only code that runs tools (`iptables-restore`, `iptables-save`,
//!   `iptables`, `nft`, sysctls), one trait per tool with a real and a fake implementation.
//! - [`mod@cleanup`] holds `--cleanup`.
//! - [`agent`]: the wiring, and the entry points [`run_agent`] and [`cleanup()`].
//! - [`xtables_restore`]: `kproxy xtables-restore`, the legacy backend's restore tool
//!   (x_tables blobs written without libiptc, see `kproxy-xtables`).

pub mod agent;
pub mod allocator;
pub mod bounded_runner;
pub mod chain_audit;
pub mod cleanup;
pub mod config;
pub mod config_file;
pub mod config_ipvs;
pub mod conntrack;
pub mod duration;
pub mod flags;
pub mod hcserver;
pub mod healthz;
pub mod http;
pub mod iptables_jumps;
pub mod iptables_mode;
pub mod ipvs_mode;
pub mod kernel;
pub mod logging;
pub mod metrics;
pub mod mode;
pub mod nftables_mode;
pub mod startup;
pub mod sync_loop;
pub mod xtables_restore;

pub use agent::{cleanup, run_agent, serve, AgentError};
pub use config::AgentConfig;
pub use flags::AgentArgs;
pub use xtables_restore::{run_xtables_restore, XtablesRestoreArgs};
