//! Address parsing as kube-proxy does it: IPv4 octets may carry leading zeros (read as
//! decimal), CIDRs are trimmed, and everything is kept in canonical form afterwards.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr};

/// An IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpFamily {
    /// The family of an address.
    pub fn of(ip: &IpAddr) -> IpFamily {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// The family of a CIDR.
    pub fn of_net(net: &IpNet) -> IpFamily {
        IpFamily::of(&net.addr())
    }
}

/// Parses an IP address, accepting IPv4 octets with leading zeros (`010.001.0.1`), as
/// Kubernetes' "sloppy" parser does. Surrounding whitespace is not accepted.
pub fn parse_ip_sloppy(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    parse_ipv4_leading_zeros(text).map(IpAddr::V4)
}

fn parse_ipv4_leading_zeros(text: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits = part.trim_start_matches('0');
        if digits.len() > 3 {
            return None;
        }
        *octet = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

/// Parses a CIDR (`10.0.0.0/8`), with sloppy IPv4 octets and a sloppy prefix length
/// (`/025`). The host bits are cleared, as Go's `ParseCIDR` does.
pub fn parse_cidr_sloppy(text: &str) -> Option<IpNet> {
    let (ip, prefix) = text.split_once('/')?;
    let ip = parse_ip_sloppy(ip)?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix: u8 = prefix.trim_start_matches('0').parse().unwrap_or(0);
    IpNet::new(ip, prefix).ok().map(|net| net.trunc())
}

/// Formats an endpoint as kube-proxy does: `ip:port`, or `[ip]:port` for IPv6.
pub fn join_host_port(ip: &IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zeros_are_decimal() {
        assert_eq!(
            parse_ip_sloppy("172.30.0.041"),
            "172.30.0.41".parse::<IpAddr>().ok()
        );
        assert_eq!(
            parse_ip_sloppy("10.180.00.001"),
            "10.180.0.1".parse::<IpAddr>().ok()
        );
        assert_eq!(parse_ip_sloppy("1.2.3.256"), None);
        assert_eq!(parse_ip_sloppy(" 1.2.3.4"), None);
        assert_eq!(parse_ip_sloppy("1.2.3"), None);
    }

    #[test]
    fn cidrs_are_trimmed_to_network() {
        assert_eq!(
            parse_cidr_sloppy("203.0.113.000/025").map(|n| n.to_string()),
            Some("203.0.113.0/25".to_string())
        );
        assert_eq!(
            parse_cidr_sloppy("10.1.2.3/8").map(|n| n.to_string()),
            Some("10.0.0.0/8".to_string())
        );
        assert_eq!(parse_cidr_sloppy("10.0.0.0/33"), None);
        assert_eq!(parse_cidr_sloppy("10.0.0.0"), None);
    }

    #[test]
    fn host_port_brackets_ipv6() {
        let v6: IpAddr = "fd00::1".parse().expect("valid");
        assert_eq!(join_host_port(&v6, 80), "[fd00::1]:80");
    }
}
