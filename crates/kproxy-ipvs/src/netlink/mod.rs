//! IPVS over generic netlink: pure message encoding and decoding
//! ([`wire`], [`codec`]) and the socket that carries them ([`socket`]).

pub(crate) mod codec;
pub(crate) mod socket;
pub(crate) mod wire;
