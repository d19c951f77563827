//! Named checks that count passes and failures, so one broken behaviour does not hide
//! the others, and the run ends with `ipvs-agent: N passed, M failed`.

use std::time::{Duration, Instant};

/// What a check found wrong.
pub type Failure = String;

/// The outcome of the checks run so far.
#[derive(Debug, Default)]
pub struct Checks {
    passed: usize,
    failed: usize,
}

impl Checks {
    /// Records `outcome` of the check `name` and prints it; returns whether it passed.
    pub fn record(&mut self, name: &str, outcome: Result<(), Failure>) -> bool {
        match outcome {
            Ok(()) => {
                self.passed += 1;
                println!("ok   {name}");
                true
            }
            Err(why) => {
                self.failed += 1;
                println!("FAIL {name}: {why}");
                false
            }
        }
    }

    /// Whether every check passed (and at least one ran).
    pub fn all_passed(&self) -> bool {
        self.failed == 0 && self.passed > 0
    }

    /// The summary line the test-agent script reads.
    pub fn summary(&self) -> String {
        format!("ipvs-agent: {} passed, {} failed", self.passed, self.failed)
    }
}

/// Polls `probe` every `every` until it returns `Ok`, or returns its last error once
/// `timeout` has passed. On success returns how long it took.
pub fn eventually<T>(
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<T, Failure>,
) -> Result<(T, Duration), Failure> {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(value) => return Ok((value, start.elapsed())),
            Err(why) if start.elapsed() >= timeout => {
                return Err(format!("still after {timeout:?}: {why}"))
            }
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// `Ok` when `condition` holds, else the failure `why` describes.
pub fn ensure(condition: bool, why: impl FnOnce() -> String) -> Result<(), Failure> {
    if condition {
        Ok(())
    } else {
        Err(why())
    }
}
