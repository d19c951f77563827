//! The trace as JSON: upstream's `output`/`masq` pair plus every branch and its path.

use crate::trace::Trace;
use serde_json::{json, Value};

impl Trace {
    /// The trace as a JSON object with `output` (as [`Trace::output`]), `masq`
    /// (as [`Trace::masquerade`]), `packet`, `branches` (each with probability, fate,
    /// DNAT, masquerade and the path), `repeat` (affinity) and `notes`.
    pub fn to_json(&self) -> Value {
        json!({
            "output": self.output(),
            "masq": self.masquerade(),
            "packet": self.packet,
            "branches": self.branches,
            "repeat": self.repeat,
            "notes": self.notes,
        })
    }
}
