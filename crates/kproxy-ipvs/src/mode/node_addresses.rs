//! Which host addresses count as node addresses, and which of them accept NodePorts.

use std::collections::BTreeSet;
use std::net::IpAddr;

use kproxy_model::IpFamily;

use super::settings::IpvsSettings;

/// Whether `addr` is a usable node address of `family`: its own family (an IPv4-mapped
/// IPv6 address counts as IPv4), not loopback, not IPv6 link-local. Returns it in
/// canonical form.
pub fn usable_node_address(family: IpFamily, addr: &IpAddr) -> Option<IpAddr> {
    let addr = addr.to_canonical();
    if IpFamily::of(&addr) != family || addr.is_loopback() {
        return None;
    }
    if let IpAddr::V6(v6) = addr {
        if v6.segments()[0] & 0xffc0 == 0xfe80 {
            return None;
        }
    }
    Some(addr)
}

/// The node addresses of `family` among every address on the host's interfaces except
/// kube-ipvs0 (the caller leaves those out).
pub fn node_addresses(family: IpFamily, host: &[IpAddr]) -> BTreeSet<IpAddr> {
    host.iter()
        .filter_map(|a| usable_node_address(family, a))
        .collect()
}

/// The addresses NodePort virtual servers listen on: every node address when
/// `--nodeport-addresses` has no CIDR of this family or a match-all one, otherwise the
/// node addresses inside those CIDRs.
pub fn node_port_ips(settings: &IpvsSettings, node: &BTreeSet<IpAddr>) -> BTreeSet<IpAddr> {
    let cidrs: Vec<_> = settings
        .node_port_addresses
        .iter()
        .filter(|c| IpFamily::of_net(c) == settings.family)
        .collect();
    if cidrs.is_empty() || cidrs.iter().any(|c| c.prefix_len() == 0) {
        return node.clone();
    }
    node.iter()
        .filter(|a| cidrs.iter().any(|c| c.contains(*a)))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter()
            .map(|s| s.parse().expect("test address"))
            .collect()
    }

    #[test]
    fn usable_addresses_follow_upstream_vectors() {
        let v4 = [
            ("127.0.0.1", false),
            ("127.0.0.0", false),
            ("127.6.7.8", false),
            ("8.8.8.8", true),
            ("192.168.0.1", true),
            ("169.254.0.0", true),
            ("::ffff:169.254.0.0", true),
            ("1000::", false),
        ];
        for (text, valid) in v4 {
            let addr: IpAddr = text.parse().expect("address");
            assert_eq!(
                usable_node_address(IpFamily::V4, &addr).is_some(),
                valid,
                "{text}"
            );
        }
        let v6 = [
            ("::1", false),
            ("1000::", true),
            ("fe80::200:ff:fe01:1", false),
            ("8.8.8.8", false),
            ("::ffff:8.8.8.8", false),
        ];
        for (text, valid) in v6 {
            let addr: IpAddr = text.parse().expect("address");
            assert_eq!(
                usable_node_address(IpFamily::V6, &addr).is_some(),
                valid,
                "{text}"
            );
        }
    }

    #[test]
    fn node_port_ips_are_filtered_by_own_family_cidrs() {
        let host = node_addresses(
            IpFamily::V4,
            &ips(&[
                "10.20.30.40",
                "fe80::1",
                "127.0.0.1",
                "172.17.0.1",
                "2000::",
            ]),
        );
        assert_eq!(host.len(), 2);
        let mut settings = IpvsSettings::new(IpFamily::V4, "n");
        assert_eq!(node_port_ips(&settings, &host), host);
        settings.node_port_addresses = vec!["2000::/64".parse().expect("cidr")];
        assert_eq!(
            node_port_ips(&settings, &host),
            host,
            "no v4 CIDR: match all"
        );
        settings.node_port_addresses = vec!["10.0.0.0/8".parse().expect("cidr")];
        let only: Vec<IpAddr> = node_port_ips(&settings, &host).into_iter().collect();
        assert_eq!(only, ips(&["10.20.30.40"]));
        settings.node_port_addresses = vec!["0.0.0.0/0".parse().expect("cidr")];
        assert_eq!(node_port_ips(&settings, &host), host);
    }
}
