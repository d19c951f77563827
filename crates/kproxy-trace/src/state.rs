//! The tracer's view of one branch of the packet while it is being walked.

use crate::matches::ct_state;
use crate::packet::{Packet, Protocol};
use crate::ruleset::TableKind;
use crate::trace::{Branch, Fate, Step, StepKind};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// One branch in flight: the packet as rewritten so far, its marks and conntrack facts.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: Protocol,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub in_iface: Option<String>,
    pub out_iface: Option<String>,
    pub mark: u32,
    pub ctmark: u32,
    pub untracked: bool,
    /// The nat table already chose the destination binding (PREROUTING/OUTPUT ran).
    pub dst_nat_done: bool,
    /// The nat table already chose the source binding (POSTROUTING/INPUT ran).
    pub src_nat_done: bool,
    pub dnat: Option<String>,
    pub snat: Option<String>,
    pub masquerade: bool,
    pub accepted: bool,
    pub recent: BTreeSet<String>,
    pub recent_set: Vec<String>,
    pub probability: f64,
    pub assumptions: Vec<String>,
    pub steps: Vec<Step>,
}

impl State {
    /// The state of a packet before any hook, with the client in the given `recent` lists.
    pub fn new(packet: &Packet, recent: BTreeSet<String>) -> State {
        State {
            src: packet.src,
            dst: packet.dst,
            protocol: packet.protocol,
            sport: packet.sport,
            dport: packet.dport,
            in_iface: packet.in_iface.clone(),
            out_iface: packet.out_iface.clone(),
            mark: packet.mark,
            ctmark: 0,
            untracked: false,
            dst_nat_done: false,
            src_nat_done: false,
            dnat: None,
            snat: None,
            masquerade: false,
            accepted: false,
            recent,
            recent_set: Vec::new(),
            probability: 1.0,
            assumptions: Vec::new(),
            steps: Vec::new(),
        }
    }

    /// The conntrack state bits `--ctstate` sees.
    pub fn ct_states(&self) -> u8 {
        if self.untracked {
            return ct_state::UNTRACKED;
        }
        let mut bits = ct_state::NEW;
        if self.dnat.is_some() {
            bits |= ct_state::DNAT;
        }
        if self.masquerade {
            bits |= ct_state::SNAT;
        }
        bits
    }

    /// Records a step.
    pub fn step(&mut self, depth: usize, table: TableKind, chain: &str, kind: StepKind) {
        self.steps.push(Step {
            depth,
            table,
            chain: chain.to_string(),
            kind,
        });
    }

    /// Records something the tracer assumed, both as a step and in the branch summary.
    pub fn assume(&mut self, depth: usize, table: TableKind, chain: &str, text: String) {
        self.assumptions.push(text.clone());
        self.step(depth, table, chain, StepKind::Assumption { text });
    }

    /// Rewrites the destination as DNAT does.
    pub fn apply_dnat(&mut self, to: &str) {
        if let Some((ip, port)) = parse_nat_address(to) {
            self.dst = ip;
            if port.is_some() {
                self.dport = port;
            }
        }
        self.dnat = Some(to.to_string());
    }

    /// Ends the walk of this branch.
    pub fn finish(self, fate: Fate) -> Branch {
        Branch {
            probability: self.probability,
            fate,
            dnat: self.dnat,
            masquerade: self.masquerade,
            snat: self.snat,
            accepted: self.accepted,
            recent_set: self.recent_set,
            assumptions: self.assumptions,
            steps: self.steps,
        }
    }
}

/// Reads the first address and port of a NAT range: `10.0.0.1`, `10.0.0.1:80`,
/// `10.0.0.1-10.0.0.9:80-90`, `[fd00::1]:80`, `fd00::1`.
pub(crate) fn parse_nat_address(text: &str) -> Option<(IpAddr, Option<u16>)> {
    let first_port = |p: &str| p.split('-').next().and_then(|p| p.parse().ok());
    if let Some(rest) = text.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        let ip = addr.split('-').next()?.parse().ok()?;
        return Some((ip, after.strip_prefix(':').and_then(first_port)));
    }
    if let Ok(ip) = text.parse() {
        return Some((ip, None));
    }
    let (addr, port) = text.rsplit_once(':')?;
    let ip = addr.split('-').next()?.parse().ok()?;
    Some((ip, first_port(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_addresses() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(parse_nat_address("10.0.0.1"), Some((v4, None)));
        assert_eq!(parse_nat_address("10.0.0.1:80"), Some((v4, Some(80))));
        assert_eq!(
            parse_nat_address("10.0.0.1-10.0.0.9:80-90"),
            Some((v4, Some(80)))
        );
        assert_eq!(parse_nat_address("[fd00::1]:80"), Some((v6, Some(80))));
        assert_eq!(parse_nat_address("fd00::1"), Some((v6, None)));
    }
}
