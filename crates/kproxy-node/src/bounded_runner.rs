//! When to sync: a pure, clock-driven state machine in the manner of kube-proxy's
//! bounded-frequency runner.
//!
//! - A requested run happens at once when the rate limit allows it, otherwise as soon as it
//!   does: runs are at least `min_interval` apart, except that `burst` runs may follow each
//!   other when the runner has been idle (a token bucket refilled once per `min_interval`).
//! - A run happens at least every `max_interval` even without requests.
//! - [`BoundedRunner::retry_after`] asks for a run no later than a delay from now (after a
//!   failed sync), still subject to the rate limit.
//!
//! The caller owns the clock: it asks [`BoundedRunner::next_wake`] when to wake up and
//! [`BoundedRunner::try_run`] whether to run now.

use std::time::{Duration, Instant};

/// Rounding slack when comparing the token count with one.
const TOKEN_SLACK: f64 = 1e-9;

/// The sync timing state.
#[derive(Debug, Clone)]
pub struct BoundedRunner {
    min_interval: Duration,
    max_interval: Duration,
    burst: u32,
    tokens: f64,
    tokens_at: Instant,
    last_run: Instant,
    requested: bool,
    retry_at: Option<Instant>,
}

impl BoundedRunner {
    /// A runner created at `now`, with a full token bucket; the first periodic run is due
    /// `max_interval` after `now`.
    pub fn new(min_interval: Duration, max_interval: Duration, burst: u32, now: Instant) -> Self {
        let burst = burst.max(1);
        BoundedRunner {
            min_interval,
            max_interval,
            burst,
            tokens: f64::from(burst),
            tokens_at: now,
            last_run: now,
            requested: false,
            retry_at: None,
        }
    }

    /// Asks for a run as soon as the rate limit allows.
    pub fn request(&mut self) {
        self.requested = true;
    }

    /// Whether a requested run has not happened yet.
    pub fn is_pending(&self) -> bool {
        self.requested
    }

    /// Asks for a run no later than `delay` from `now` (keeps an earlier retry).
    pub fn retry_after(&mut self, now: Instant, delay: Duration) {
        let at = now + delay;
        self.retry_at = Some(self.retry_at.map_or(at, |old| old.min(at)));
    }

    /// When a run is next due, ignoring the rate limit.
    fn due_at(&self) -> Instant {
        let periodic = self.last_run + self.max_interval;
        let mut due = periodic;
        if let Some(retry) = self.retry_at {
            due = due.min(retry);
        }
        if self.requested {
            due = due.min(self.tokens_at);
        }
        due
    }

    fn refill(&mut self, now: Instant) {
        if now <= self.tokens_at {
            return;
        }
        let cap = f64::from(self.burst);
        let gained = if self.min_interval.is_zero() {
            cap
        } else {
            now.duration_since(self.tokens_at).as_secs_f64() / self.min_interval.as_secs_f64()
        };
        self.tokens = (self.tokens + gained).min(cap);
        self.tokens_at = now;
    }

    /// Whether a run may start (with slack for the rounding of the refill sums).
    fn has_token(&self) -> bool {
        self.tokens >= 1.0 - TOKEN_SLACK
    }

    /// When a token is next available, from `now`.
    fn token_ready_at(&self, now: Instant) -> Instant {
        if self.has_token() || self.min_interval.is_zero() {
            return now;
        }
        let missing = 1.0 - self.tokens;
        self.tokens_at.max(now) + self.min_interval.mul_f64(missing)
    }

    /// When the caller should next call [`Self::try_run`].
    pub fn next_wake(&mut self, now: Instant) -> Instant {
        self.refill(now);
        self.due_at().max(self.token_ready_at(now))
    }

    /// Whether to run now. When it returns true the run is counted: the caller syncs.
    pub fn try_run(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.due_at() > now || !self.has_token() {
            return false;
        }
        self.tokens = (self.tokens - 1.0).max(0.0);
        self.last_run = now;
        self.requested = false;
        self.retry_at = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(30);

    struct FakeClock {
        start: Instant,
        now: Instant,
    }

    impl FakeClock {
        fn new() -> Self {
            let start = Instant::now();
            FakeClock { start, now: start }
        }
        fn advance(&mut self, by: Duration) -> Instant {
            self.now += by;
            self.now
        }
        fn at(&self, offset_ms: u64) -> Instant {
            self.start + Duration::from_millis(offset_ms)
        }
    }

    #[test]
    fn nothing_runs_before_the_periodic_deadline_without_requests() {
        let mut clock = FakeClock::new();
        let mut runner = BoundedRunner::new(MIN, MAX, 2, clock.now);
        assert!(!runner.try_run(clock.now));
        assert_eq!(runner.next_wake(clock.now), clock.at(30_000));
        assert!(!runner.try_run(clock.advance(Duration::from_millis(29_999))));
        assert!(runner.try_run(clock.advance(Duration::from_millis(1))));
        assert_eq!(runner.next_wake(clock.now), clock.at(60_000));
    }

    #[test]
    fn a_burst_of_two_then_one_per_min_interval() {
        let mut clock = FakeClock::new();
        let mut runner = BoundedRunner::new(MIN, MAX, 2, clock.now);
        runner.request();
        assert!(runner.try_run(clock.now), "first request runs at once");
        runner.request();
        assert!(runner.try_run(clock.now), "second one too (burst 2)");
        runner.request();
        assert!(!runner.try_run(clock.now), "third is rate limited");
        assert_eq!(runner.next_wake(clock.now), clock.at(1_000));
        runner.request();
        assert!(!runner.try_run(clock.advance(Duration::from_millis(500))));
        assert_eq!(runner.next_wake(clock.now), clock.at(1_000));
        assert!(runner.try_run(clock.advance(Duration::from_millis(500))));
        assert!(!runner.is_pending(), "coalesced into one run");
    }

    #[test]
    fn requests_during_the_limit_coalesce_into_one_run() {
        let mut clock = FakeClock::new();
        let mut runner = BoundedRunner::new(MIN, MAX, 1, clock.now);
        runner.request();
        assert!(runner.try_run(clock.now));
        let mut runs = 0;
        for _ in 0..150 {
            runner.request();
            if runner.try_run(clock.advance(Duration::from_millis(10))) {
                runs += 1;
            }
        }
        assert_eq!(runs, 1, "one run per min interval in 1.5 s of requests");
    }

    #[test]
    fn retry_after_a_failure_is_honoured_and_rate_limited() {
        let mut clock = FakeClock::new();
        let mut runner = BoundedRunner::new(MIN, MAX, 1, clock.now);
        runner.request();
        assert!(runner.try_run(clock.now));
        runner.retry_after(clock.now, Duration::from_millis(300));
        assert_eq!(
            runner.next_wake(clock.now),
            clock.at(1_000),
            "the token comes later than the retry"
        );
        assert!(!runner.try_run(clock.advance(Duration::from_millis(300))));
        assert!(runner.try_run(clock.advance(Duration::from_millis(700))));
        runner.retry_after(clock.now, Duration::from_secs(5));
        runner.retry_after(clock.now, Duration::from_secs(10));
        assert_eq!(runner.next_wake(clock.now), clock.at(6_000));
    }

    #[test]
    fn zero_min_interval_never_limits() {
        let mut clock = FakeClock::new();
        let mut runner = BoundedRunner::new(Duration::ZERO, MAX, 1, clock.now);
        for _ in 0..5 {
            runner.request();
            assert!(runner.try_run(clock.advance(Duration::from_nanos(1))));
        }
    }
}
