//! Netfilter for one packet: hooks in kernel order, tables in priority order, chains
//! walked rule by rule, every uncertain match explored both ways.

use crate::builtin_jumps::{kube_proxy_jumps, AddedJumps};
use crate::ipset::IpSets;
use crate::matches::{Decision, Match, PacketView, RecentAction};
use crate::packet::Packet;
use crate::ruleset::{Policy, Rule, Ruleset, TableKind};
use crate::state::{parse_nat_address, State};
use crate::targets::{ConnmarkOp, Target};
use crate::trace::{Fate, Hook, RepeatTrace, StepKind, Trace};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Jumps nested deeper than this end the branch (iptables itself refuses loops).
const MAX_DEPTH: usize = 64;
/// Undecidable matches stop forking once this many branches exist.
const MAX_FORKS: usize = 256;

/// How a chain walk ended for one branch.
enum End {
    /// Fell off the end or hit RETURN: back to the caller (or the policy).
    Continue,
    /// ACCEPT, or a NAT target: this table is done with the packet.
    Accept,
    /// DROP by the rule with this text.
    Drop(String),
    /// REJECT by the rule with this text.
    Reject(String),
    /// The trace cannot follow the packet further.
    Stop(String),
}

/// A chain being walked: where it is and how deep.
#[derive(Clone, Copy)]
struct Place<'a> {
    table: TableKind,
    chain: &'a str,
    depth: usize,
}

/// Traces packets through one ruleset for a node with the given local addresses.
pub struct Tracer<'r> {
    ruleset: &'r Ruleset,
    local_ips: Vec<IpAddr>,
    ipsets: IpSets,
    added: AddedJumps,
    forks: Cell<usize>,
}

impl<'r> Tracer<'r> {
    /// A tracer for `ruleset` on a node owning `local_ips` (loopback addresses are always
    /// local). If the ruleset is kube-proxy restore text without its built-in jumps, the
    /// tracer adds them and says so in every trace's notes.
    pub fn new(ruleset: &'r Ruleset, local_ips: &[IpAddr]) -> Tracer<'r> {
        Tracer {
            ruleset,
            local_ips: local_ips.to_vec(),
            ipsets: IpSets::default(),
            added: kube_proxy_jumps(ruleset),
            forks: Cell::new(0),
        }
    }

    /// Uses these ipset contents for `-m set` matches (unknown sets stay undecidable).
    pub fn with_ipsets(mut self, ipsets: IpSets) -> Tracer<'r> {
        self.ipsets = ipsets;
        self
    }

    /// Whether `ip` is an address of this node.
    pub fn is_local(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.local_ips.contains(&ip)
    }

    /// Traces the first packet of a new connection, then, if it put the client in
    /// `recent` lists (session affinity), a packet of a later connection from that client.
    pub fn trace(&self, packet: &Packet) -> Trace {
        self.forks.set(0);
        let branches = self.walk(packet, State::new(packet, BTreeSet::new()));
        let affinity: BTreeSet<BTreeSet<String>> = branches
            .iter()
            .filter(|b| !b.recent_set.is_empty())
            .map(|b| b.recent_set.iter().cloned().collect())
            .collect();
        let repeat = affinity
            .into_iter()
            .map(|recent| RepeatTrace {
                recent: recent.iter().cloned().collect(),
                branches: self.walk(packet, State::new(packet, recent)),
            })
            .collect();
        let mut notes = self.added.notes.clone();
        if self.forks.get() >= MAX_FORKS {
            notes.push(format!(
                "more than {MAX_FORKS} undecidable branches: later ones were assumed not to match"
            ));
        }
        Trace {
            packet: packet.clone(),
            branches,
            repeat,
            notes,
        }
    }

    /// Runs the hooks in kernel order for a packet from outside or from the node itself.
    fn walk(&self, packet: &Packet, start: State) -> Vec<crate::trace::Branch> {
        use TableKind::{Filter, Mangle, Nat, Raw};
        let mut done = Vec::new();
        if self.is_local(packet.src) {
            let sent = self.run_hook(
                Hook::Output,
                &[Raw, Mangle, Nat, Filter],
                vec![start],
                &mut done,
            );
            let (to_self, away): (Vec<_>, Vec<_>) =
                sent.into_iter().partition(|s| self.is_local(s.dst));
            let away = self.run_hook(Hook::Postrouting, &[Mangle, Nat], away, &mut done);
            done.extend(away.into_iter().map(|s| (s, Fate::Leaves)));
            let looped = to_self.into_iter().map(|mut s| {
                s.out_iface = Some("lo".to_string());
                s
            });
            let looped = self.run_hook(
                Hook::Postrouting,
                &[Mangle, Nat],
                looped.collect(),
                &mut done,
            );
            let looped = looped.into_iter().map(|mut s| {
                s.in_iface = Some("lo".to_string());
                s.out_iface = None;
                s
            });
            let looped = self.run_hook(
                Hook::Prerouting,
                &[Raw, Mangle, Nat],
                looped.collect(),
                &mut done,
            );
            let delivered = self.run_hook(Hook::Input, &[Mangle, Filter, Nat], looped, &mut done);
            done.extend(delivered.into_iter().map(|s| (s, Fate::Delivered)));
        } else {
            let routed = self.run_hook(
                Hook::Prerouting,
                &[Raw, Mangle, Nat],
                vec![start],
                &mut done,
            );
            let (to_self, through): (Vec<_>, Vec<_>) =
                routed.into_iter().partition(|s| self.is_local(s.dst));
            let delivered = self.run_hook(Hook::Input, &[Mangle, Filter, Nat], to_self, &mut done);
            done.extend(delivered.into_iter().map(|s| (s, Fate::Delivered)));
            let through = self.run_hook(Hook::Forward, &[Mangle, Filter], through, &mut done);
            let through = self.run_hook(Hook::Postrouting, &[Mangle, Nat], through, &mut done);
            done.extend(through.into_iter().map(|s| (s, Fate::Leaves)));
        }
        done.into_iter().map(|(s, fate)| s.finish(fate)).collect()
    }

    /// Runs one hook's built-in chains, table by table. Returns the branches that pass;
    /// the ones that end here go to `done`.
    fn run_hook(
        &self,
        hook: Hook,
        tables: &[TableKind],
        states: Vec<State>,
        done: &mut Vec<(State, Fate)>,
    ) -> Vec<State> {
        let mut live = states;
        for &table in tables {
            let chain = self.ruleset.chain(table, hook.chain());
            let added = self.added.for_chain(table, hook.chain());
            let idle = chain.is_none_or(|c| c.rules.is_empty() && c.policy != Some(Policy::Drop));
            if idle && added.is_empty() {
                continue;
            }
            let rules = chain.map_or(&[][..], |c| c.rules.as_slice());
            let policy = chain.and_then(|c| c.policy).unwrap_or(Policy::Accept);
            let place = Place {
                table,
                chain: hook.chain(),
                depth: 0,
            };
            let mut next = Vec::with_capacity(live.len());
            for mut state in live {
                if table == TableKind::Nat && !self.nat_applies(hook, &mut state) {
                    next.push(state);
                    continue;
                }
                state.step(0, table, hook.chain(), StepKind::Hook { hook });
                for (state, end) in self.run_rules(place, &[added, rules], vec![state]) {
                    self.end_hook(place, policy, state, end, &mut next, done);
                }
            }
            live = next;
        }
        live
    }

    /// Whether the nat table is consulted for this branch at `hook`; marks the NAT
    /// binding as chosen, since the kernel consults nat once per connection and direction.
    fn nat_applies(&self, hook: Hook, state: &mut State) -> bool {
        if state.untracked {
            return false;
        }
        let done = match hook {
            Hook::Prerouting | Hook::Output => &mut state.dst_nat_done,
            Hook::Postrouting | Hook::Input => &mut state.src_nat_done,
            Hook::Forward => return false,
        };
        !std::mem::replace(done, true)
    }

    fn end_hook(
        &self,
        place: Place<'_>,
        policy: Policy,
        mut state: State,
        end: End,
        next: &mut Vec<State>,
        done: &mut Vec<(State, Fate)>,
    ) {
        match end {
            End::Continue if policy == Policy::Drop => {
                let name = format!("{} {}", place.table, place.chain);
                state.step(
                    0,
                    place.table,
                    place.chain,
                    StepKind::Policy {
                        policy: "DROP".into(),
                    },
                );
                done.push((
                    state,
                    Fate::Dropped {
                        by: format!("policy of {name}"),
                    },
                ));
            }
            End::Continue | End::Accept => next.push(state),
            End::Drop(by) => done.push((state, Fate::Dropped { by })),
            End::Reject(by) => done.push((state, Fate::Rejected { by })),
            End::Stop(reason) => done.push((state, Fate::Stopped { reason })),
        }
    }

    /// Walks rules (given as consecutive slices) for a set of branches.
    fn run_rules(
        &self,
        place: Place<'_>,
        slices: &[&[Rule]],
        states: Vec<State>,
    ) -> Vec<(State, End)> {
        let mut ended = Vec::new();
        if place.depth > MAX_DEPTH {
            ended.extend(
                states
                    .into_iter()
                    .map(|s| (s, End::Stop("jumps nested too deeply".into()))),
            );
            return ended;
        }
        let mut live = states;
        let mut next = Vec::with_capacity(live.len());
        let mut judged = Vec::with_capacity(2);
        let added_count = slices.first().map_or(0, |s| s.len());
        for (index, rule) in slices.iter().flat_map(|s| s.iter()).enumerate() {
            if live.is_empty() {
                break;
            }
            let added = slices.len() > 1 && index < added_count;
            for state in live.drain(..) {
                self.judge(place, rule, state, &mut judged);
                for (mut state, matched, chance) in judged.drain(..) {
                    if !matched {
                        next.push(state);
                        continue;
                    }
                    state.step(
                        place.depth,
                        place.table,
                        place.chain,
                        StepKind::Rule {
                            line: rule.line,
                            text: rule.text().to_string(),
                            added,
                            chance: (chance < 1.0).then_some(chance),
                        },
                    );
                    self.apply(place, rule, state, &mut next, &mut ended);
                }
            }
            std::mem::swap(&mut live, &mut next);
        }
        ended.extend(live.into_iter().map(|s| (s, End::Continue)));
        ended
    }

    /// Decides whether `rule` matches; splits the branch where the answer is a
    /// probability or unknown. Pushes `(state, matched, chance)` to `out`.
    fn judge(
        &self,
        place: Place<'_>,
        rule: &Rule,
        state: State,
        out: &mut Vec<(State, bool, f64)>,
    ) {
        let mut open: Vec<(&Match, Decision)> = Vec::new();
        {
            let local = |ip| self.is_local(ip);
            let view = PacketView {
                src: state.src,
                dst: state.dst,
                protocol: state.protocol,
                sport: state.sport,
                dport: state.dport,
                in_iface: state.in_iface.as_deref(),
                out_iface: state.out_iface.as_deref(),
                mark: state.mark,
                ctmark: state.ctmark,
                ct_states: state.ct_states(),
                local: &local,
                recent: &state.recent,
                ipsets: &self.ipsets,
            };
            for m in rule.matches() {
                match m.decide(&view) {
                    Decision::Yes => {}
                    Decision::No => {
                        out.push((state, false, 1.0));
                        return;
                    }
                    open_decision => open.push((m, open_decision)),
                }
            }
        }
        let mut partial = vec![(state, 1.0)];
        for (_, decision) in open {
            let mut matched = Vec::with_capacity(partial.len());
            for (state, chance) in partial {
                self.fork(place, rule, &decision, state, chance, &mut matched, out);
            }
            partial = matched;
        }
        out.extend(partial.into_iter().map(|(s, chance)| (s, true, chance)));
    }

    /// Splits one branch on an open decision: the matching part goes on in `matched`,
    /// the other part is finished for this rule in `out`.
    #[allow(clippy::too_many_arguments)]
    fn fork(
        &self,
        place: Place<'_>,
        rule: &Rule,
        decision: &Decision,
        mut state: State,
        chance: f64,
        matched: &mut Vec<(State, f64)>,
        out: &mut Vec<(State, bool, f64)>,
    ) {
        match decision {
            Decision::Probability(p) => {
                if *p > 0.0 {
                    let mut taken = state.clone();
                    taken.probability *= p;
                    matched.push((taken, chance * p));
                }
                if *p < 1.0 {
                    state.probability *= 1.0 - p;
                    out.push((state, false, 1.0));
                }
            }
            Decision::Unknown(reason) => {
                let where_ = format!("line {}", rule.line);
                if self.forks.get() < MAX_FORKS {
                    self.forks.set(self.forks.get() + 1);
                    let mut taken = state.clone();
                    taken.assume(
                        place.depth,
                        place.table,
                        place.chain,
                        format!("{where_}: {reason}; assumed to match"),
                    );
                    matched.push((taken, chance));
                }
                state.assume(
                    place.depth,
                    place.table,
                    place.chain,
                    format!("{where_}: {reason}; assumed not to match"),
                );
                out.push((state, false, 1.0));
            }
            Decision::Yes => matched.push((state, chance)),
            Decision::No => out.push((state, false, 1.0)),
        }
    }

    /// Applies a matched rule's side effects and target.
    fn apply(
        &self,
        place: Place<'_>,
        rule: &Rule,
        mut state: State,
        next: &mut Vec<State>,
        ended: &mut Vec<(State, End)>,
    ) {
        record_recent(rule, &mut state);
        let text = || rule.text().to_string();
        match &rule.target {
            Target::None | Target::Passive { .. } => next.push(state),
            Target::Jump(name) | Target::Goto(name)
                if self.ruleset.chain(place.table, name).is_none() =>
            {
                state.assume(
                    place.depth,
                    place.table,
                    place.chain,
                    format!(
                        "line {}: {name} is neither a known target nor a chain; assumed to continue",
                        rule.line
                    ),
                );
                next.push(state);
            }
            Target::Jump(name) | Target::Goto(name) => {
                let is_goto = matches!(rule.target, Target::Goto(_));
                let inner = Place {
                    table: place.table,
                    chain: name,
                    depth: place.depth + 1,
                };
                state.step(inner.depth, inner.table, name, StepKind::Chain);
                let rules = self
                    .ruleset
                    .chain(place.table, name)
                    .map_or(&[][..], |c| c.rules.as_slice());
                for (state, end) in self.run_rules(inner, &[rules], vec![state]) {
                    match end {
                        End::Continue if is_goto => ended.push((state, End::Continue)),
                        End::Continue => next.push(state),
                        other => ended.push((state, other)),
                    }
                }
            }
            Target::Return => ended.push((state, End::Continue)),
            Target::Accept => {
                state.accepted |= place.table == TableKind::Filter;
                ended.push((state, End::Accept));
            }
            Target::Drop => ended.push((state, End::Drop(text()))),
            Target::Reject { .. } => ended.push((state, End::Reject(text()))),
            Target::Dnat { to } => {
                state.apply_dnat(to);
                ended.push((state, End::Accept));
            }
            Target::Redirect { to_ports } => {
                let ip = self.redirect_address(&state);
                let port = to_ports
                    .as_deref()
                    .and_then(|p| p.split('-').next())
                    .and_then(|p| p.parse::<u16>().ok())
                    .or(state.dport);
                let to = match (ip, port) {
                    (IpAddr::V6(v6), Some(port)) => format!("[{v6}]:{port}"),
                    (ip, Some(port)) => format!("{ip}:{port}"),
                    (ip, None) => ip.to_string(),
                };
                state.apply_dnat(&to);
                ended.push((state, End::Accept));
            }
            Target::Snat { to } => {
                if let Some((ip, _)) = parse_nat_address(to) {
                    state.src = ip;
                }
                state.snat = Some(to.to_string());
                state.masquerade = true;
                ended.push((state, End::Accept));
            }
            Target::Masquerade { .. } => {
                state.masquerade = true;
                ended.push((state, End::Accept));
            }
            Target::Mark(op) => {
                state.mark = op.apply(state.mark);
                next.push(state);
            }
            Target::Connmark(op) => {
                match *op {
                    ConnmarkOp::Change(op) => state.ctmark = op.apply(state.ctmark),
                    ConnmarkOp::Save { nfmask, ctmask } => {
                        state.ctmark = (state.ctmark & !ctmask) ^ (state.mark & nfmask)
                    }
                    ConnmarkOp::Restore { nfmask, ctmask } => {
                        state.mark = (state.mark & !nfmask) ^ (state.ctmark & ctmask)
                    }
                }
                next.push(state);
            }
            Target::NoTrack => {
                state.untracked = true;
                next.push(state);
            }
            Target::Handoff { name } => ended.push((
                state,
                End::Stop(format!("handed to {name} by line {}", rule.line)),
            )),
            Target::Unknown { name, .. } => {
                state.assume(
                    place.depth,
                    place.table,
                    place.chain,
                    format!(
                        "line {}: target {name} is not understood; assumed to continue",
                        rule.line
                    ),
                );
                next.push(state);
            }
        }
    }

    /// Where REDIRECT sends a packet: loopback for the node's own packets, else the
    /// node's first address of the family.
    fn redirect_address(&self, state: &State) -> IpAddr {
        let loopback = if state.dst.is_ipv4() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        };
        if self.is_local(state.src) {
            return loopback;
        }
        self.local_ips
            .iter()
            .copied()
            .find(|ip| ip.is_ipv4() == state.dst.is_ipv4() && !ip.is_loopback())
            .unwrap_or(loopback)
    }
}

/// Applies `recent --set/--remove` of a matched rule.
fn record_recent(rule: &Rule, state: &mut State) {
    for m in rule.matches() {
        if let Match::Recent {
            name,
            action,
            negated: false,
        } = m
        {
            match action {
                RecentAction::Set => {
                    if state.recent.insert(name.to_string()) {
                        state.recent_set.push(name.to_string());
                    }
                }
                RecentAction::Remove => {
                    state.recent.remove(&**name);
                }
                RecentAction::Check => {}
            }
        }
    }
}
