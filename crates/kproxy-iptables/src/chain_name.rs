//! Chain names: `KUBE-SVC-`, `KUBE-SVL-`, `KUBE-EXT-`, `KUBE-FW-` and `KUBE-SEP-` followed
//! by the first 16 characters of the base32 SHA-256 of the service port (and endpoint),
//! exactly as upstream names them, so kproxy and kube-proxy chains are interchangeable.

use kproxy_model::{Endpoint, ServicePortName};
use sha2::{Digest, Sha256};

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

/// The hash input for a service port: `ns/name:port` + protocol.
fn service_key(name: &ServicePortName) -> String {
    format!("{name}{}", name.protocol.lower())
}

/// The per-service chain names of one service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceChains {
    /// `KUBE-SVC-…`: endpoints for traffic policy Cluster.
    pub cluster: String,
    /// `KUBE-SVL-…`: endpoints for traffic policy Local.
    pub local: String,
    /// `KUBE-EXT-…`: external destinations.
    pub external: String,
    /// `KUBE-FW-…`: load-balancer source ranges.
    pub firewall: String,
}

impl ServiceChains {
    /// The chain names of a service port.
    pub fn of(name: &ServicePortName) -> Self {
        let hash = hash16(&service_key(name));
        ServiceChains {
            cluster: format!("KUBE-SVC-{hash}"),
            local: format!("KUBE-SVL-{hash}"),
            external: format!("KUBE-EXT-{hash}"),
            firewall: format!("KUBE-FW-{hash}"),
        }
    }
}

/// `KUBE-SEP-…`: the chain of one endpoint of a service port.
pub fn endpoint_chain(name: &ServicePortName, endpoint: &Endpoint) -> String {
    let mut key = service_key(name);
    key.push_str(&endpoint.addr());
    let mut chain = String::with_capacity(25);
    chain.push_str("KUBE-SEP-");
    push_hash16(&mut chain, &key);
    chain
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
    }
}
