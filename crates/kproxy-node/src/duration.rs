//! Durations in Go's syntax (`30s`, `1m0s`, `1h30m`, `500ms`, `1.5s`), as kube-proxy's
//! flags and config file write them.

use std::time::Duration;

/// A duration that is not in Go's syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?} (expected Go syntax such as 30s, 1m0s, 500ms)")]
pub struct DurationError(pub String);

/// Parses a Go duration. Negative durations are refused: no kube-proxy setting takes one.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let bad = || DurationError(text.to_string());
    let body = text.strip_prefix('+').unwrap_or(text);
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() || body.starts_with('-') {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = body;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        if number.is_empty() || number == "." {
            return Err(bad());
        }
        let value: f64 = number.parse().map_err(|_| bad())?;
        total += value * unit_seconds(unit).ok_or_else(bad)?;
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

fn unit_seconds(unit: &str) -> Option<f64> {
    Some(match unit {
        "ns" => 1e-9,
        "us" | "µs" | "μs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    })
}

/// Formats a duration the way Go's `time.Duration.String` does for whole milliseconds and
/// above (`1h0m0s`, `30s`, `1.5s`, `500ms`).
pub fn format_go_duration(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".into();
    }
    if duration < Duration::from_secs(1) {
        let ms = duration.as_secs_f64() * 1e3;
        return format!("{}ms", trim_float(ms));
    }
    let total = duration.as_secs();
    let (hours, minutes) = (total / 3600, (total % 3600) / 60);
    let seconds = (total % 60) as f64 + f64::from(duration.subsec_nanos()) / 1e9;
    let seconds = trim_float(seconds);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

fn trim_float(value: f64) -> String {
    let text = format!("{value:.9}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("30s", 30_000),
            ("1m0s", 60_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("1.5s", 1_500),
            ("0", 0),
            ("24h0m0s", 86_400_000),
            ("100us", 0),
        ];
        for (text, ms) in cases {
            let parsed = parse_go_duration(text).expect(text);
            assert_eq!(parsed.as_millis(), ms, "{text}");
        }
    }

    #[test]
    fn refuses_other_syntax() {
        for text in ["", "30", "s", "-1s", "1d", "1.2.3s", "abc", "1s5"] {
            assert!(parse_go_duration(text).is_err(), "{text} accepted");
        }
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_go_duration(Duration::from_secs(900)), "15m0s");
        assert_eq!(format_go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
    }
}
