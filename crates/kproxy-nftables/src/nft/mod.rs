//! A small, explicit nftables seam: typed objects, transactions rendered as `nft -f -`
//! text, parsers for that text and for `nft list` output, an in-memory ruleset with the
//! kernel's rules, the runners, the netlink reads `nft` is too slow for, and a netlink
//! writer for small batches.

pub mod listing;
pub mod netlink;
pub mod objects;
pub mod parse;
pub mod runner;
pub mod state;
pub mod text;
pub mod transaction;
pub mod wire;

pub use objects::{
    BaseChain, Chain, ChainType, Element, Family, Hook, Map, Object, Rule, Set, Table,
};
pub use runner::{FakeNft, NftCommand, NftError, NftRunner};
pub use state::{ChainState, RulesetState, StateError, TableState};
pub use transaction::{Named, Operation, Transaction};
