//! Hand-made IPv4/UDP frames sent on a link with an `AF_PACKET` socket: the only way for a
//! neighbour to put a packet addressed to 127.0.0.1 on the wire (its own kernel would
//! deliver it to its own loopback).

use kproxy_lab::Netns;
use std::net::Ipv4Addr;

/// A MAC address.
pub type Mac = [u8; 6];

/// The MAC address of `link` in `netns` (from `ip link show`).
pub fn mac_of(netns: &Netns, link: &str) -> Mac {
    let text = netns.ip(&["link", "show", link]).expect("ip link show");
    let hex = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no MAC in {text}"));
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(hex.split(':')) {
        *byte = u8::from_str_radix(part, 16).expect("hex MAC");
    }
    mac
}

/// What to send.
#[derive(Debug, Clone, Copy)]
pub struct UdpFrame {
    /// Ethernet source.
    pub src_mac: Mac,
    /// Ethernet destination.
    pub dst_mac: Mac,
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// IPv4 destination.
    pub dst: Ipv4Addr,
    /// UDP source port.
    pub sport: u16,
    /// UDP destination port.
    pub dport: u16,
}

impl UdpFrame {
    /// The frame's bytes with `payload`; the UDP checksum is left 0 (allowed for IPv4).
    pub fn bytes(&self, payload: &[u8]) -> Vec<u8> {
        let udp_len = 8 + payload.len();
        let total = 20 + udp_len;
        let mut frame = Vec::with_capacity(14 + total);
        frame.extend_from_slice(&self.dst_mac);
        frame.extend_from_slice(&self.src_mac);
        frame.extend_from_slice(&0x0800u16.to_be_bytes());
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(total as u16).to_be_bytes());
        ip.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, 17, 0, 0]);
        ip.extend_from_slice(&self.src.octets());
        ip.extend_from_slice(&self.dst.octets());
        let checksum = ip_checksum(&ip);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&self.sport.to_be_bytes());
        frame.extend_from_slice(&self.dport.to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(payload);
        frame
    }

    /// Sends the frame with `payload` out of `link` in `netns`.
    pub fn send(&self, netns: &Netns, link: &str, payload: &[u8]) {
        let frame = self.bytes(payload);
        let dst_mac = self.dst_mac;
        let link = link.to_string();
        netns
            .enter(move || send_raw(&link, dst_mac, &frame))
            .expect("enter")
            .expect("send raw frame");
    }
}

fn ip_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn send_raw(link: &str, dst_mac: Mac, frame: &[u8]) -> std::io::Result<()> {
    let name = std::ffi::CString::new(link).map_err(std::io::Error::other)?;
    // SAFETY: if_nametoindex reads a NUL-terminated string we own.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a plain socket(2) call; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value to fill in.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_IP as u16).to_be();
    addr.sll_ifindex = index as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&dst_mac);
    // SAFETY: the buffer and address outlive the call; lengths are theirs.
    let sent = unsafe {
        libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    let error = std::io::Error::last_os_error();
    // SAFETY: closing the descriptor opened above.
    unsafe {
        libc::close(fd);
    }
    if sent < 0 {
        Err(error)
    } else {
        Ok(())
    }
}
