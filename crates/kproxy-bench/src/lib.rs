//! kproxy-bench: the data-plane benchmark. For each cluster size and proxy mode it builds
//! a [`kproxy_lab`] lab, programs N Services with the agent from a cluster file (the
//! measured one last in iptables' `KUBE-SERVICES`, the worst case of its linear walk), and
//! times sequential TCP connections from the client pod through the measured ClusterIP and
//! straight to the pod, plus a baseline before any rule exists.
//!
//! - [`cluster`]: the generated cluster (pure).
//! - [`echo`], [`connect`]: the server in the backend pods and the timed client.
//! - [`stats`]: percentiles and rates (pure).
//! - [`kernel`], [`program`]: when a cluster counts as programmed (capped).
//! - [`case`], [`run`], [`report`]: one case, a whole run, the table and JSON.
//! - [`machine`]: load average and date beside every figure.

pub mod args;
pub mod case;
pub mod cluster;
pub mod connect;
pub mod echo;
pub mod error;
pub mod kernel;
pub mod machine;
pub mod program;
pub mod report;
pub mod run;
pub mod stats;

pub use case::{run_case, CaseReport, CaseSpec};
pub use error::BenchError;
