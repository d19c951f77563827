//! Exponential, capped, jittered delays between attempts to reach the API server.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;
use tokio::time::Instant;

/// How long to wait between failed attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay; each failure doubles the delay up to this.
    pub max: Duration,
    /// After this long without a failure, the next failure starts again from `initial`.
    pub reset_after: Duration,
}

impl Default for BackoffPolicy {
    /// client-go's reflector values: 800 ms doubling to 30 s, reset after 2 minutes.
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(800),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(120),
        }
    }
}

/// The delay state of one retrying loop.
#[derive(Debug)]
pub(crate) struct Backoff {
    policy: BackoffPolicy,
    next: Duration,
    last_failure: Option<Instant>,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff {
            policy,
            next: policy.initial,
            last_failure: None,
        }
    }

    /// Records a failure at `now`; returns how long to wait before the next attempt: the
    /// current delay plus up to half again of jitter (so a fleet of agents does not return
    /// in step), never more than `max`.
    pub fn on_failure(&mut self, now: Instant) -> Duration {
        if self
            .last_failure
            .is_some_and(|last| now.saturating_duration_since(last) > self.policy.reset_after)
        {
            self.next = self.policy.initial;
        }
        self.last_failure = Some(now);
        let base = self.next;
        self.next = (base * 2).min(self.policy.max);
        (base + base.mul_f64(jitter_fraction() / 2.0)).min(self.policy.max)
    }

    /// Records progress (objects arrived): the next failure starts from `initial`.
    pub fn on_progress(&mut self) {
        self.next = self.policy.initial;
        self.last_failure = None;
    }
}

/// A number in [0, 1), different on each call; good enough to spread retries.
fn jitter_fraction() -> f64 {
    let bits = RandomState::new().hash_one(0u8);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
            reset_after: Duration::from_secs(10),
        }
    }

    #[test]
    fn doubles_up_to_the_cap_with_bounded_jitter() {
        let mut backoff = Backoff::new(policy());
        let now = Instant::now();
        let delays: Vec<Duration> = (0..6).map(|_| backoff.on_failure(now)).collect();
        for (delay, base_ms) in delays.iter().zip([100u64, 200, 400, 800, 1000, 1000]) {
            let base = Duration::from_millis(base_ms);
            assert!(
                *delay >= base.min(policy().max) && *delay <= (base * 3 / 2).min(policy().max),
                "{delay:?} for {base:?}"
            );
        }
    }

    #[test]
    fn progress_or_a_quiet_spell_starts_over() {
        let mut backoff = Backoff::new(policy());
        let start = Instant::now();
        for _ in 0..4 {
            backoff.on_failure(start);
        }
        backoff.on_progress();
        assert!(backoff.on_failure(start) <= Duration::from_millis(150));
        backoff.on_failure(start);
        let later = start + Duration::from_secs(11);
        assert!(backoff.on_failure(later) <= Duration::from_millis(150));
    }
}
