//! kproxy-trace: walk one packet through an iptables ruleset and show the chain path.
//!
//! The ruleset can be kproxy's own, or upstream kube-proxy's, read from `iptables-save`
//! output, from the text kube-proxy feeds to `iptables-restore`, or live from the node.
//!
//! ```
//! use kproxy_trace::{Packet, Protocol, Ruleset, Tracer};
//!
//! let rules = Ruleset::parse(
//!     "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-A - [0:0]\n\
//!      -A KUBE-SERVICES -d 172.30.0.1 -p tcp -m tcp --dport 80 -j KUBE-SVC-A\n\
//!      -A KUBE-SVC-A -p tcp -j DNAT --to-destination 10.1.0.5:8080\nCOMMIT\n",
//! )
//! .unwrap();
//! let tracer = Tracer::new(&rules, &["192.168.0.2".parse().unwrap()]);
//! let packet = Packet::new(
//!     "10.1.0.9".parse().unwrap(),
//!     "172.30.0.1".parse().unwrap(),
//!     Protocol::Tcp,
//!     80,
//! );
//! let trace = tracer.trace(&packet);
//! assert_eq!(trace.output(), "10.1.0.5:8080");
//! println!("{}", trace.render_tree());
//! ```
//!
//! Modules: [`tokenizer`] splits lines, the parser builds a [`Ruleset`] of [`Rule`]s with
//! [`Match`] conditions and a [`Target`], [`Tracer`] simulates netfilter for one packet
//! and returns a [`Trace`], which renders as a tree, as JSON, or (per service) as a
//! Graphviz graph with [`service_graph_dot`]. [`flows`] reads upstream's packet-flow
//! expectations; [`live`] reads the node's own ruleset.

mod addr;
mod builtin_jumps;
mod dot;
mod file;
pub mod flows;
mod ipset;
mod json;
pub mod live;
mod match_modules;
mod matches;
mod packet;
mod parser;
mod render_tree;
mod rule;
mod ruleset;
mod runs;
mod simulator;
mod state;
pub mod tokenizer;
mod trace;

pub use addr::{InvalidNet, IpNet};
pub use dot::service_graph_dot;
pub use file::ReadError;
pub use ipset::{InvalidMember, IpSets};
pub use matches::{
    ct_state, AddrType, Decision, Direction, Match, MultiportSide, PacketType, PortRange,
    ProtocolSpec, RecentAction,
};
pub use packet::{Packet, Protocol, UnknownProtocol};
pub use parser::{ParseError, ParseErrorKind, IP6TABLES_SEPARATOR};
pub use ruleset::{Chain, DualStackRuleset, Policy, Rule, Ruleset, Table, TableKind, UnknownRule};
pub use simulator::Tracer;
pub use targets::{ConnmarkOp, MarkOp, Target};
pub use text::Text;
pub use trace::{Branch, Fate, Hook, RepeatTrace, Step, StepKind, Trace};

mod targets;
mod text;
