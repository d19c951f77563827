//! [`FakeIpvs`]: an in-memory IPVS table that answers like the kernel, for
//! testing planners without root.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::handle::IpvsHandle;
use crate::ops::{Failure, IpvsOp};
use crate::types::{
    ConnectionCounts, Destination, RealServerKey, Scheduler, ServiceKey, Timeouts, VirtualServer,
};

/// Scheduler modules the fake kernel has.
const KNOWN_SCHEDULERS: &[&str] = &["rr", "wrr", "lc", "wlc", "sh", "mh", "sed", "nq", "dh"];

/// An IPVS table in memory with the kernel's answers: EEXIST for duplicates,
/// ESRCH for a missing service, ENOENT for a missing destination or scheduler.
#[derive(Debug, Clone, Default)]
pub struct FakeIpvs {
    services: BTreeMap<ServiceKey, FakeService>,
    /// Every operation applied successfully, in order.
    pub applied: Vec<IpvsOp>,
    /// The timeouts in force (the kernel's defaults to start with).
    pub timeouts: Timeouts,
}

#[derive(Debug, Clone)]
struct FakeService {
    service: VirtualServer,
    destinations: BTreeMap<RealServerKey, Destination>,
}

fn refuse(op: &IpvsOp, errno: i32) -> Error {
    Error::Kernel {
        request: op.to_string(),
        errno,
    }
}

impl FakeIpvs {
    /// An empty table with the kernel's default timeouts.
    pub fn new() -> FakeIpvs {
        FakeIpvs {
            timeouts: Timeouts {
                tcp_secs: 900,
                tcp_fin_secs: 120,
                udp_secs: 300,
            },
            ..FakeIpvs::default()
        }
    }

    /// Sets the connection counts the kernel would report for a real server.
    /// Returns whether the real server exists.
    pub fn set_connections(
        &mut self,
        service: &ServiceKey,
        server: &RealServerKey,
        counts: ConnectionCounts,
    ) -> bool {
        let dest = self
            .services
            .get_mut(service)
            .and_then(|s| s.destinations.get_mut(server));
        match dest {
            Some(d) => {
                d.connections = counts;
                true
            }
            None => false,
        }
    }

    fn service_mut(&mut self, op: &IpvsOp, key: &ServiceKey) -> Result<&mut FakeService> {
        self.services
            .get_mut(key)
            .ok_or_else(|| refuse(op, libc::ESRCH))
    }

    fn apply_op(&mut self, op: &IpvsOp) -> Result<()> {
        match op {
            IpvsOp::AddService(vs) | IpvsOp::UpdateService(vs) => {
                if let Scheduler::Other(name) = &vs.scheduler {
                    if !KNOWN_SCHEDULERS.contains(&name.as_str()) {
                        return Err(refuse(op, libc::ENOENT));
                    }
                }
                let exists = self.services.contains_key(&vs.key);
                match (op, exists) {
                    (IpvsOp::AddService(_), true) => return Err(refuse(op, libc::EEXIST)),
                    (IpvsOp::UpdateService(_), false) => return Err(refuse(op, libc::ESRCH)),
                    _ => {}
                }
                let entry = self.services.entry(vs.key).or_insert_with(|| FakeService {
                    service: vs.clone(),
                    destinations: BTreeMap::new(),
                });
                entry.service = vs.clone();
            }
            IpvsOp::DeleteService(key) => {
                self.services
                    .remove(key)
                    .ok_or_else(|| refuse(op, libc::ESRCH))?;
            }
            IpvsOp::AddDestination(key, rs) => {
                let svc = self.service_mut(op, key)?;
                if svc.destinations.contains_key(&rs.key) {
                    return Err(refuse(op, libc::EEXIST));
                }
                let dest = Destination {
                    server: *rs,
                    connections: ConnectionCounts::default(),
                };
                svc.destinations.insert(rs.key, dest);
            }
            IpvsOp::UpdateDestination(key, rs) => {
                let svc = self.service_mut(op, key)?;
                let dest = svc
                    .destinations
                    .get_mut(&rs.key)
                    .ok_or_else(|| refuse(op, libc::ENOENT))?;
                dest.server = *rs;
            }
            IpvsOp::DeleteDestination(key, rs) => {
                let svc = self.service_mut(op, key)?;
                svc.destinations
                    .remove(rs)
                    .ok_or_else(|| refuse(op, libc::ENOENT))?;
            }
        }
        self.applied.push(op.clone());
        Ok(())
    }
}

impl IpvsHandle for FakeIpvs {
    fn services(&mut self) -> Result<Vec<VirtualServer>> {
        Ok(self.services.values().map(|s| s.service.clone()).collect())
    }

    fn destinations(&mut self, service: &ServiceKey) -> Result<Vec<Destination>> {
        let svc = self.services.get(service).ok_or_else(|| Error::Kernel {
            request: format!("list destinations of {service}"),
            errno: libc::ESRCH,
        })?;
        Ok(svc.destinations.values().copied().collect())
    }

    fn apply(&mut self, ops: &[IpvsOp]) -> Result<Vec<Failure>> {
        let mut failures = Vec::new();
        for op in ops {
            if let Err(error) = self.apply_op(op) {
                failures.push(Failure {
                    op: op.clone(),
                    error,
                });
            }
        }
        Ok(failures)
    }

    fn flush(&mut self) -> Result<()> {
        self.services.clear();
        Ok(())
    }

    fn set_timeouts(&mut self, timeouts: Timeouts) -> Result<()> {
        let keep = |new: u32, old: u32| if new == 0 { old } else { new };
        self.timeouts = Timeouts {
            tcp_secs: keep(timeouts.tcp_secs, self.timeouts.tcp_secs),
            tcp_fin_secs: keep(timeouts.tcp_fin_secs, self.timeouts.tcp_fin_secs),
            udp_secs: keep(timeouts.udp_secs, self.timeouts.udp_secs),
        };
        Ok(())
    }
}
