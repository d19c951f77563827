//! The crate's error type.

use std::io;

/// What went wrong on a netlink socket.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed (socket, bind, send, receive).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The kernel answered a request with an errno.
    #[error("{}", io::Error::from_raw_os_error(*errno))]
    Kernel {
        /// The positive errno.
        errno: i32,
    },
    /// A reply could not be decoded.
    #[error("malformed netlink reply: {0}")]
    Malformed(String),
}

impl Error {
    pub(crate) fn last_os_error(context: &'static str) -> Error {
        Error::Io {
            context,
            source: io::Error::last_os_error(),
        }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
