//! kproxy's iptables mode: renders the service model into `iptables-restore` input that is
//! rule-for-rule what upstream kube-proxy writes, and keeps track of what the kernel holds
//! so later syncs write only what changed. Pure: no I/O; the kernel runner lives in the
//! node agent.

pub mod canonical;
pub mod chain_name;
pub mod chain_names;
pub mod fake;
pub mod jumps;
pub mod probability;
pub mod proxier;
pub mod restore_text;
pub mod rule;
pub mod service;
pub mod settings;

pub use chain_name::{hash16, is_service_chain, ServiceChains};
pub use jumps::{is_builtin_chain, is_verdict, jump_rules, JumpRule, LOCALNET_GUARD_CHAIN};
pub use proxier::{IptablesProxier, SyncPlan};
pub use restore_text::RestoreText;
pub use settings::{mark_for_bit, IptablesSettings, LocalDetector};
