//! kproxy's x_tables codec: what `iptables-legacy-restore --noflush` does to a table, without
//! libiptc. Pure: bytes in, bytes out, no I/O.
//!
//! - [`restore`] reads restore input (`*table`, `:CHAIN`, `-A`/`-I`/`-D`/`-X`, `COMMIT`);
//! - [`rule`] encodes one rule's arguments into an x_tables entry, with the match and
//!   target revisions `iptables` 1.8 picks on current kernels ([`extension`]);
//! - [`table`] decodes the kernel's table (`IPT_SO_GET_ENTRIES`), applies the commands and
//!   encodes the replacement (`IPT_SO_SET_REPLACE`) with the counters to carry over.
//!
//! Anything it does not know how to encode is [`XtError::Unsupported`]: the caller then
//! hands the same input to the real `iptables-legacy-restore`.

pub mod args;
pub mod extension;
pub mod layout;
pub mod restore;
pub mod rule;
pub mod table;

pub use layout::Family;

/// Why input could not be turned into a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XtError {
    /// A form this codec does not encode (the real tool may well accept it).
    #[error("not encoded by kproxy: {0}")]
    Unsupported(String),
    /// Input the real tool refuses too (a missing chain, a referenced chain deleted, ...).
    #[error("{0}")]
    Invalid(String),
    /// A kernel table this codec cannot read.
    #[error("unreadable table: {0}")]
    Corrupt(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, XtError>;
