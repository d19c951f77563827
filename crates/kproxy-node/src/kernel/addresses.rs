//! The host's interface addresses (for `--nodeport-addresses` CIDRs), from `ip -o addr`.

use super::exec::{find_tool, run_tool};
use std::net::IpAddr;
use std::time::Duration;

/// Addresses in `ip -o addr show` output, in its order (loopback first).
pub fn parse_ip_addr_output(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet" || *w == "inet6")?;
            let cidr = words.next()?;
            cidr.split('/').next()?.parse().ok()
        })
        .collect()
}

/// The host's addresses; empty (with the reason) when `ip` cannot be run.
pub fn host_addresses() -> Result<Vec<IpAddr>, String> {
    let ip = find_tool("ip").ok_or("the ip tool is not installed")?;
    let args = ["-o", "addr", "show"].map(String::from);
    let output = run_tool(&ip, &args, None, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    if !output.success() {
        return Err(format!("ip -o addr show: {}", output.stderr.trim()));
    }
    Ok(parse_ip_addr_output(&output.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ip_o_addr() {
        let text = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet6 ::1/128 scope host noprefixroute \\       valid_lft forever preferred_lft forever
2: eth0    inet 192.168.50.10/24 brd 192.168.50.255 scope global eth0\\       valid_lft forever
2: eth0    inet6 fd00:50::10/64 scope global \\       valid_lft forever preferred_lft forever
";
        let ips: Vec<String> = parse_ip_addr_output(text)
            .iter()
            .map(|ip| ip.to_string())
            .collect();
        assert_eq!(ips, ["127.0.0.1", "::1", "192.168.50.10", "fd00:50::10"]);
    }
}
