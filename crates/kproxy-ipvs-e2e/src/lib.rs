//! The kproxy agent (`kproxy --proxy-mode ipvs`) end to end in the ipvs-vm guest, where
//! the kernel has IPVS. `tools/ipvs-vm/test-agent` builds the release `kproxy` and this
//! crate's `ipvs-agent-e2e` binary and runs it in a guest:
//!
//! - [`functional`]: pods and a client in network namespaces, the agent in the guest's
//!   root namespace over a cluster file; real TCP connections through ClusterIP, NodePort
//!   and ClientIP affinity; an endpoint removed under traffic drains; a removed Service
//!   leaves no virtual server, address or ipset entry; `--cleanup` empties IPVS.
//! - [`scale`]: 10,000 Services x 10 endpoints from the agent's start to the kernel, then
//!   one endpoint change; prints the figures (no timed assertions).
//!
//! The kernel is read back with the reference tools (`ipvsadm`, `ipset`, `ip`), not with
//! kproxy's own netlink code.

pub mod agent;
pub mod checks;
pub mod cluster;
pub mod functional;
pub mod kernel;
pub mod net;
pub mod scale;
