//! What can go wrong building a lab, running the agent or talking to the fake API server.

use std::path::PathBuf;

/// A lab failure, with the command or file that failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// This machine cannot run the lab (not root, a tool missing); tests skip or fail.
    #[error("this machine cannot run the lab: {0}")]
    Unsupported(String),
    /// An external command failed or ran too long.
    #[error("`{command}` failed: {message}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status and standard error, or the reason it could not run.
        message: String,
    },
    /// Entering a network namespace failed.
    #[error("entering network namespace {namespace}: {source}")]
    Setns {
        /// The namespace name.
        namespace: String,
        /// The error.
        source: std::io::Error,
    },
    /// A file of the lab could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A socket operation of a server or of the lab's own plumbing failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The kproxy binary could not be found or run.
    #[error("kproxy binary: {0}")]
    Binary(String),
    /// The kproxy binary runs, but has no node agent mode yet (no `--cluster-file`).
    #[error("{0} does not run the node agent yet (its --help has no --cluster-file)")]
    NoAgent(String),
    /// The kproxy binary does not have this proxy mode yet.
    #[error("kproxy does not have proxy mode {0} yet")]
    ModeUnavailable(String),
    /// The agent exited or did not program its rules in time.
    #[error("kproxy agent: {message}\n--- agent log (last lines) ---\n{log}")]
    Agent {
        /// What happened.
        message: String,
        /// The end of the agent's log.
        log: String,
    },
    /// The fake API server refused a change or its thread is gone.
    #[error("fake API server: {0}")]
    Api(String),
}

impl LabError {
    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        LabError::Io {
            what: what.into(),
            source,
        }
    }
}
