//! kproxy's nftables mode. Services live in verdict maps in one `kube-proxy` table per
//! family, so the per-packet cost does not grow with the number of services, and each
//! sync after the first sends only what changed.
//!
//! - [`nft`]: typed nftables objects, transactions, parsers, the `nft` runner and a fake.
//! - [`render`]: pure functions from the service model to nft objects.
//! - [`NftablesProxier`]: the state machine that turns snapshots into full or partial
//!   transactions and remembers what the kernel holds.
//! - [`trace`]: walks one packet through a ruleset (command text or `nft list` output).
//! - [`conformance`]: checks a case directory of upstream test expectations.

pub mod conformance;
pub mod naming;
pub mod nft;
pub mod proxier;
pub mod render;
pub mod settings;
pub mod trace;

pub use nft::{FakeNft, NftCommand, NftError, NftRunner, Transaction};
pub use proxier::{
    delete_tables, KernelView, NftablesProxier, SentSync, SettingsError, SyncPlan, SyncReport,
    STALE_CHAIN_DELAY,
};
pub use settings::{LocalTrafficDetector, ProxierSettings};
