//! Changes to the kernel's IPVS table, as values a planner returns and a
//! handle applies.

use std::fmt;

use crate::error::Error;
use crate::types::{RealServer, RealServerKey, ServiceKey, VirtualServer};

/// One change to the IPVS table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum IpvsOp {
    /// Create a virtual server.
    AddService(VirtualServer),
    /// Change an existing virtual server's scheduler, flags or persistence in place.
    UpdateService(VirtualServer),
    /// Delete a virtual server and its real servers.
    DeleteService(ServiceKey),
    /// Add a real server to a virtual server.
    AddDestination(ServiceKey, RealServer),
    /// Change an existing real server's weight or forwarding method.
    UpdateDestination(ServiceKey, RealServer),
    /// Remove a real server from a virtual server.
    DeleteDestination(ServiceKey, RealServerKey),
}

impl fmt::Display for IpvsOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpvsOp::AddService(vs) => write!(f, "add service {} {}", vs.key, vs.scheduler.name()),
            IpvsOp::UpdateService(vs) => {
                write!(f, "update service {} {}", vs.key, vs.scheduler.name())
            }
            IpvsOp::DeleteService(key) => write!(f, "delete service {key}"),
            IpvsOp::AddDestination(key, rs) => {
                write!(
                    f,
                    "add destination {} to {key} weight {}",
                    rs.key, rs.weight
                )
            }
            IpvsOp::UpdateDestination(key, rs) => {
                write!(
                    f,
                    "update destination {} of {key} weight {}",
                    rs.key, rs.weight
                )
            }
            IpvsOp::DeleteDestination(key, rs) => write!(f, "delete destination {rs} of {key}"),
        }
    }
}

/// An operation the kernel refused, with why.
#[derive(Debug)]
pub struct Failure {
    /// The refused operation.
    pub op: IpvsOp,
    /// The kernel's answer.
    pub error: Error,
}
