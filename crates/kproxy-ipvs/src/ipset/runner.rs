//! Feeding `ipset restore`.

use super::RestoreText;
use crate::error::Result;
use crate::tool;

/// Applies `ipset restore` text and reads sets back.
pub trait IpsetRunner {
    /// Runs the commands of `text`; the first failing line stops it.
    fn restore(&mut self, text: &RestoreText) -> Result<()>;

    /// The sets and their entries in `ipset save` format.
    fn save(&mut self) -> Result<String>;
}

/// Runs the `ipset` tool, in the current network namespace or a named one.
#[derive(Debug, Clone, Default)]
pub struct IpsetCommand {
    netns: Option<String>,
}

impl IpsetCommand {
    /// `ipset` in the current network namespace.
    pub fn new() -> IpsetCommand {
        IpsetCommand::default()
    }

    /// `ipset` inside the named network namespace (`ip netns exec NAME ipset`).
    pub fn in_netns(name: impl Into<String>) -> IpsetCommand {
        IpsetCommand {
            netns: Some(name.into()),
        }
    }
}

impl IpsetRunner for IpsetCommand {
    fn restore(&mut self, text: &RestoreText) -> Result<()> {
        tool::run(self.netns.as_deref(), "ipset", &["restore"], text.as_str()).map(|_| ())
    }

    fn save(&mut self) -> Result<String> {
        tool::run(self.netns.as_deref(), "ipset", &["save"], "")
    }
}
