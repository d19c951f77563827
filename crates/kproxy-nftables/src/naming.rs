//! Chain and set names for service ports and endpoints: a readable base
//! (`ns/name/proto/port`, plus `__ip/port` for endpoints) behind an 8-character hash, so
//! names stay unique when they are cut to nft's length limit.

use data_encoding::BASE32;
use kproxy_model::{join_host_port, Endpoint, ServicePortName};
use sha2::{Digest, Sha256};

/// Longest hashed base: nft's 256-byte limit less room for the longest prefix.
const MAX_HASHED_LEN: usize = 240;

/// `ns/name/proto/port` for a service port.
pub fn service_base(name: &ServicePortName) -> String {
    format!(
        "{}/{}/{}/{}",
        name.service.namespace,
        name.service.name,
        name.protocol.lower(),
        name.port
    )
}

/// The service base plus `__<ip with ':' as '.'>/<port>` for one endpoint, given as
/// `ip:port` or `[ip]:port`.
pub fn endpoint_base(service_base: &str, endpoint: &str) -> String {
    let (host, port) = endpoint.rsplit_once(':').unwrap_or((endpoint, ""));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    format!("{service_base}__{}/{port}", host.replace(':', "."))
}

/// `HASH8-base`, cut to 240 characters with `...` when longer; the hash is over the
/// whole base, so cut names still differ.
pub fn hashed(base: &str) -> String {
    let digest = Sha256::digest(base.as_bytes());
    let encoded = BASE32.encode(&digest);
    let mut out = format!("{}-{base}", &encoded[..8]);
    if out.len() > MAX_HASHED_LEN {
        let mut cut = MAX_HASHED_LEN - 3;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// The names of every object kproxy writes for one service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceChainNames {
    /// `ns/name/proto/port`, the base endpoint names extend.
    pub base: String,
    /// `service-…`: the cluster-policy chain.
    pub cluster: String,
    /// `local-…`: the local-policy chain.
    pub local: String,
    /// `external-…`: where external traffic enters.
    pub external: String,
    /// `firewall-…`: LoadBalancerSourceRanges.
    pub firewall: String,
}

impl ServiceChainNames {
    /// Names for a service port.
    pub fn new(name: &ServicePortName) -> ServiceChainNames {
        let base = service_base(name);
        let h = hashed(&base);
        ServiceChainNames {
            cluster: format!("service-{h}"),
            local: format!("local-{h}"),
            external: format!("external-{h}"),
            firewall: format!("firewall-{h}"),
            base,
        }
    }

    /// The `endpoint-…` chain and `affinity-…` set of one endpoint.
    pub fn endpoint(&self, endpoint: &Endpoint) -> EndpointNames {
        let h = hashed(&endpoint_base(
            &self.base,
            &join_host_port(&endpoint.ip, endpoint.port),
        ));
        EndpointNames {
            chain: format!("endpoint-{h}"),
            affinity_set: format!("affinity-{h}"),
        }
    }
}

/// The names of one endpoint's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointNames {
    /// `endpoint-…`.
    pub chain: String,
    /// `affinity-…`.
    pub affinity_set: String,
}

/// Whether a chain is a per-service or per-endpoint chain (those are the ones that
/// contain `/`).
pub fn is_service_chain(name: &str) -> bool {
    name.contains('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_vectors() {
        assert_eq!(
            hashed("testing/service/tcp/http"),
            "P4ZYZVCF-testing/service/tcp/http"
        );
        assert_eq!(
            hashed(&endpoint_base(
                "testing/service/tcp/http",
                "[fd80:abcd:12::a1b2:c3d4:e5f6:9999]:80"
            )),
            "U7E2ET36-testing/service/tcp/http__fd80.abcd.12..a1b2.c3d4.e5f6.9999/80"
        );
    }
}
