//! kube-proxy's Prometheus metrics, same names, help texts and buckets, in the text
//! exposition format. With both families, rule counts and no-local-endpoint gauges are the
//! sums over the families (kube-proxy's two proxiers overwrite each other's value).
//!
//! Each mode publishes what kube-proxy's proxier of that mode publishes: the iptables
//! rule counts and restore failures in iptables mode, the nftables sync and cleanup
//! failures in nftables mode, the iptables restore failures in ipvs mode.

use crate::mode::FamilySync;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// A cumulative histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// A histogram with these upper bounds (ascending).
    pub fn new(bounds: Vec<f64>) -> Self {
        let counts = vec![0; bounds.len()];
        Histogram {
            bounds,
            counts,
            sum: 0.0,
            count: 0,
        }
    }

    /// Records one value.
    pub fn observe(&mut self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn render(&self, out: &mut String, name: &str) {
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// kube-proxy's sync latency buckets: 1 ms doubling 15 times.
pub fn sync_buckets() -> Vec<f64> {
    (0..15).map(|i| 0.001 * f64::from(1u32 << i)).collect()
}

/// kube-proxy's network programming latency buckets (0.25 s to 5 min).
pub fn network_programming_buckets() -> Vec<f64> {
    let mut bounds = vec![0.25, 0.5];
    bounds.extend((1..=59).map(f64::from));
    bounds.extend((0..12).map(|i| f64::from(60 + 5 * i)));
    bounds.extend((0..7).map(|i| f64::from(120 + 30 * i)));
    bounds
}

/// Which mode's metric families are published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MetricsMode {
    /// iptables: rule counts, restore and partial restore failures.
    #[default]
    Iptables,
    /// nftables: sync and stale-chain cleanup failures.
    Nftables,
    /// ipvs: restore failures of its iptables rules.
    Ipvs,
}

/// All metric values.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValues {
    /// `kubeproxy_sync_proxy_rules_duration_seconds`.
    pub sync_duration: Histogram,
    /// `kubeproxy_sync_full_proxy_rules_duration_seconds`.
    pub full_sync_duration: Histogram,
    /// `kubeproxy_sync_partial_proxy_rules_duration_seconds`.
    pub partial_sync_duration: Histogram,
    /// `kubeproxy_network_programming_duration_seconds`.
    pub network_programming: Histogram,
    /// `kubeproxy_sync_proxy_rules_last_timestamp_seconds`.
    pub last_sync_timestamp: f64,
    /// `kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds`.
    pub last_queued_timestamp: f64,
    /// `kubeproxy_sync_proxy_rules_iptables_total{table="nat"}`.
    pub nat_rules_total: usize,
    /// `kubeproxy_sync_proxy_rules_iptables_total{table="filter"}`.
    pub filter_rules_total: usize,
    /// `kubeproxy_sync_proxy_rules_iptables_last{table="nat"}`.
    pub nat_rules_last: usize,
    /// `kubeproxy_sync_proxy_rules_iptables_last{table="filter"}`.
    pub filter_rules_last: usize,
    /// `kubeproxy_sync_proxy_rules_iptables_restore_failures_total`.
    pub restore_failures: u64,
    /// `kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total`.
    pub partial_restore_failures: u64,
    /// `kubeproxy_sync_proxy_rules_nftables_sync_failures_total`.
    pub nftables_sync_failures: u64,
    /// `kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total`.
    pub nftables_cleanup_failures: u64,
    /// `kubeproxy_sync_proxy_rules_endpoint_changes_total`.
    pub endpoint_changes_total: u64,
    /// `kubeproxy_sync_proxy_rules_endpoint_changes_pending`.
    pub endpoint_changes_pending: u64,
    /// `kubeproxy_sync_proxy_rules_service_changes_total`.
    pub service_changes_total: u64,
    /// `kubeproxy_sync_proxy_rules_service_changes_pending`.
    pub service_changes_pending: u64,
    /// `kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy="internal"}`.
    pub no_local_internal: usize,
    /// `kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy="external"}`.
    pub no_local_external: usize,
    /// `kubeproxy_proxy_healthz_total{code="200"}` and `{code="503"}`.
    pub healthz: [u64; 2],
    /// `kubeproxy_proxy_livez_total{code="200"}` and `{code="503"}`.
    pub livez: [u64; 2],
}

impl Default for MetricValues {
    fn default() -> Self {
        MetricValues {
            sync_duration: Histogram::new(sync_buckets()),
            full_sync_duration: Histogram::new(sync_buckets()),
            partial_sync_duration: Histogram::new(sync_buckets()),
            network_programming: Histogram::new(network_programming_buckets()),
            last_sync_timestamp: 0.0,
            last_queued_timestamp: 0.0,
            nat_rules_total: 0,
            filter_rules_total: 0,
            nat_rules_last: 0,
            filter_rules_last: 0,
            restore_failures: 0,
            partial_restore_failures: 0,
            nftables_sync_failures: 0,
            nftables_cleanup_failures: 0,
            endpoint_changes_total: 0,
            endpoint_changes_pending: 0,
            service_changes_total: 0,
            service_changes_pending: 0,
            no_local_internal: 0,
            no_local_external: 0,
            healthz: [0; 2],
            livez: [0; 2],
        }
    }
}

/// The agent's metrics, shared between the sync loop and the HTTP servers.
#[derive(Debug, Default)]
pub struct Metrics {
    mode: MetricsMode,
    values: Mutex<MetricValues>,
}

impl Metrics {
    /// Fresh metrics of the iptables mode.
    pub fn new() -> Self {
        Metrics::default()
    }

    /// Fresh metrics publishing `mode`'s families.
    pub fn for_mode(mode: MetricsMode) -> Self {
        Metrics {
            mode,
            values: Mutex::default(),
        }
    }

    /// Runs `f` on the values.
    pub fn update<R>(&self, f: impl FnOnce(&mut MetricValues) -> R) -> R {
        let mut values = self
            .values
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut values)
    }

    /// A copy of the values.
    pub fn values(&self) -> MetricValues {
        self.update(|v| v.clone())
    }

    /// Records a sync over all families that took `elapsed`, finishing at `unix_now`.
    pub fn record_sync(&self, reports: &[FamilySync], elapsed: Duration, unix_now: f64) {
        self.update(|v| {
            let seconds = elapsed.as_secs_f64();
            v.sync_duration.observe(seconds);
            if reports.iter().any(|r| r.full) {
                v.full_sync_duration.observe(seconds);
            } else {
                v.partial_sync_duration.observe(seconds);
            }
            for report in reports.iter().filter(|r| !r.ok) {
                v.restore_failures += 1;
                v.nftables_sync_failures += 1;
                if report.partial_failed {
                    v.partial_restore_failures += 1;
                }
            }
            v.nftables_cleanup_failures +=
                reports.iter().filter(|r| r.cleanup_failed).count() as u64;
            if reports.iter().all(|r| r.ok) {
                v.last_sync_timestamp = unix_now;
                v.nat_rules_total = reports.iter().map(|r| r.nat.total).sum();
                v.filter_rules_total = reports.iter().map(|r| r.filter.total).sum();
                v.nat_rules_last = reports.iter().map(|r| r.nat.written).sum();
                v.filter_rules_last = reports.iter().map(|r| r.filter.written).sum();
                v.no_local_internal = reports.iter().map(|r| r.no_local_internal).sum();
                v.no_local_external = reports.iter().map(|r| r.no_local_external).sum();
            }
            v.service_changes_pending = 0;
            v.endpoint_changes_pending = 0;
        });
    }

    /// Renders the Prometheus text format.
    pub fn render(&self) -> String {
        let v = self.values();
        let mut out = String::with_capacity(8192);
        let histograms = [
            (
                "kubeproxy_sync_proxy_rules_duration_seconds",
                "SyncProxyRules latency in seconds",
                &v.sync_duration,
            ),
            (
                "kubeproxy_sync_full_proxy_rules_duration_seconds",
                "SyncProxyRules latency in seconds for full resyncs",
                &v.full_sync_duration,
            ),
            (
                "kubeproxy_sync_partial_proxy_rules_duration_seconds",
                "SyncProxyRules latency in seconds for partial resyncs",
                &v.partial_sync_duration,
            ),
            (
                "kubeproxy_network_programming_duration_seconds",
                "In Cluster Network Programming Latency in seconds",
                &v.network_programming,
            ),
        ];
        for (name, help, histogram) in histograms {
            header(&mut out, name, help, "histogram");
            histogram.render(&mut out, name);
        }
        let gauges = [
            (
                "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                "The last time proxy rules were successfully synced",
                v.last_sync_timestamp,
            ),
            (
                "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
                "The last time a sync of proxy rules was queued",
                v.last_queued_timestamp,
            ),
            (
                "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
                "Pending proxy rules Endpoint changes",
                v.endpoint_changes_pending as f64,
            ),
            (
                "kubeproxy_sync_proxy_rules_service_changes_pending",
                "Pending proxy rules Service changes",
                v.service_changes_pending as f64,
            ),
        ];
        for (name, help, value) in gauges {
            header(&mut out, name, help, "gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        let counters = [
            (
                "kubeproxy_sync_proxy_rules_endpoint_changes_total",
                "Cumulative proxy rules Endpoint changes",
                v.endpoint_changes_total,
            ),
            (
                "kubeproxy_sync_proxy_rules_service_changes_total",
                "Cumulative proxy rules Service changes",
                v.service_changes_total,
            ),
        ];
        for (name, help, value) in counters.into_iter().chain(self.failure_counters(&v)) {
            header(&mut out, name, help, "counter");
            let _ = writeln!(out, "{name} {value}");
        }
        if self.mode == MetricsMode::Iptables {
            rule_counts(&mut out, &v);
        }
        labelled(
            &mut out,
            (
                "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
                "gauge",
            ),
            "Number of services with a Local traffic policy and no endpoints",
            "traffic_policy",
            &[
                ("external", v.no_local_external),
                ("internal", v.no_local_internal),
            ],
        );
        let codes = |counts: [u64; 2]| [("200", counts[0] as usize), ("503", counts[1] as usize)];
        labelled(
            &mut out,
            ("kubeproxy_proxy_healthz_total", "counter"),
            "Cumulative proxy healthz HTTP status",
            "code",
            &codes(v.healthz),
        );
        labelled(
            &mut out,
            ("kubeproxy_proxy_livez_total", "counter"),
            "Cumulative proxy livez HTTP status",
            "code",
            &codes(v.livez),
        );
        out
    }
}

impl Metrics {
    /// The mode's failure counters: name, help, value.
    fn failure_counters(&self, v: &MetricValues) -> Vec<(&'static str, &'static str, u64)> {
        let restore = (
            "kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
            "Cumulative proxy iptables restore failures",
            v.restore_failures,
        );
        match self.mode {
            MetricsMode::Iptables => vec![
                restore,
                (
                    "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total",
                    "Cumulative proxy iptables partial restore failures",
                    v.partial_restore_failures,
                ),
            ],
            MetricsMode::Nftables => vec![
                (
                    "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
                    "Cumulative proxy nftables sync failures",
                    v.nftables_sync_failures,
                ),
                (
                    "kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total",
                    "Cumulative proxy nftables cleanup failures",
                    v.nftables_cleanup_failures,
                ),
            ],
            MetricsMode::Ipvs => vec![restore],
        }
    }
}

/// The iptables rule-count gauges (iptables mode only).
fn rule_counts(out: &mut String, v: &MetricValues) {
    labelled(
        out,
        ("kubeproxy_sync_proxy_rules_iptables_total", "gauge"),
        "Total number of iptables rules owned by kube-proxy",
        "table",
        &[("filter", v.filter_rules_total), ("nat", v.nat_rules_total)],
    );
    labelled(
        out,
        ("kubeproxy_sync_proxy_rules_iptables_last", "gauge"),
        "Number of iptables rules written by kube-proxy in last sync",
        "table",
        &[("filter", v.filter_rules_last), ("nat", v.nat_rules_last)],
    );
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} [ALPHA] {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn labelled(
    out: &mut String,
    (name, kind): (&str, &str),
    help: &str,
    label: &str,
    values: &[(&str, usize)],
) {
    header(out, name, help, kind);
    for (value, count) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::TableRules;

    #[test]
    fn buckets_are_kube_proxys() {
        let sync = sync_buckets();
        assert_eq!(sync.first(), Some(&0.001));
        assert_eq!(sync.last(), Some(&16.384));
        let programming = network_programming_buckets();
        assert_eq!(programming.len(), 2 + 59 + 12 + 7);
        assert_eq!(programming[..3], [0.25, 0.5, 1.0]);
        assert_eq!(programming.last(), Some(&300.0));
    }

    #[test]
    fn renders_a_sync_in_text_format() {
        let metrics = Metrics::new();
        let report = FamilySync {
            ok: true,
            full: true,
            nat: TableRules {
                total: 40,
                written: 40,
            },
            filter: TableRules {
                total: 7,
                written: 7,
            },
            no_local_external: 1,
            ..FamilySync::default()
        };
        metrics.record_sync(&[report], Duration::from_millis(3), 1_700_000_000.5);
        let failed = FamilySync {
            partial_failed: true,
            ..FamilySync::default()
        };
        metrics.record_sync(&[failed], Duration::from_millis(1), 1_700_000_001.0);
        let text = metrics.render();
        for line in [
            "# HELP kubeproxy_sync_proxy_rules_duration_seconds [ALPHA] SyncProxyRules latency in seconds",
            "# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram",
            "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.002\"} 1",
            "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.004\"} 2",
            "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"+Inf\"} 2",
            "kubeproxy_sync_proxy_rules_duration_seconds_count 2",
            "kubeproxy_sync_full_proxy_rules_duration_seconds_count 1",
            "kubeproxy_sync_partial_proxy_rules_duration_seconds_count 1",
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds 1700000000.5",
            "kubeproxy_sync_proxy_rules_iptables_total{table=\"nat\"} 40",
            "kubeproxy_sync_proxy_rules_iptables_last{table=\"filter\"} 7",
            "kubeproxy_sync_proxy_rules_iptables_restore_failures_total 1",
            "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total 1",
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy=\"external\"} 1",
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy=\"internal\"} 0",
            "# TYPE kubeproxy_network_programming_duration_seconds histogram",
            "kubeproxy_proxy_healthz_total{code=\"503\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn nftables_mode_publishes_its_own_failure_counters_and_no_rule_counts() {
        let metrics = Metrics::for_mode(MetricsMode::Nftables);
        let failed = FamilySync {
            cleanup_failed: true,
            ..FamilySync::default()
        };
        let ok = FamilySync {
            ok: true,
            full: true,
            ..FamilySync::default()
        };
        metrics.record_sync(&[failed, ok], Duration::from_millis(2), 1_700_000_000.0);
        let text = metrics.render();
        for line in [
            "kubeproxy_sync_proxy_rules_nftables_sync_failures_total 1",
            "kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total 1",
            "kubeproxy_sync_full_proxy_rules_duration_seconds_count 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("iptables"), "{text}");
        let ipvs = Metrics::for_mode(MetricsMode::Ipvs).render();
        assert!(ipvs.contains("kubeproxy_sync_proxy_rules_iptables_restore_failures_total 0"));
        assert!(!ipvs.contains("nftables") && !ipvs.contains("iptables_total"));
    }
}
