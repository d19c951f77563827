//! The crate's error type.

use std::io;

/// What went wrong talking to ctnetlink.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket failed, or a reply could not be decoded.
    #[error(transparent)]
    Netlink(#[from] kproxy_netlink::Error),
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
}

/// The crate's result type.
pub(crate) type Result<T> = std::result::Result<T, Error>;
