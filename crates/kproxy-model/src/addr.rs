//! Address parsing as kube-proxy does it: IPv4 octets may carry leading zeros (read as
//! decimal), CIDRs are trimmed, and everything is kept in canonical form afterwards.

use ipnet::IpNet;
use std::fmt::{self, Write};
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
    HostPort::new(ip, port).as_str().to_string()
}

/// The longest [`HostPort`]: `[` + the longest IPv6 text + `]:` + five digits.
const HOST_PORT_MAX: usize = 1 + 45 + 2 + 5;

/// `ip:port`, or `[ip]:port` for IPv6, written into a buffer on the stack: endpoints keep
/// their address and port, and write this text only where a rule needs it. Compares as
/// its text.
#[derive(Clone, Copy)]
pub struct HostPort {
    len: u8,
    text: [u8; HOST_PORT_MAX],
}

impl HostPort {
    /// Writes `ip:port` or `[ip]:port`.
    pub fn new(ip: &IpAddr, port: u16) -> HostPort {
        let mut out = HostPort {
            len: 0,
            text: [0; HOST_PORT_MAX],
        };
        match ip {
            IpAddr::V4(v4) => out.push_ipv4(v4),
            IpAddr::V6(v6) => {
                let written = write!(out, "[{v6}]");
                debug_assert!(written.is_ok(), "HOST_PORT_MAX fits every address");
            }
        }
        out.push_byte(b':');
        out.push_decimal(port);
        out
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        let bytes = &self.text[..usize::from(self.len)];
        std::str::from_utf8(bytes).unwrap_or_default()
    }
}

impl fmt::Write for HostPort {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let start = usize::from(self.len);
        let end = start + text.len();
        let slot = self.text.get_mut(start..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.len = u8::try_from(end).map_err(|_| fmt::Error)?;
        Ok(())
    }
}

impl HostPort {
    /// Dotted quad without the formatting machinery: rule rendering writes one per
    /// endpoint.
    fn push_ipv4(&mut self, ip: &Ipv4Addr) {
        for (index, octet) in ip.octets().into_iter().enumerate() {
            if index > 0 {
                self.push_byte(b'.');
            }
            self.push_decimal(u16::from(octet));
        }
    }

    fn push_decimal(&mut self, value: u16) {
        for &digit in Decimal::new(value.into()).digits() {
            self.push_byte(digit);
        }
    }

    /// Appends one ASCII byte (the buffer fits the longest text, so none is lost).
    fn push_byte(&mut self, byte: u8) {
        if let Some(slot) = self.text.get_mut(usize::from(self.len)) {
            *slot = byte;
            self.len += 1;
        }
    }
}

/// A number's decimal digits, worked out without the formatting machinery (rule rendering
/// writes several per endpoint).
pub struct Decimal {
    buffer: [u8; 10],
    start: usize,
}

impl Decimal {
    /// The digits of `value`.
    pub fn new(mut value: u32) -> Decimal {
        let mut buffer = [0u8; 10];
        let mut start = buffer.len();
        loop {
            start -= 1;
            buffer[start] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        Decimal { buffer, start }
    }

    /// The ASCII digits, most significant first.
    pub fn digits(&self) -> &[u8] {
        self.buffer.get(self.start..).unwrap_or_default()
    }
}

impl std::ops::Deref for HostPort {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for HostPort {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for HostPort {}

impl PartialOrd for HostPort {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HostPort {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_digits_match_display() {
        for value in [0, 7, 10, 255, 65535, u32::MAX] {
            assert_eq!(Decimal::new(value).digits(), value.to_string().as_bytes());
        }
    }

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

    #[test]
    fn host_port_writes_what_std_writes() {
        let cases: [(&str, u16); 6] = [
            ("0.0.0.0", 0),
            ("10.0.0.1", 8080),
            ("255.255.255.255", 65535),
            ("1.20.100.9", 7),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
            ("::ffff:255.255.255.255", 1),
        ];
        for (text, port) in cases {
            let ip: IpAddr = text.parse().expect("valid");
            let expected = std::net::SocketAddr::new(ip, port).to_string();
            assert_eq!(HostPort::new(&ip, port).as_str(), expected);
        }
    }

    #[test]
    fn host_ports_order_as_text() {
        let at = |text: &str, port| HostPort::new(&text.parse().expect("valid"), port);
        assert!(at("10.0.0.1", 80) < at("10.0.0.1", 8080));
        assert!(at("10.0.0.10", 80) < at("10.0.0.2", 80));
    }
}
