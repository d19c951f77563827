//! The agent's `/metrics`, read over plain HTTP, and the few values the harness times by.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

/// `kubeproxy_sync_proxy_rules_last_timestamp_seconds`: wall clock at the end of the
/// last successful sync (after the restore returned).
pub const LAST_SYNC: &str = "kubeproxy_sync_proxy_rules_last_timestamp_seconds";

/// One scrape of `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    body: String,
}

impl Scrape {
    /// Fetches `/metrics`; `None` while the agent is not serving yet.
    pub fn fetch(addr: SocketAddr) -> Option<Scrape> {
        let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).ok()?;
        stream.set_read_timeout(Some(HTTP_TIMEOUT)).ok()?;
        stream.set_write_timeout(Some(HTTP_TIMEOUT)).ok()?;
        let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?;
        (status == "200").then(|| Scrape::from_text(body))
    }

    /// A scrape from exposition text.
    pub fn from_text(body: &str) -> Scrape {
        Scrape {
            body: body.to_string(),
        }
    }

    /// The value of a series given with its labels exactly as exposed.
    fn value(&self, series: &str) -> Option<f64> {
        self.body.lines().find_map(|line| {
            let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
            rest.split_whitespace().next()?.parse().ok()
        })
    }

    /// The last successful sync's wall clock (Unix seconds), 0 before the first.
    pub fn last_sync(&self) -> f64 {
        self.value(LAST_SYNC).unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_series_with_and_without_labels() {
        let scrape = Scrape::from_text(
            "# HELP x\n\
             kubeproxy_sync_proxy_rules_last_timestamp_seconds 1700000000.5\n\
             kubeproxy_sync_proxy_rules_iptables_total{table=\"filter\"} 4\n\
             kubeproxy_sync_proxy_rules_iptables_total{table=\"nat\"} 312\n",
        );
        assert_eq!(scrape.last_sync(), 1_700_000_000.5);
        let nat = "kubeproxy_sync_proxy_rules_iptables_total{table=\"nat\"}";
        assert_eq!(scrape.value(nat), Some(312.0));
        assert_eq!(
            scrape.value("kubeproxy_sync_full_proxy_rules_duration_seconds_count"),
            None
        );
    }
}
