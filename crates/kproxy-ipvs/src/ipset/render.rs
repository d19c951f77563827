//! `ipset restore` text. Each set is refilled atomically: the wanted entries
//! go into a scratch set that is then swapped with the live one, so packets
//! never see a half-filled set.

use std::fmt::Write;

use super::{IpSet, SetType};

/// The scratch set each set is filled in before the swap.
pub const SWAP_SET: &str = "KPROXY-SWAP";

/// Text for `ipset restore`, one command a line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RestoreText(pub String);

impl RestoreText {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `ipset create` options after the name. Every set has the comment
/// extension: `create -exist` accepts an existing set only if its extensions
/// match, and the swap hands the scratch set's extensions to the live set.
fn create_options(set: &IpSet) -> String {
    let mut out = set.set_type.name().to_string();
    match set.set_type {
        SetType::BitmapPort => out.push_str(" range 0-65535"),
        _ => {
            let _ = write!(
                out,
                " family {} hashsize 1024 maxelem 65536",
                set.family.name()
            );
        }
    }
    out.push_str(" comment");
    out
}

/// A comment as ipset reads it: double-quoted, without quotes or control
/// characters, at most 255 bytes.
fn quote(comment: &str) -> String {
    let mut clean: String = comment
        .chars()
        .filter(|c| *c != '"' && !c.is_control())
        .collect();
    while clean.len() > 255 {
        clean.pop();
    }
    format!("\"{clean}\"")
}

/// Commands that make each of `sets` exist and hold exactly its entries.
///
/// A set that does not exist is created; one that exists must have the same
/// type, family and extensions (sets made by kube-proxy lack `comment`:
/// destroy them first). Sets not named are left alone.
pub fn render_sync(sets: &[IpSet]) -> RestoreText {
    let mut out = String::new();
    let _ = writeln!(out, "destroy {SWAP_SET} -exist");
    for set in sets {
        let _ = writeln!(out, "create {} {} -exist", set.name, create_options(set));
        let _ = writeln!(out, "create {SWAP_SET} {}", create_options(set));
        for (entry, comment) in set.members() {
            match comment {
                Some(c) => {
                    let _ = writeln!(out, "add {SWAP_SET} {entry} comment {}", quote(c));
                }
                None => {
                    let _ = writeln!(out, "add {SWAP_SET} {entry}");
                }
            }
        }
        let _ = writeln!(out, "swap {SWAP_SET} {}", set.name);
        let _ = writeln!(out, "destroy {SWAP_SET}");
    }
    RestoreText(out)
}

/// Commands that destroy the named sets; absent ones are fine. A set still
/// referenced by an iptables rule cannot be destroyed: remove the rules first.
pub fn render_destroy<S: AsRef<str>>(names: &[S]) -> RestoreText {
    let mut out = String::new();
    for name in names {
        let _ = writeln!(out, "destroy {} -exist", name.as_ref());
    }
    RestoreText(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipset::{Cidr, Entry, Family, KubeSet};
    use crate::types::Protocol;

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_cluster_ip_set_is_filled_in_a_scratch_set_and_swapped_in() {
        let mut set = KubeSet::ClusterIp.new_set(Family::Inet);
        set.add(Entry::IpPort(ip("10.96.0.10"), Protocol::Udp, 53), None)
            .unwrap();
        set.add(Entry::IpPort(ip("10.96.0.1"), Protocol::Tcp, 443), None)
            .unwrap();
        let mut ports = KubeSet::NodePortTcp.new_set(Family::Inet);
        ports.add(Entry::Port(30080), None).unwrap();
        assert_eq!(
            render_sync(&[set, ports]).as_str(),
            "destroy KPROXY-SWAP -exist\n\
             create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536 comment -exist\n\
             create KPROXY-SWAP hash:ip,port family inet hashsize 1024 maxelem 65536 comment\n\
             add KPROXY-SWAP 10.96.0.1,tcp:443\n\
             add KPROXY-SWAP 10.96.0.10,udp:53\n\
             swap KPROXY-SWAP KUBE-CLUSTER-IP\n\
             destroy KPROXY-SWAP\n\
             create KUBE-NODE-PORT-TCP bitmap:port range 0-65535 comment -exist\n\
             create KPROXY-SWAP bitmap:port range 0-65535 comment\n\
             add KPROXY-SWAP 30080\n\
             swap KPROXY-SWAP KUBE-NODE-PORT-TCP\n\
             destroy KPROXY-SWAP\n"
        );
    }

    #[test]
    fn ipv6_sets_with_comments_quote_them() {
        let mut set = KubeSet::LoadBalancerSourceCidr.new_set(Family::Inet6);
        let net = Cidr {
            addr: ip("2001:db8::"),
            prefix_len: 32,
        };
        set.add(
            Entry::IpPortNet(ip("10.0.0.1"), Protocol::Sctp, 80, net),
            None,
        )
        .unwrap_err();
        set.add(
            Entry::IpPortNet(ip("fd00::1"), Protocol::Sctp, 80, net),
            Some("ns/svc:\"http\"\n"),
        )
        .unwrap();
        let text = render_sync(&[set]);
        let lines: Vec<&str> = text.as_str().lines().collect();
        assert_eq!(lines[1], "create KUBE-6-LOAD-BALANCER-SOURCE-CID hash:ip,port,net family inet6 hashsize 1024 maxelem 65536 comment -exist");
        assert_eq!(
            lines[2],
            "create KPROXY-SWAP hash:ip,port,net family inet6 hashsize 1024 maxelem 65536 comment"
        );
        assert_eq!(
            lines[3],
            "add KPROXY-SWAP fd00::1,sctp:80,2001:db8::/32 comment \"ns/svc:http\""
        );
    }

    #[test]
    fn sets_refuse_entries_of_the_wrong_kind_or_family() {
        let mut lb = KubeSet::LoadBalancerSourceIp.new_set(Family::Inet);
        assert!(lb
            .add(
                Entry::IpPortIp(ip("1.2.3.4"), Protocol::Tcp, 80, ip("::1")),
                None
            )
            .is_err());
        assert!(lb
            .add(Entry::IpPort(ip("1.2.3.4"), Protocol::Tcp, 80), None)
            .is_err());
        lb.add(
            Entry::IpPortIp(ip("1.2.3.4"), Protocol::Tcp, 80, ip("1.2.3.4")),
            None,
        )
        .unwrap();
        let mut nets = crate::ipset::IpSet::new("NETS", SetType::HashNet, Family::Inet);
        assert!(nets
            .add(
                Entry::Net(Cidr {
                    addr: ip("10.0.0.0"),
                    prefix_len: 33
                }),
                None
            )
            .is_err());
        nets.add(
            Entry::Net(Cidr {
                addr: ip("10.0.0.0"),
                prefix_len: 8,
            }),
            None,
        )
        .unwrap();
        assert_eq!(lb.members().count() + nets.members().count(), 2);
    }

    #[test]
    fn destroy_tolerates_absent_sets() {
        assert_eq!(
            render_destroy(&["A", "B"]).as_str(),
            "destroy A -exist\ndestroy B -exist\n"
        );
    }
}
