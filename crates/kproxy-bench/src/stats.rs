//! Summaries of a series of timed connections (pure): connect-latency percentiles and the
//! rate of sequential connections.

use serde::Serialize;
use std::time::Duration;

/// One timed connection that got its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// From `connect()` to the established connection (the SYN's round trip, which is
    /// where the first packet crosses the node's rules).
    pub connect: Duration,
    /// From `connect()` through request, response and close.
    pub total: Duration,
}

/// What a series of connections to one target came to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Connections that got their answer.
    pub ok: usize,
    /// Connections that failed (refused, timed out, wrong answer).
    pub failed: usize,
    /// Median connect latency, microseconds.
    pub connect_p50_us: f64,
    /// 99th percentile connect latency, microseconds.
    pub connect_p99_us: f64,
    /// Median time of a whole connection, microseconds.
    pub total_p50_us: f64,
    /// Sequential connections per second: answered connections over the time they took.
    pub connections_per_s: f64,
}

impl Summary {
    /// Summarises `samples` and a count of failures.
    pub fn of(samples: &[Sample], failed: usize) -> Summary {
        let mut connect: Vec<Duration> = samples.iter().map(|s| s.connect).collect();
        let mut total: Vec<Duration> = samples.iter().map(|s| s.total).collect();
        connect.sort_unstable();
        total.sort_unstable();
        let busy: Duration = total.iter().sum();
        let rate = if busy.is_zero() {
            0.0
        } else {
            samples.len() as f64 / busy.as_secs_f64()
        };
        Summary {
            ok: samples.len(),
            failed,
            connect_p50_us: micros(percentile(&connect, 50)),
            connect_p99_us: micros(percentile(&connect, 99)),
            total_p50_us: micros(percentile(&total, 50)),
            connections_per_s: rate,
        }
    }
}

/// The nearest-rank `p`th percentile of sorted values; zero for none.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<Duration> = (1..=100).map(us).collect();
        assert_eq!(percentile(&values, 50), us(50));
        assert_eq!(percentile(&values, 99), us(99));
        assert_eq!(percentile(&[us(7)], 99), us(7));
        assert_eq!(percentile(&[], 50), Duration::ZERO);
    }

    #[test]
    fn rate_is_answered_connections_over_their_time() {
        let samples = vec![
            Sample {
                connect: us(100),
                total: us(500),
            };
            4
        ];
        let summary = Summary::of(&samples, 1);
        assert_eq!((summary.ok, summary.failed), (4, 1));
        assert!((summary.connections_per_s - 2000.0).abs() < 1e-6);
        assert!((summary.connect_p50_us - 100.0).abs() < 1e-6);
    }
}
