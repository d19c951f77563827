//! Graceful termination of real servers: a removed TCP real server first gets
//! weight 0 (no new connections) and is deleted once its connections are gone
//! or a timeout has passed; UDP and SCTP real servers are deleted at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::ops::IpvsOp;
use crate::types::{Destination, Protocol, RealServer, RealServerKey, ServiceKey};

/// Real servers being drained, and when each drain started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Draining {
    started: BTreeMap<(ServiceKey, RealServerKey), Instant>,
}

impl Draining {
    /// Whether nothing is being drained (no need to sync again for drains).
    pub fn is_empty(&self) -> bool {
        self.started.is_empty()
    }

    /// How many real servers are being drained.
    pub fn len(&self) -> usize {
        self.started.len()
    }

    /// Whether this real server is being drained.
    pub fn contains(&self, service: &ServiceKey, server: &RealServerKey) -> bool {
        self.started.contains_key(&(*service, *server))
    }

    /// When the drain of this real server started.
    pub fn started(&self, service: &ServiceKey, server: &RealServerKey) -> Option<Instant> {
        self.started.get(&(*service, *server)).copied()
    }

    /// The earliest moment a drain times out, for scheduling the next sync.
    pub fn next_deadline(&self, timeout: Duration) -> Option<Instant> {
        self.started.values().min().map(|t| *t + timeout)
    }

    pub(crate) fn insert(&mut self, service: ServiceKey, server: RealServerKey, at: Instant) {
        self.started.insert((service, server), at);
    }
}

/// When graceful termination runs and how long it may take.
#[derive(Debug, Clone, Copy)]
pub struct DrainPolicy {
    /// The current time.
    pub now: Instant,
    /// How long a real server with connections is drained before it is deleted anyway.
    pub timeout: Duration,
}

/// What to do with a real server that is no longer wanted: the operations and,
/// if it stays to drain, since when.
pub(crate) fn retire(
    service: &ServiceKey,
    dest: &Destination,
    previous: &Draining,
    policy: DrainPolicy,
) -> (Option<IpvsOp>, Option<Instant>) {
    let key = dest.server.key;
    let delete = IpvsOp::DeleteDestination(*service, key);
    if service.protocol != Protocol::Tcp || dest.connections.is_idle() {
        return (Some(delete), None);
    }
    let started = previous.started(service, &key).unwrap_or(policy.now);
    if policy.now.saturating_duration_since(started) >= policy.timeout {
        return (Some(delete), None);
    }
    let quiesced = RealServer {
        weight: 0,
        ..dest.server
    };
    let quiesce =
        (dest.server.weight != 0).then_some(IpvsOp::UpdateDestination(*service, quiesced));
    (quiesce, Some(started))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ConnectionCounts;

    fn key(protocol: Protocol) -> ServiceKey {
        ServiceKey {
            addr: "10.96.0.1".parse().unwrap(),
            port: 80,
            protocol,
        }
    }

    fn dest(weight: u32, active: u32, inactive: u32) -> Destination {
        let mut server = RealServer::new("10.244.0.5".parse().unwrap(), 8080);
        server.weight = weight;
        Destination {
            server,
            connections: ConnectionCounts { active, inactive },
        }
    }

    fn policy(now: Instant) -> DrainPolicy {
        DrainPolicy {
            now,
            timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_busy_tcp_real_server_is_quiesced_then_kept() {
        let now = Instant::now();
        let svc = key(Protocol::Tcp);
        let (op, since) = retire(&svc, &dest(1, 2, 0), &Draining::default(), policy(now));
        let mut quiesced = dest(0, 2, 0).server;
        quiesced.weight = 0;
        assert_eq!(op, Some(IpvsOp::UpdateDestination(svc, quiesced)));
        assert_eq!(since, Some(now));
        let (op, _) = retire(&svc, &dest(0, 0, 1), &Draining::default(), policy(now));
        assert_eq!(op, None, "already at weight 0: nothing to send");
    }

    #[test]
    fn an_idle_tcp_real_server_is_deleted_at_once() {
        let svc = key(Protocol::Tcp);
        let (op, since) = retire(
            &svc,
            &dest(1, 0, 0),
            &Draining::default(),
            policy(Instant::now()),
        );
        assert!(matches!(op, Some(IpvsOp::DeleteDestination(..))));
        assert_eq!(since, None);
    }

    #[test]
    fn udp_and_sctp_real_servers_are_deleted_even_with_connections() {
        for proto in [Protocol::Udp, Protocol::Sctp] {
            let (op, since) = retire(
                &key(proto),
                &dest(1, 5, 5),
                &Draining::default(),
                policy(Instant::now()),
            );
            assert!(
                matches!(op, Some(IpvsOp::DeleteDestination(..))),
                "{proto:?}"
            );
            assert_eq!(since, None);
        }
    }

    #[test]
    fn a_drain_that_outlives_the_timeout_ends_in_a_delete() {
        let start = Instant::now();
        let svc = key(Protocol::Tcp);
        let d = dest(0, 3, 0);
        let mut draining = Draining::default();
        draining.insert(svc, d.server.key, start);
        let (op, since) = retire(&svc, &d, &draining, policy(start + Duration::from_secs(59)));
        assert_eq!((op, since), (None, Some(start)));
        let (op, since) = retire(&svc, &d, &draining, policy(start + Duration::from_secs(60)));
        assert!(matches!(op, Some(IpvsOp::DeleteDestination(..))));
        assert_eq!(since, None);
        assert_eq!(
            draining.next_deadline(Duration::from_secs(60)),
            Some(start + Duration::from_secs(60))
        );
    }
}
