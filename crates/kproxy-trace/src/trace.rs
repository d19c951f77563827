//! The result of tracing one packet: every branch it may take, with its path and fate.

use crate::packet::Packet;
use crate::ruleset::TableKind;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt;

/// A netfilter hook, in kernel terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Hook {
    /// Packets arriving, before routing.
    Prerouting,
    /// Packets for a local process.
    Input,
    /// Packets routed through the node.
    Forward,
    /// Packets sent by a local process.
    Output,
    /// Packets leaving, after routing.
    Postrouting,
}

impl Hook {
    /// The built-in chain name of this hook.
    pub fn chain(self) -> &'static str {
        match self {
            Hook::Prerouting => "PREROUTING",
            Hook::Input => "INPUT",
            Hook::Forward => "FORWARD",
            Hook::Output => "OUTPUT",
            Hook::Postrouting => "POSTROUTING",
        }
    }
}

/// What one step of the path records.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepKind {
    /// The packet enters a table's built-in chain for a hook.
    Hook {
        /// The hook.
        hook: Hook,
    },
    /// The packet enters a user chain by a jump or goto.
    Chain,
    /// A rule matched.
    Rule {
        /// The rule's line in the ruleset text (0 for rules the tracer added).
        line: usize,
        /// The rule as written.
        text: String,
        /// Whether the tracer added the rule (kube-proxy's built-in jumps).
        added: bool,
        /// The probability that this rule matched, when it is below 1 (`statistic`).
        #[serde(skip_serializing_if = "Option::is_none")]
        chance: Option<f64>,
    },
    /// The packet fell off the end of a built-in chain and its policy applied.
    Policy {
        /// `ACCEPT` or `DROP`.
        policy: String,
    },
    /// Something the tracer could not decide, and what it assumed.
    Assumption {
        /// The explanation.
        text: String,
    },
}

/// One step of a branch's path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Nesting depth: 0 for a hook's built-in chain, +1 per jump.
    pub depth: usize,
    /// The table.
    pub table: TableKind,
    /// The chain the step happens in.
    pub chain: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: StepKind,
}

/// Where a branch ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fate", rename_all = "snake_case")]
pub enum Fate {
    /// Delivered to a process on the node.
    Delivered,
    /// Sent out of the node (forwarded, or sent by a local process).
    Leaves,
    /// Dropped.
    Dropped {
        /// The rule, or the chain whose policy dropped it.
        by: String,
    },
    /// Rejected with an error sent back.
    Rejected {
        /// The rule.
        by: String,
    },
    /// Handed to another subsystem (`NFQUEUE`, `TPROXY`) or cut short; the trace stops.
    Stopped {
        /// Why.
        reason: String,
    },
}

/// One way the packet can go, with its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Branch {
    /// The probability of this branch (statistic matches split it).
    pub probability: f64,
    /// How it ends.
    #[serde(flatten)]
    pub fate: Fate,
    /// The DNAT destination (`--to-destination` as written), if any.
    pub dnat: Option<String>,
    /// Whether the source address was rewritten (MASQUERADE or SNAT).
    pub masquerade: bool,
    /// The SNAT `--to-source`, if SNAT rather than MASQUERADE rewrote the source.
    pub snat: Option<String>,
    /// Whether a filter-table rule explicitly accepted the packet.
    pub accepted: bool,
    /// The `recent` lists the client was added to (session affinity).
    pub recent_set: Vec<String>,
    /// What the tracer assumed where it could not decide.
    pub assumptions: Vec<String>,
    /// The rules and chains on the way.
    pub steps: Vec<Step>,
}

impl Branch {
    /// The branch's part of the upstream-style output: the DNAT destination, `DROP`,
    /// `REJECT`, `ACCEPT` (accepted by a filter rule without DNAT), or nothing.
    pub fn output_word(&self) -> Option<String> {
        match &self.fate {
            Fate::Dropped { .. } => Some("DROP".to_string()),
            Fate::Rejected { .. } => Some("REJECT".to_string()),
            _ => match &self.dnat {
                Some(dest) => Some(dest.clone()),
                None if self.accepted => Some("ACCEPT".to_string()),
                None => None,
            },
        }
    }
}

impl fmt::Display for Fate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fate::Delivered => f.write_str("delivered locally"),
            Fate::Leaves => f.write_str("leaves the node"),
            Fate::Dropped { by } => write!(f, "DROP by {by}"),
            Fate::Rejected { by } => write!(f, "REJECT by {by}"),
            Fate::Stopped { reason } => write!(f, "stopped: {reason}"),
        }
    }
}

/// What a repeat packet from the same client does once affinity (`recent`) lists hold it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepeatTrace {
    /// The `recent` lists the first packet put the client in.
    pub recent: Vec<String>,
    /// The branches of the repeat packet.
    pub branches: Vec<Branch>,
}

/// The result of tracing one packet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    /// The traced packet.
    pub packet: Packet,
    /// Every branch of a first packet (no affinity state).
    pub branches: Vec<Branch>,
    /// For each affinity outcome of the first packet, what a later connection does.
    pub repeat: Vec<RepeatTrace>,
    /// Remarks about the whole trace (rules the tracer added, limits reached).
    pub notes: Vec<String>,
}

impl Trace {
    /// The result as upstream's test tracer writes it: the branches' output words
    /// (destinations `ip:port`, `ACCEPT`, `DROP`, `REJECT`), sorted, without duplicates,
    /// joined by `", "`; `""` when no rule decides.
    pub fn output(&self) -> String {
        let words: BTreeSet<String> = self
            .branches
            .iter()
            .filter_map(Branch::output_word)
            .collect();
        words.into_iter().collect::<Vec<_>>().join(", ")
    }

    /// Whether any branch has its source address rewritten (MASQUERADE or SNAT).
    pub fn masquerade(&self) -> bool {
        self.branches.iter().any(|b| b.masquerade)
    }
}
