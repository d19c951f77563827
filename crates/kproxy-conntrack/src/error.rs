//! The crate's error type.

use std::io;

/// What went wrong talking to ctnetlink.
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
    /// The kernel refused a request with an errno.
    #[error("{request}: {}", io::Error::from_raw_os_error(*errno))]
    Kernel {
        /// The request, e.g. `dump the IPv4 conntrack table`.
        request: String,
        /// The positive errno the kernel answered with.
        errno: i32,
    },
    /// Some deletions failed with an error other than "no such entry".
    #[error("{failed} conntrack deletions failed, the first with: {}", io::Error::from_raw_os_error(*errno))]
    Delete {
        /// How many deletions failed.
        failed: usize,
        /// The errno of the first failure.
        errno: i32,
    },
    /// A reply could not be decoded.
    #[error("malformed netlink reply: {0}")]
    Malformed(String),
}

impl From<kproxy_netlink::Error> for Error {
    fn from(e: kproxy_netlink::Error) -> Error {
        match e {
            kproxy_netlink::Error::Io { context, source } => Error::Io { context, source },
            kproxy_netlink::Error::Kernel { errno } => Error::Kernel {
                request: "netlink request".into(),
                errno,
            },
            kproxy_netlink::Error::Malformed(text) => Error::Malformed(text),
        }
    }
}

/// The crate's result type.
pub(crate) type Result<T> = std::result::Result<T, Error>;
