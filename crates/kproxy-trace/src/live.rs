//! Reading the node's live ruleset with `iptables-save` / `ip6tables-save`.

use crate::parser::ParseError;
use crate::ruleset::Ruleset;
use std::process::Command;

/// The live ruleset could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The save command could not be started.
    #[error("cannot run {command}: {source}")]
    Spawn {
        /// The command.
        command: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The save command failed.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command.
        command: &'static str,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The output could not be parsed.
    #[error("cannot parse {command} output: {source}")]
    Parse {
        /// The command.
        command: &'static str,
        /// The parse error.
        source: ParseError,
    },
}

/// Runs `iptables-save` (or `ip6tables-save` when `ipv6`) in the current network
/// namespace and parses its output.
pub fn read_live_ruleset(ipv6: bool) -> Result<Ruleset, LiveError> {
    let command = if ipv6 {
        "ip6tables-save"
    } else {
        "iptables-save"
    };
    let output = Command::new(command)
        .output()
        .map_err(|source| LiveError::Spawn { command, source })?;
    if !output.status.success() {
        return Err(LiveError::Failed {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ruleset::parse(&text).map_err(|source| LiveError::Parse { command, source })
}
