//! The crate's error type.

use std::io;

/// What went wrong talking to the kernel or a kernel tool.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed (socket, send, receive, file, spawning a tool).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The kernel refused a request with an errno.
    #[error("{request}: {}", io::Error::from_raw_os_error(*errno))]
    Kernel {
        /// The request, e.g. `add service 10.0.0.1:80/TCP`.
        request: String,
        /// The positive errno the kernel answered with.
        errno: i32,
    },
    /// The kernel has no IPVS generic netlink family (no `ip_vs` module).
    #[error("the kernel has no IPVS generic netlink family (is the ip_vs module available?)")]
    NoIpvs,
    /// A reply could not be decoded.
    #[error("malformed netlink reply: {0}")]
    Malformed(String),
    /// An external tool (ipset, ip) exited with an error.
    #[error("{command} failed ({status}): {stderr}")]
    Tool {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it wrote on stderr.
        stderr: String,
    },
    /// An external tool ran past its deadline and was killed.
    #[error("{command} did not finish within {after:?} and was killed")]
    ToolTimeout {
        /// The command line.
        command: String,
        /// The deadline.
        after: std::time::Duration,
    },
}

impl From<kproxy_netlink::Error> for Error {
    fn from(e: kproxy_netlink::Error) -> Error {
        match e {
            kproxy_netlink::Error::Io { context, source } => Error::io(context, source),
            kproxy_netlink::Error::Kernel { errno } => Error::Kernel {
                request: "netlink request".into(),
                errno,
            },
            kproxy_netlink::Error::Malformed(text) => Error::Malformed(text),
        }
    }
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The kernel errno, when the kernel refused a request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// Whether the kernel said the object already exists (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    /// Whether the kernel said the object does not exist (ENOENT, or ESRCH for services).
    pub fn is_not_found(&self) -> bool {
        matches!(self.errno(), Some(libc::ENOENT) | Some(libc::ESRCH))
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
