//! A packet tracer for the `kube-proxy` table: walks one new connection through the
//! prerouting hooks (firewall, then DNAT via the verdict maps), then input or forward
//! depending on whether the (translated) destination is local, following every `numgen`
//! branch. Reads command text or `nft list` output.

mod eval;
mod values;

use crate::nft::listing::parse_listing;
use crate::nft::{Family, Hook, RulesetState, TableState};
use eval::{eval_rule, verdict_action, Action, PacketState};
use std::net::IpAddr;

/// How deep jumps may nest before the tracer gives up (nft's own limit is 16).
const MAX_DEPTH: usize = 32;

/// A packet to trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// Destination port.
    pub dport: u16,
}

/// Where the packet ended up, as upstream's flow tests state it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceResult {
    /// Sorted DNAT destinations joined by `", "`, or `DROP`/`REJECT`, or `""`.
    pub output: String,
    /// Whether the masquerade mark was set.
    pub masq: bool,
}

/// Loads a ruleset from `add ...` command text or from `nft list` output.
pub fn load_ruleset(text: &str) -> Result<RulesetState, String> {
    let listing = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| l.starts_with("table "));
    if listing {
        parse_listing(text)
    } else {
        RulesetState::from_commands(text)
    }
}

/// Traces packets through one table.
#[derive(Debug, Clone)]
pub struct Tracer<'a> {
    table: &'a TableState,
    local_ips: Vec<IpAddr>,
    masquerade_mark: u64,
}

struct Walk<'a> {
    table: &'a TableState,
    packet: PacketState,
    outputs: Vec<String>,
    verdict: Option<&'static str>,
}

/// How a chain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Fell off the end or returned: the caller continues.
    Continue,
    /// A terminal verdict (accept, drop, reject, dnat): the hook is done.
    Stop,
}

impl<'a> Tracer<'a> {
    /// A tracer for `family table` of a ruleset.
    pub fn new(
        ruleset: &'a RulesetState,
        family: Family,
        table: &str,
        local_ips: Vec<IpAddr>,
    ) -> Result<Tracer<'a>, String> {
        let table = ruleset
            .table(family, table)
            .ok_or_else(|| format!("no table {family} {table}"))?;
        Ok(Tracer {
            table,
            local_ips,
            masquerade_mark: 0x4000,
        })
    }

    /// Sets the mark bit that means "masquerade" (default `0x4000`).
    pub fn with_masquerade_mark(mut self, mark: u64) -> Tracer<'a> {
        self.masquerade_mark = mark;
        self
    }

    /// Traces one packet.
    pub fn trace(&self, packet: &Packet) -> Result<TraceResult, String> {
        let mut walk = Walk {
            table: self.table,
            packet: PacketState {
                src: packet.src,
                dst: packet.dst,
                protocol: packet.protocol.clone(),
                dport: packet.dport,
                local_ips: self.local_ips.clone(),
                mark: 0,
            },
            outputs: Vec::new(),
            verdict: None,
        };
        self.run_hook(&mut walk, Hook::Prerouting)?;
        if walk.verdict.is_none() {
            if let Some(first) = walk.outputs.first() {
                walk.packet.dst = endpoint_ip(first)?;
            }
            let hook = if self.local_ips.contains(&walk.packet.dst) {
                Hook::Input
            } else {
                Hook::Forward
            };
            self.run_hook(&mut walk, hook)?;
        }
        let mut outputs = walk.outputs.clone();
        outputs.sort();
        outputs.dedup();
        if let Some(verdict) = walk.verdict {
            outputs.push(verdict.to_string());
        }
        Ok(TraceResult {
            output: outputs.join(", "),
            masq: walk.packet.mark & self.masquerade_mark != 0,
        })
    }

    fn run_hook(&self, walk: &mut Walk<'_>, hook: Hook) -> Result<(), String> {
        let mut chains: Vec<(&String, i32)> = self
            .table
            .chains
            .iter()
            .filter_map(|(name, c)| {
                c.chain
                    .base
                    .filter(|b| b.hook == hook)
                    .map(|b| (name, b.priority))
            })
            .collect();
        chains.sort_by_key(|(_, priority)| *priority);
        for (name, _) in chains {
            walk.run_chain(name, 0)?;
            if walk.verdict.is_some() {
                break;
            }
        }
        Ok(())
    }
}

impl Walk<'_> {
    fn run_chain(&mut self, name: &str, depth: usize) -> Result<End, String> {
        if depth > MAX_DEPTH {
            return Err(format!("jumps nest deeper than {MAX_DEPTH} at {name}"));
        }
        let table = self.table;
        let chain = table
            .chains
            .get(name)
            .ok_or_else(|| format!("unknown chain {name:?}"))?;
        for rule in &chain.rules {
            let action = eval_rule(&rule.body, table, &mut self.packet)
                .map_err(|e| format!("chain {name}: rule {:?}: {e}", rule.body))?;
            match self.act(action, depth)? {
                Some(end) => return Ok(end),
                None => continue,
            }
        }
        Ok(End::Continue)
    }

    /// Performs an action; `Some(end)` ends the current chain.
    fn act(&mut self, action: Action, depth: usize) -> Result<Option<End>, String> {
        Ok(match action {
            Action::Next => None,
            Action::Jump(target) => match self.run_chain(&target, depth + 1)? {
                End::Stop => Some(End::Stop),
                End::Continue => None,
            },
            Action::Goto(target) => Some(self.run_chain(&target, depth + 1)?),
            Action::Return => Some(End::Continue),
            Action::Accept => Some(End::Stop),
            Action::Drop => {
                self.verdict = Some("DROP");
                Some(End::Stop)
            }
            Action::Reject => {
                self.verdict = Some("REJECT");
                Some(End::Stop)
            }
            Action::Dnat(target) => {
                self.outputs.push(target);
                Some(End::Stop)
            }
            Action::Branches(verdicts) => {
                let mut stopped = false;
                for verdict in verdicts {
                    let action = verdict_action(&verdict)?;
                    stopped |= self.act(action, depth)? == Some(End::Stop);
                }
                Some(if stopped { End::Stop } else { End::Continue })
            }
        })
    }
}

fn endpoint_ip(endpoint: &str) -> Result<IpAddr, String> {
    let host = match endpoint.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !port.is_empty() => host,
        _ => endpoint,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| format!("bad DNAT destination {endpoint:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = "add table ip t\n\
add chain ip t pre { type nat hook prerouting priority -100 ; }\n\
add chain ip t svc\n\
add chain ip t ep1\n\
add chain ip t ep2\n\
add chain ip t masq\n\
add map ip t vips { type ipv4_addr . inet_proto . inet_service : verdict ; }\n\
add rule ip t masq mark set mark or 0x4000\n\
add rule ip t ep1 meta l4proto tcp dnat to 10.0.0.1:80\n\
add rule ip t ep2 ip saddr 10.0.0.2 jump masq\n\
add rule ip t ep2 meta l4proto tcp dnat to 10.0.0.2:80\n\
add rule ip t svc numgen random mod 2 vmap { 0 : goto ep1 , 1 : goto ep2 }\n\
add rule ip t pre ip daddr . meta l4proto . th dport vmap @vips\n\
add element ip t vips { 172.30.0.1 . tcp . 80 : goto svc }\n";

    fn run(src: &str, dst: &str, port: u16) -> TraceResult {
        let ruleset = load_ruleset(RULES).expect("loads");
        let tracer = Tracer::new(&ruleset, Family::Ip, "t", vec![]).expect("table");
        tracer
            .trace(&Packet {
                src: src.parse().expect("ip"),
                dst: dst.parse().expect("ip"),
                protocol: "tcp".into(),
                dport: port,
            })
            .expect("traces")
    }

    #[test]
    fn follows_every_numgen_branch() {
        let r = run("10.0.0.9", "172.30.0.1", 80);
        assert_eq!(r.output, "10.0.0.1:80, 10.0.0.2:80");
        assert!(!r.masq);
        assert!(run("10.0.0.2", "172.30.0.1", 80).masq);
        assert_eq!(run("10.0.0.9", "172.30.0.1", 81).output, "");
    }
}
