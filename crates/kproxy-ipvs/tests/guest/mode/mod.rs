//! The ipvs mode end to end in the guest: the proxier and the real kernel facade program
//! a small cluster, and real connections from a client namespace go through it.

mod cluster;
mod net;
mod node;
mod scale;
mod traffic;
