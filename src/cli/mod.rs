//! The subcommands of the kproxy binary.

pub mod rules;
pub mod trace;
