//! The renderer: pure functions from the service model to nft objects.

pub mod base;
pub mod expr;
pub mod service;

pub use base::{render_fixed, ELEMENT_CONTAINERS};
pub use service::{render_service, ChainContent, RenderError, ServiceObjects};
