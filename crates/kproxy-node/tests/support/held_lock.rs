//! An exclusive `flock` on a file, as another program holding the xtables lock would hold it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// An exclusive `flock` on a file, released on drop (as `flock FILE sleep N` would hold it).
pub struct HeldLock(File);

impl HeldLock {
    /// Takes the lock on `path` (created if missing); panics if it is held already.
    pub fn take(path: &Path) -> HeldLock {
        let file = File::create(path).expect("lock file");
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_eq!(rc, 0, "lock: {}", std::io::Error::last_os_error());
        HeldLock(file)
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}
