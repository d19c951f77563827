//! The proxier health server: `/healthz` and `/livez` as kube-proxy serves them.
//!
//! A family is unhealthy when a change has been queued for longer than the health timeout
//! (twice the sync period) without a successful sync. Before the first change the agent
//! is healthy (starting up). `/healthz` is also 503 while the Node is being deleted or
//! carries the cluster autoscaler's `ToBeDeletedByClusterAutoscaler` taint
//! (`nodeEligible: false`), so load balancers drain the node; `/livez` ignores that.
//! Times are written as Go writes them (`2026-12-02 10:00:00.5 +0000 UTC`), in UTC.

use crate::http::Reply;
use crate::metrics::Metrics;
use hyper::Method;
use kproxy_model::slim::SlimNode;
use kproxy_model::IpFamily;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The taint the cluster autoscaler puts on a node it is about to delete.
pub const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

/// The health verdict at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthStatus {
    /// Whether every family is within its deadline.
    pub healthy: bool,
    /// The last successful update (of the late family when unhealthy).
    pub last_updated: Option<SystemTime>,
    /// The time of the verdict.
    pub current_time: SystemTime,
}

#[derive(Debug, Default)]
struct HealthState {
    last_updated: BTreeMap<IpFamily, SystemTime>,
    oldest_queued: BTreeMap<IpFamily, SystemTime>,
    node_eligible: bool,
}

/// Sync health shared by the sync loop (writer) and the HTTP handlers (readers).
#[derive(Debug)]
pub struct ProxierHealth {
    timeout: Duration,
    state: Mutex<HealthState>,
}

impl ProxierHealth {
    /// Health with this timeout (kube-proxy: twice the sync period).
    pub fn new(timeout: Duration) -> Self {
        ProxierHealth {
            timeout,
            state: Mutex::new(HealthState {
                node_eligible: true,
                ..HealthState::default()
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HealthState) -> R) -> R {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut state)
    }

    /// A change for `family` was queued at `now` (the first unprocessed one counts).
    pub fn queued(&self, family: IpFamily, now: SystemTime) {
        self.with(|s| {
            s.oldest_queued.entry(family).or_insert(now);
        });
    }

    /// `family` synced successfully at `now`.
    pub fn updated(&self, family: IpFamily, now: SystemTime) {
        self.with(|s| {
            s.last_updated.insert(family, now);
            s.oldest_queued.remove(&family);
        });
    }

    /// Sets whether the node may receive load-balancer traffic.
    pub fn set_node_eligible(&self, eligible: bool) {
        self.with(|s| s.node_eligible = eligible);
    }

    /// Whether the node may receive load-balancer traffic.
    pub fn node_eligible(&self) -> bool {
        self.with(|s| s.node_eligible)
    }

    /// The verdict at `now`.
    pub fn status(&self, now: SystemTime) -> HealthStatus {
        self.with(|s| {
            let mut last_updated = s.last_updated.values().max().copied();
            let mut healthy = true;
            for (family, queued) in &s.oldest_queued {
                if now.duration_since(*queued).unwrap_or_default() >= self.timeout {
                    healthy = false;
                    last_updated = s.last_updated.get(family).copied();
                    break;
                }
            }
            HealthStatus {
                healthy,
                last_updated,
                current_time: now,
            }
        })
    }
}

/// Whether a Node may receive load-balancer traffic: not being deleted, not tainted for
/// deletion by the cluster autoscaler.
pub fn node_eligible(node: &SlimNode) -> bool {
    let tainted = node
        .spec
        .taint_keys
        .iter()
        .any(|k| k == TO_BE_DELETED_TAINT);
    !node.metadata.deleting && !tainted
}

/// Formats a time as Go's `time.Time.String()` does, in UTC.
pub fn go_time(time: Option<SystemTime>) -> String {
    let Some(time) = time else {
        return "0001-01-01 00:00:00 +0000 UTC".into();
    };
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    let base = jiff::Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default();
    let nanos = since.subsec_nanos();
    if nanos == 0 {
        format!("{base} +0000 UTC")
    } else {
        let fraction = format!("{nanos:09}");
        format!("{base}.{} +0000 UTC", fraction.trim_end_matches('0'))
    }
}

/// The `/healthz` and `/livez` handler.
pub fn health_handler(health: Arc<ProxierHealth>, metrics: Arc<Metrics>) -> crate::http::Handler {
    Arc::new(move |method: &Method, path: &str| {
        let livez = match path {
            "/healthz" => false,
            "/livez" => true,
            _ => return Reply::not_found(),
        };
        if method != Method::GET {
            return Reply::method_not_allowed();
        }
        let reply = health_reply(&health, livez, SystemTime::now());
        let slot = usize::from(reply.status != 200);
        metrics.update(|v| {
            if livez {
                v.livez[slot] += 1;
            } else {
                v.healthz[slot] += 1;
            }
        });
        reply
    })
}

/// The body and status kube-proxy answers on `/healthz` (or `/livez`) at `now`.
pub fn health_reply(health: &ProxierHealth, livez: bool, now: SystemTime) -> Reply {
    let status = health.status(now);
    let eligible = health.node_eligible();
    let healthy = status.healthy && (livez || eligible);
    let last_updated = if healthy {
        Some(status.current_time)
    } else {
        status.last_updated
    };
    let body = if livez {
        format!(
            "{{\"lastUpdated\": {:?},\"currentTime\": {:?}}}",
            go_time(last_updated),
            go_time(Some(status.current_time))
        )
    } else {
        format!(
            "{{\"lastUpdated\": {:?},\"currentTime\": {:?}, \"nodeEligible\": {eligible}}}",
            go_time(last_updated),
            go_time(Some(status.current_time))
        )
    };
    let mut reply = Reply::new(if healthy { 200 } else { 503 }, "application/json", body);
    reply
        .headers
        .push(("X-Content-Type-Options", "nosniff".into()));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_796_205_600 + seconds)
    }

    #[test]
    fn formats_times_like_go() {
        assert_eq!(go_time(Some(at(0))), "2026-12-02 10:00:00 +0000 UTC");
        assert_eq!(
            go_time(Some(at(0) + Duration::from_millis(500))),
            "2026-12-02 10:00:00.5 +0000 UTC"
        );
        assert_eq!(go_time(None), "0001-01-01 00:00:00 +0000 UTC");
    }

    #[test]
    fn healthy_until_a_queued_change_is_overdue() {
        let health = ProxierHealth::new(Duration::from_secs(60));
        assert!(health.status(at(0)).healthy, "healthy while starting");
        health.queued(IpFamily::V4, at(0));
        health.queued(IpFamily::V4, at(50));
        assert!(health.status(at(59)).healthy);
        let late = health.status(at(60));
        assert!(!late.healthy, "the oldest queued change counts");
        assert_eq!(late.last_updated, None);
        health.updated(IpFamily::V4, at(61));
        assert!(health.status(at(200)).healthy, "no pending change");
        health.queued(IpFamily::V6, at(200));
        let late = health.status(at(260));
        assert!(!late.healthy, "one late family is enough");
    }

    #[test]
    fn healthz_reports_node_eligibility_and_livez_ignores_it() {
        let health = ProxierHealth::new(Duration::from_secs(60));
        let ok = health_reply(&health, false, at(0));
        assert_eq!(ok.status, 200);
        assert_eq!(
            ok.body,
            r#"{"lastUpdated": "2026-12-02 10:00:00 +0000 UTC","currentTime": "2026-12-02 10:00:00 +0000 UTC", "nodeEligible": true}"#
        );
        health.set_node_eligible(false);
        let draining = health_reply(&health, false, at(0));
        assert_eq!(draining.status, 503);
        assert!(draining.body.ends_with(r#""nodeEligible": false}"#));
        let live = health_reply(&health, true, at(0));
        assert_eq!(live.status, 200);
        assert_eq!(
            live.body,
            r#"{"lastUpdated": "2026-12-02 10:00:00 +0000 UTC","currentTime": "2026-12-02 10:00:00 +0000 UTC"}"#
        );
    }

    #[test]
    fn nodes_being_deleted_or_tainted_are_not_eligible() {
        let node: SlimNode = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "node-0"},
            "spec": {"taints": [{"key": TO_BE_DELETED_TAINT, "effect": "NoSchedule"}]}
        }))
        .expect("node");
        assert!(!node_eligible(&node));
        let plain: SlimNode =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "n"}})).expect("node");
        assert!(node_eligible(&plain));
    }
}
