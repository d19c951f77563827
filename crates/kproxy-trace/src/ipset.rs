//! ipset contents for the `set` match, given by the caller.

use crate::addr::IpNet;
use crate::matches::{Direction, PacketView};
use crate::packet::Protocol;
use std::collections::HashMap;

/// One part of an ipset member (`10.0.0.0/24`, `tcp:80`, `80`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Element {
    Net(IpNet),
    Port(Option<Protocol>, u16),
}

/// The text was not an ipset member kproxy understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ipset {set}: cannot read member {member:?} (expected ADDR[/LEN][,[PROTO:]PORT][,ADDR])")]
pub struct InvalidMember {
    /// The set's name.
    pub set: String,
    /// The member text.
    pub member: String,
}

/// Named ipsets and their members, as `ipset list` would show them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IpSets {
    sets: HashMap<String, Vec<Vec<Element>>>,
}

impl IpSets {
    /// Adds a set with members written as ipset prints them: `ADDR[/LEN]`, optionally
    /// followed by `,PROTO:PORT` or `,PORT` and further addresses (`hash:ip,port,ip`).
    pub fn insert<S: AsRef<str>>(
        &mut self,
        name: &str,
        members: &[S],
    ) -> Result<(), InvalidMember> {
        let parsed = members
            .iter()
            .map(|m| {
                parse_member(m.as_ref()).ok_or_else(|| InvalidMember {
                    set: name.to_string(),
                    member: m.as_ref().to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.sets.insert(name.to_string(), parsed);
        Ok(())
    }

    /// Whether the packet is in set `name` looking at the given dimensions;
    /// `None` if the set is not known.
    pub(crate) fn contains(
        &self,
        name: &str,
        directions: &[Direction],
        p: &PacketView<'_>,
    ) -> Option<bool> {
        let members = self.sets.get(name)?;
        Some(members.iter().any(|member| {
            member
                .iter()
                .zip(directions)
                .all(|(element, direction)| element_matches(element, *direction, p))
        }))
    }
}

fn element_matches(element: &Element, direction: Direction, p: &PacketView<'_>) -> bool {
    match element {
        Element::Net(net) => net.contains(match direction {
            Direction::Source => p.src,
            Direction::Destination => p.dst,
        }),
        Element::Port(protocol, port) => {
            let actual = match direction {
                Direction::Source => p.sport,
                Direction::Destination => p.dport,
            };
            protocol.is_none_or(|proto| proto == p.protocol) && actual == Some(*port)
        }
    }
}

fn parse_member(text: &str) -> Option<Vec<Element>> {
    text.split(',').map(parse_element).collect()
}

fn parse_element(text: &str) -> Option<Element> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Some(Element::Net(net));
    }
    match text.split_once(':') {
        Some((proto, port)) => Some(Element::Port(Some(proto.parse().ok()?), port.parse().ok()?)),
        None => Some(Element::Port(None, text.parse().ok()?)),
    }
}
