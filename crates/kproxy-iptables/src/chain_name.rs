//! Chain names: `KUBE-SVC-`, `KUBE-SVL-`, `KUBE-EXT-`, `KUBE-FW-` and `KUBE-SEP-` followed
//! by the first 16 characters of the base32 SHA-256 of the service port (and endpoint),
//! exactly as upstream names them, so kproxy and kube-proxy chains are interchangeable.

use kproxy_model::ServicePortName;
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// The first 16 characters of the standard base32 encoding of SHA-256(`text`).
pub fn hash16(text: &str) -> String {
    let mut out = String::with_capacity(16);
    push_hash16(&mut out, text);
    out
}

/// Appends [`hash16`] of `text` to `out`. Sixteen base32 characters are exactly the
/// encoding of the digest's first ten bytes, so only those are encoded.
fn push_hash16(out: &mut String, text: &str) {
    let digest = Sha256::digest(text.as_bytes());
    data_encoding::BASE32.encode_append(&digest[..10], out);
}

/// The hash input for a service port, `ns/name:port` + protocol, written into `out`.
pub fn write_service_key(out: &mut String, name: &ServicePortName) {
    out.clear();
    let _ = write!(out, "{name}{}", name.protocol.lower());
}

/// The per-service chain names of one service port, kept in one buffer so that a renderer
/// can reuse it from port to port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceChains {
    /// `KUBE-SVC-…`, `KUBE-SVL-…`, `KUBE-EXT-…` and `KUBE-FW-…`, one after the other.
    names: String,
}

/// Where each name ends in [`ServiceChains`]' buffer (`KUBE-` + 4 + 16, then `KUBE-FW-`).
const SVC_END: usize = 25;
const SVL_END: usize = 50;
const EXT_END: usize = 75;

impl ServiceChains {
    /// The chain names of a service port.
    pub fn of(name: &ServicePortName) -> Self {
        let mut key = String::new();
        write_service_key(&mut key, name);
        let mut chains = ServiceChains::default();
        chains.fill(&key);
        chains
    }

    /// Sets the names to those of the service port whose [`write_service_key`] is `key`.
    pub fn fill(&mut self, key: &str) {
        let digest = Sha256::digest(key.as_bytes());
        self.names.clear();
        for prefix in ["KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-"] {
            self.names.push_str(prefix);
            data_encoding::BASE32.encode_append(&digest[..10], &mut self.names);
        }
    }

    fn name(&self, from: usize, to: usize) -> &str {
        self.names.get(from..to).unwrap_or_default()
    }

    /// `KUBE-SVC-…`: endpoints for traffic policy Cluster.
    pub fn cluster(&self) -> &str {
        self.name(0, SVC_END)
    }

    /// `KUBE-SVL-…`: endpoints for traffic policy Local.
    pub fn local(&self) -> &str {
        self.name(SVC_END, SVL_END)
    }

    /// `KUBE-EXT-…`: external destinations.
    pub fn external(&self) -> &str {
        self.name(SVL_END, EXT_END)
    }

    /// `KUBE-FW-…`: load-balancer source ranges.
    pub fn firewall(&self) -> &str {
        self.name(EXT_END, self.names.len())
    }
}

/// Names the `KUBE-SEP-…` chains of one service port's endpoints: the hash of the service
/// key is started once and finished for each endpoint's `ip:port`.
pub struct EndpointChainHasher {
    service: Sha256,
}

impl EndpointChainHasher {
    /// A hasher for the service port whose [`write_service_key`] is `key`.
    pub fn new(key: &str) -> Self {
        EndpointChainHasher {
            service: Sha256::new_with_prefix(key.as_bytes()),
        }
    }

    /// Appends the chain name of the endpoint at `addr` (`ip:port`, `[ip]:port`) to `out`.
    pub fn push_chain(&self, out: &mut String, addr: &str) {
        let digest = self
            .service
            .clone()
            .chain_update(addr.as_bytes())
            .finalize();
        out.push_str("KUBE-SEP-");
        data_encoding::BASE32.encode_append(&digest[..10], out);
    }
}

/// Whether a chain name is one of the per-service chains kproxy (and kube-proxy) manage.
pub fn is_service_chain(chain: &str) -> bool {
    [
        "KUBE-SVC-",
        "KUBE-SVL-",
        "KUBE-EXT-",
        "KUBE-FW-",
        "KUBE-SEP-",
    ]
    .iter()
    .any(|prefix| chain.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_worked_examples() {
        assert_eq!(hash16("ns1/svc1:p80tcp"), "XPGD46QRK7WJZT7O");
        assert_eq!(hash16("ns1/svc1:p80tcp10.180.0.1:80"), "SXIVWICOYRO3J4NJ");
        assert_eq!(hash16("ns4/svc4:p8082tcp"), "EBDQOQU5SJFXRIL3");
        assert_eq!(hash16("ns1/svc1tcp"), "AQI2S6QIMU7PVVRP");
        let mut chains = ServiceChains::default();
        chains.fill("ns1/svc1:p80tcp");
        assert_eq!(
            [
                chains.cluster(),
                chains.local(),
                chains.external(),
                chains.firewall()
            ],
            [
                "KUBE-SVC-XPGD46QRK7WJZT7O",
                "KUBE-SVL-XPGD46QRK7WJZT7O",
                "KUBE-EXT-XPGD46QRK7WJZT7O",
                "KUBE-FW-XPGD46QRK7WJZT7O"
            ]
        );
        let mut chain = String::new();
        EndpointChainHasher::new("ns1/svc1:p80tcp").push_chain(&mut chain, "10.180.0.1:80");
        assert_eq!(chain, "KUBE-SEP-SXIVWICOYRO3J4NJ");
    }
}
