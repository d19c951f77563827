//! Tests against a real IPVS kernel. They are `#[ignore]`d on the host;
//! `tools/ipvs-vm/test` runs them inside the UML guest (`IPVS_VM=1`).

mod gate;
mod mode;
mod netlink;
mod scale;
mod traffic;
