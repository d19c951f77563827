//! Choosing the iptables backend the way upstream's iptables wrapper does: the backend
//! kubelet marked (its `KUBE-IPTABLES-HINT` or `KUBE-KUBELET-CANARY` chain in mangle), else
//! the one already holding more rules, else nft.

use super::exec::{find_tool, run_tool};
use super::iptables::Backend;
use crate::config::BackendChoice;
use std::time::Duration;

const KUBELET_MARKERS: [&str; 2] = [":KUBE-IPTABLES-HINT", ":KUBE-KUBELET-CANARY"];

/// What one backend's `iptables-save` and `ip6tables-save` show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendEvidence {
    /// Kubelet's marker chain is in the mangle table.
    pub kubelet_marker: bool,
    /// Number of rules (`-A` lines) in all tables.
    pub rule_count: usize,
}

impl BackendEvidence {
    /// Reads the evidence from `iptables-save` output.
    pub fn from_save_output(text: &str) -> Self {
        BackendEvidence {
            kubelet_marker: text
                .lines()
                .any(|l| KUBELET_MARKERS.iter().any(|m| l.starts_with(m))),
            rule_count: text.lines().filter(|l| l.starts_with('-')).count(),
        }
    }

    fn gather(backend: Backend) -> Self {
        let mut text = String::new();
        for family in ["iptables", "ip6tables"] {
            let Some(save) = find_tool(&format!("{family}-{}-save", backend.name())) else {
                continue;
            };
            if let Ok(output) = run_tool(&save, &[], None, Duration::from_secs(30)) {
                text.push_str(&output.stdout);
            }
        }
        BackendEvidence::from_save_output(&text)
    }
}

/// Picks the backend between two sets of evidence.
pub fn pick_backend(legacy: BackendEvidence, nft: BackendEvidence) -> Backend {
    match (legacy.kubelet_marker, nft.kubelet_marker) {
        (true, false) => Backend::Legacy,
        (false, true) => Backend::Nft,
        _ if legacy.rule_count > nft.rule_count => Backend::Legacy,
        _ => Backend::Nft,
    }
}

/// Resolves the configured choice; `Auto` reads both backends' rulesets.
pub fn resolve_backend(choice: BackendChoice) -> Backend {
    match choice {
        BackendChoice::Nft => Backend::Nft,
        BackendChoice::Legacy => Backend::Legacy,
        BackendChoice::Auto => pick_backend(
            BackendEvidence::gather(Backend::Legacy),
            BackendEvidence::gather(Backend::Nft),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(text: &str) -> BackendEvidence {
        BackendEvidence::from_save_output(text)
    }

    #[test]
    fn kubelets_marker_decides_first_then_rule_counts() {
        let marked = evidence("*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n");
        let busy = evidence("*filter\n-A INPUT -j ACCEPT\n-A INPUT -j DROP\nCOMMIT\n");
        let empty = evidence("");
        assert_eq!(busy.rule_count, 2);
        assert_eq!(pick_backend(marked, busy), Backend::Legacy);
        assert_eq!(pick_backend(busy, marked), Backend::Nft);
        assert_eq!(pick_backend(busy, empty), Backend::Legacy);
        assert_eq!(pick_backend(empty, busy), Backend::Nft);
        assert_eq!(pick_backend(empty, empty), Backend::Nft);
    }
}
