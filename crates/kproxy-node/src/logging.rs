//! Log lines on standard error in klog's shape (`I1202 10:00:00.000000 kproxy] message`),
//! with kube-proxy's `--v` verbosity levels.

use std::sync::atomic::{AtomicU8, Ordering};

static VERBOSITY: AtomicU8 = AtomicU8::new(0);

/// Sets the `--v` level.
pub fn set_verbosity(level: u8) {
    VERBOSITY.store(level, Ordering::Relaxed);
}

fn emit(severity: char, message: &str) {
    let now = jiff::Timestamp::now().strftime("%m%d %H:%M:%S%.6f");
    eprintln!("{severity}{now} kproxy] {message}");
}

/// An informational line, shown when `--v` is at least `level`.
pub fn info(level: u8, message: impl AsRef<str>) {
    if VERBOSITY.load(Ordering::Relaxed) >= level {
        emit('I', message.as_ref());
    }
}

/// A warning (always shown).
pub fn warn(message: impl AsRef<str>) {
    emit('W', message.as_ref());
}

/// An error (always shown).
pub fn error(message: impl AsRef<str>) {
    emit('E', message.as_ref());
}
