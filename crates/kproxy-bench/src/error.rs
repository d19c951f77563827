//! What can stop a benchmark case.

use kproxy_lab::LabError;

/// A benchmark failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Building the lab, running a tool in it or running the agent failed.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// A socket or file operation of the benchmark itself failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The measured Service is not where the benchmark needs it (last of iptables' walk).
    #[error("the measured service is programmed at {0:?}, not last in KUBE-SERVICES")]
    Placement(crate::kernel::Placement),
    /// The arguments make no sense (`--services 0`).
    #[error("{0}")]
    Usage(String),
}

impl BenchError {
    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        BenchError::Io {
            what: what.into(),
            source,
        }
    }
}
