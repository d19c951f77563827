//! The seam between IPVS logic and the kernel: [`IpvsHandle`].

use crate::error::Result;
use crate::ops::{Failure, IpvsOp};
use crate::types::{Destination, ServiceKey, ServiceState, Timeouts, VirtualServer};

/// Reads and changes an IPVS table (the kernel's, or a fake's).
pub trait IpvsHandle {
    /// Every virtual server (addressed by IP; firewall-mark services are not listed).
    fn services(&mut self) -> Result<Vec<VirtualServer>>;

    /// The real servers of one virtual server, with their connection counts.
    fn destinations(&mut self, service: &ServiceKey) -> Result<Vec<Destination>>;

    /// Applies `ops` in order. Operations the kernel refuses are returned and
    /// do not stop the others; `Err` means the table could not be reached.
    fn apply(&mut self, ops: &[IpvsOp]) -> Result<Vec<Failure>>;

    /// Deletes every virtual server.
    fn flush(&mut self) -> Result<()>;

    /// Sets the connection timeouts; zero fields keep their current value.
    fn set_timeouts(&mut self, timeouts: Timeouts) -> Result<()>;

    /// Applies one operation; the kernel's refusal is the error.
    fn apply_one(&mut self, op: IpvsOp) -> Result<()> {
        match self.apply(std::slice::from_ref(&op))?.into_iter().next() {
            Some(failure) => Err(failure.error),
            None => Ok(()),
        }
    }

    /// Every virtual server with its real servers.
    fn state(&mut self) -> Result<Vec<ServiceState>> {
        let services = self.services()?;
        let mut out = Vec::with_capacity(services.len());
        for service in services {
            let destinations = self.destinations(&service.key)?;
            out.push(ServiceState {
                service,
                destinations,
            });
        }
        Ok(out)
    }
}
