//! The pure diff from the IPVS table as it is to the table a mode wants:
//! `plan(current, desired) -> Vec<IpvsOp>`, with graceful termination.

use std::collections::{BTreeMap, BTreeSet};

use crate::graceful::{retire, DrainPolicy, Draining};
use crate::ops::IpvsOp;
use crate::types::{
    Destination, RealServer, RealServerKey, ServiceKey, ServiceState, VirtualServer,
};

/// A virtual server a mode wants, with the real servers it wants behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredService {
    /// The virtual server.
    pub service: VirtualServer,
    /// Its real servers.
    pub real_servers: Vec<RealServer>,
}

/// The operations that take the table to the desired state, and the drains
/// still running afterwards (hand them to the next plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Operations in the order to apply them.
    pub ops: Vec<IpvsOp>,
    /// Real servers left in place at weight 0 until their connections end.
    pub draining: Draining,
}

/// Inputs of a plan besides the two states.
pub struct PlanOptions<'a> {
    /// Time and timeout of graceful termination.
    pub drain: DrainPolicy,
    /// Virtual servers that are not desired but must stay (another IP family,
    /// addresses in `--ipvs-exclude-cidrs`).
    pub keep_unlisted: &'a dyn Fn(&ServiceKey) -> bool,
}

/// Diffs `current` against `desired`.
///
/// - A missing virtual server is added with its real servers; a changed one
///   (scheduler, flags, persistence) is updated in place.
/// - A missing real server is added, a changed one updated. One that is being
///   drained and wanted again is deleted and added anew.
/// - A real server no longer wanted is retired gracefully (see [`crate::graceful`]).
/// - A virtual server no longer wanted is deleted at once, after everything
///   else, unless `keep_unlisted` says otherwise.
pub fn plan(
    current: &[ServiceState],
    desired: &[DesiredService],
    draining: &Draining,
    options: &PlanOptions<'_>,
) -> Plan {
    let by_key: BTreeMap<ServiceKey, &ServiceState> =
        current.iter().map(|s| (s.service.key, s)).collect();
    let mut ops = Vec::new();
    let mut still_draining = Draining::default();
    for want in desired {
        let key = want.service.key;
        match by_key.get(&key) {
            None => {
                ops.push(IpvsOp::AddService(want.service.clone()));
                ops.extend(
                    want.real_servers
                        .iter()
                        .map(|rs| IpvsOp::AddDestination(key, *rs)),
                );
            }
            Some(have) => {
                if have.service != want.service {
                    ops.push(IpvsOp::UpdateService(want.service.clone()));
                }
                let diff = DestinationDiff {
                    service: &key,
                    draining,
                    policy: options.drain,
                };
                diff.run(
                    &have.destinations,
                    &want.real_servers,
                    &mut ops,
                    &mut still_draining,
                );
            }
        }
    }
    let wanted: BTreeSet<ServiceKey> = desired.iter().map(|d| d.service.key).collect();
    for have in current {
        let key = have.service.key;
        if !wanted.contains(&key) && !(options.keep_unlisted)(&key) {
            ops.push(IpvsOp::DeleteService(key));
        }
    }
    Plan {
        ops,
        draining: still_draining,
    }
}

/// The real-server half of the diff, for one virtual server.
struct DestinationDiff<'a> {
    service: &'a ServiceKey,
    draining: &'a Draining,
    policy: DrainPolicy,
}

impl DestinationDiff<'_> {
    fn run(
        &self,
        have: &[Destination],
        want: &[RealServer],
        ops: &mut Vec<IpvsOp>,
        still_draining: &mut Draining,
    ) {
        let key = *self.service;
        let have_by_key: BTreeMap<RealServerKey, &Destination> =
            have.iter().map(|d| (d.server.key, d)).collect();
        for rs in want {
            match have_by_key.get(&rs.key) {
                None => ops.push(IpvsOp::AddDestination(key, *rs)),
                Some(_) if self.draining.contains(&key, &rs.key) => {
                    ops.push(IpvsOp::DeleteDestination(key, rs.key));
                    ops.push(IpvsOp::AddDestination(key, *rs));
                }
                Some(d) if d.server != *rs => ops.push(IpvsOp::UpdateDestination(key, *rs)),
                Some(_) => {}
            }
        }
        let wanted: BTreeSet<RealServerKey> = want.iter().map(|rs| rs.key).collect();
        for dest in have.iter().filter(|d| !wanted.contains(&d.server.key)) {
            let (op, since) = retire(&key, dest, self.draining, self.policy);
            ops.extend(op);
            if let Some(at) = since {
                still_draining.insert(key, dest.server.key, at);
            }
        }
    }
}

#[cfg(test)]
mod tests;
