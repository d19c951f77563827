//! Addresses and networks as iptables writes them (`10.0.0.1`, `10.0.0.0/8`,
//! `10.0.0.0/255.0.0.0`, `fd00::/64`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address with a prefix length: what `-s`/`-d` and ipset members hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    /// The network address as written.
    pub addr: IpAddr,
    /// The prefix length (32 or 128 for a bare address).
    pub prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies inside this network (never true across address families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = prefix_mask_u32(self.prefix);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = prefix_mask_u128(self.prefix);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn prefix_mask_u32(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

fn prefix_mask_u128(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

/// The text was not an address or network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address or network {0:?}")]
pub struct InvalidNet(pub String);

impl FromStr for IpNet {
    type Err = InvalidNet;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidNet(s.to_string());
        let (addr_text, prefix_text) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| invalid())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_text {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                Ok(_) => return Err(invalid()),
                Err(_) => mask_to_prefix(p, addr).ok_or_else(invalid)?,
            },
        };
        Ok(IpNet { addr, prefix })
    }
}

/// Converts a dotted mask (`255.255.0.0`) to a prefix length, if it is contiguous.
fn mask_to_prefix(mask: &str, addr: IpAddr) -> Option<u8> {
    let bits = match (mask.parse::<IpAddr>().ok()?, addr) {
        (IpAddr::V4(m), IpAddr::V4(_)) => u128::from(u32::from(m)) << 96,
        (IpAddr::V6(m), IpAddr::V6(_)) => u128::from(m),
        _ => return None,
    };
    let prefix = bits.leading_ones();
    let valid = bits.checked_shl(prefix).unwrap_or(0) == 0;
    let prefix = if addr.is_ipv4() {
        prefix.min(32)
    } else {
        prefix
    };
    valid.then_some(prefix as u8)
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.prefix == full {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// Whether `ip` is the limited broadcast address.
pub fn is_broadcast(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn bare_address_is_a_host_network() {
        let n = net("10.0.0.1");
        assert_eq!(n.prefix, 32);
        assert!(n.contains("10.0.0.1".parse().unwrap()));
        assert!(!n.contains("10.0.0.2".parse().unwrap()));
    }

    #[test]
    fn prefix_and_dotted_mask_forms_agree() {
        assert_eq!(net("10.0.0.0/255.0.0.0"), net("10.0.0.0/8"));
        assert!(net("10.0.0.0/8").contains("10.200.3.4".parse().unwrap()));
        assert!(net("0.0.0.0/0").contains("1.2.3.4".parse().unwrap()));
        assert!("10.0.0.0/255.0.255.0".parse::<IpNet>().is_err());
    }

    #[test]
    fn ipv6_networks_and_family_mismatch() {
        let n = net("fd00:10::/64");
        assert!(n.contains("fd00:10::5".parse().unwrap()));
        assert!(!n.contains("fd00:11::5".parse().unwrap()));
        assert!(!n.contains("10.0.0.1".parse().unwrap()));
        assert_eq!(net("::1/128").to_string(), "::1");
    }
}
