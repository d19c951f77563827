//! The lab's address plan, as on a real node: an external network between the outside
//! client and the node's `eth0`, a pod network behind the node's bridge `cbr0`, and the
//! service, external and load-balancer ranges the outside client routes to the node.

use kproxy_model::IpFamily;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The Node object's name, for `--hostname-override` and endpoints' `nodeName`.
pub const NODE_NAME: &str = "node-0";
/// The cluster's pod CIDRs, as `--cluster-cidr` takes them.
pub const CLUSTER_CIDRS: &str = "10.244.0.0/16,fd00:10:244::/48";
/// The port every pod server listens on, TCP and UDP.
pub const POD_PORT: u16 = 8080;

/// The node's address on the external network.
pub fn node_ip(family: IpFamily) -> IpAddr {
    pick(
        family,
        [192, 168, 50, 10],
        [0xfd00, 0x50, 0, 0, 0, 0, 0, 0x10],
    )
}

/// The node's address on the pod bridge (the pods' gateway; what masqueraded traffic
/// comes from).
pub fn bridge_ip(family: IpFamily) -> IpAddr {
    pick(
        family,
        [10, 244, 0, 1],
        [0xfd00, 0x10, 0x244, 0, 0, 0, 0, 1],
    )
}

/// The outside client's addresses: `0` is its main one, `1` a second one (another client
/// for `loadBalancerSourceRanges`).
pub fn outside_ip(family: IpFamily, which: u8) -> IpAddr {
    let host = 100 + which;
    pick(
        family,
        [192, 168, 50, host],
        [0xfd00, 0x50, 0, 0, 0, 0, 0, 0x100 + u16::from(which)],
    )
}

/// The external network's router, the node's default gateway. It is an address of the
/// outside namespace, which does not forward: traffic the node sends there (no service
/// rule matched) is dropped, as a router without a route would.
pub fn gateway_ip(family: IpFamily) -> IpAddr {
    pick(family, [192, 168, 50, 1], [0xfd00, 0x50, 0, 0, 0, 0, 0, 1])
}

/// Server pod `index`'s address (pods are numbered from 0; addresses from `.2`).
pub fn pod_ip(family: IpFamily, index: u8) -> IpAddr {
    let host = 2 + index;
    pick(
        family,
        [10, 244, 0, host],
        [0xfd00, 0x10, 0x244, 0, 0, 0, 0, u16::from(host)],
    )
}

/// The client pod's address (a pod that only makes connections).
pub fn client_pod_ip(family: IpFamily) -> IpAddr {
    pick(
        family,
        [10, 244, 0, 200],
        [0xfd00, 0x10, 0x244, 0, 0, 0, 0, 0x200],
    )
}

/// Server pod `index`'s name, as its servers report it.
pub fn pod_name(index: u8) -> String {
    format!("pod-{index}")
}

/// The prefix length of the external and pod subnets.
pub fn subnet_prefix(family: IpFamily) -> u8 {
    match family {
        IpFamily::V4 => 24,
        IpFamily::V6 => 64,
    }
}

/// What the outside client routes through the node: the service CIDR, the external IP
/// range and the load-balancer range.
pub fn routed_to_node(family: IpFamily) -> [&'static str; 3] {
    match family {
        IpFamily::V4 => ["10.96.0.0/12", "198.51.100.0/24", "203.0.113.0/24"],
        IpFamily::V6 => ["fd00:10:96::/108", "2001:db8:e::/64", "2001:db8:1b::/64"],
    }
}

/// Both families, IPv4 first.
pub const FAMILIES: [IpFamily; 2] = [IpFamily::V4, IpFamily::V6];

/// An address with the prefix length, as `ip addr add` takes it.
pub fn with_prefix(ip: IpAddr, family: IpFamily) -> String {
    format!("{ip}/{}", subnet_prefix(family))
}

fn pick(family: IpFamily, v4: [u8; 4], v6: [u16; 8]) -> IpAddr {
    match family {
        IpFamily::V4 => IpAddr::V4(Ipv4Addr::from(v4)),
        IpFamily::V6 => IpAddr::V6(Ipv6Addr::from(v6)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_the_plan() {
        assert_eq!(node_ip(IpFamily::V6).to_string(), "fd00:50::10");
        assert_eq!(pod_ip(IpFamily::V4, 0).to_string(), "10.244.0.2");
        assert_eq!(pod_ip(IpFamily::V6, 2).to_string(), "fd00:10:244::4");
        assert_eq!(outside_ip(IpFamily::V6, 1).to_string(), "fd00:50::101");
        assert_eq!(
            with_prefix(bridge_ip(IpFamily::V4), IpFamily::V4),
            "10.244.0.1/24"
        );
    }
}
