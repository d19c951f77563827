//! The machine's state beside every figure: the load average (`/proc/loadavg`) and the
//! date (UTC).

use serde::Serialize;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// The 1, 5 and 15 minute load averages.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LoadAverage {
    /// Last minute.
    pub one: f64,
    /// Last five minutes.
    pub five: f64,
    /// Last fifteen minutes.
    pub fifteen: f64,
}

impl LoadAverage {
    /// Reads `/proc/loadavg`; `None` where it cannot be read.
    pub fn read() -> Option<LoadAverage> {
        LoadAverage::parse(&std::fs::read_to_string("/proc/loadavg").ok()?)
    }

    /// Parses `/proc/loadavg` text.
    pub fn parse(text: &str) -> Option<LoadAverage> {
        let mut fields = text.split_whitespace().map(str::parse::<f64>);
        Some(LoadAverage {
            one: fields.next()?.ok()?,
            five: fields.next()?.ok()?,
            fifteen: fields.next()?.ok()?,
        })
    }
}

impl fmt::Display for LoadAverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2} {:.2} {:.2}", self.one, self.five, self.fifteen)
    }
}

/// Now as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_date(seconds)
}

/// Unix seconds as `YYYY-MM-DD HH:MM UTC` (civil-from-days, proleptic Gregorian).
pub fn utc_date(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let minutes = (unix_seconds % 86_400) / 60;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        minutes / 60,
        minutes % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_three_averages() {
        let load = LoadAverage::parse("5.20 6.00 6.01 3/812 4242\n");
        assert_eq!(
            load,
            Some(LoadAverage {
                one: 5.2,
                five: 6.0,
                fifteen: 6.01
            })
        );
        assert_eq!(LoadAverage::parse("garbage"), None);
    }

    #[test]
    fn formats_utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(1_796_176_800), "2026-12-02 02:00 UTC");
        assert_eq!(utc_date(951_782_400), "2000-02-29 00:00 UTC");
    }
}
