//! What the proxier remembers of each service port once its objects are sent: the names
//! of its chains (in one LZ4-compressed string: they repeat the port's name in every
//! line) and sets and its elements (shared with the element book), not the rule text (a
//! sync moves the rules into its transaction). Also the per-service counts behind the
//! no-local-endpoints gauges, kept up to date port by port so no sync has to walk every
//! service.

use crate::nft::Element;
use crate::render::ServiceObjects;
use kproxy_model::{NamespacedName, PackedText};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One service port as the kernel is believed to hold it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortBelief {
    /// Its chain names, service chains first, one per line.
    chains: PackedText,
    /// Its `affinity-` sets.
    pub affinity_sets: Vec<String>,
    /// Its elements of the shared sets and maps.
    pub elements: Vec<Arc<Element>>,
    /// Internal policy is Local, endpoints exist, none is local.
    pub no_local_internal: bool,
    /// External policy is Local, endpoints exist, none is local.
    pub no_local_external: bool,
}

impl PortBelief {
    /// The names and elements of freshly rendered objects.
    pub fn of(objects: &ServiceObjects) -> PortBelief {
        PortBelief {
            chains: PackedText::pack(
                &objects
                    .chains()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            affinity_sets: objects
                .affinity_sets
                .iter()
                .map(|s| s.name.clone())
                .collect(),
            elements: objects.elements.iter().cloned().map(Arc::new).collect(),
            no_local_internal: objects.no_local_internal,
            no_local_external: objects.no_local_external,
        }
    }

    /// Its chain names, service chains first.
    pub fn chains(&self) -> ChainNames {
        // Only a bug makes a block the proxier packed itself fail to unpack; the port's
        // chains are then forgotten (a full sync still flushes what the kernel lists).
        ChainNames(self.chains.unpack().unwrap_or_default())
    }
}

/// One port's chain names, unpacked.
pub struct ChainNames(String);

impl ChainNames {
    /// The names, service chains first.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split('\n').filter(|name| !name.is_empty())
    }
}

/// Services with at least one port flagged no-local (internal, external), with how many
/// of their ports are.
#[derive(Debug, Clone, Default)]
pub struct NoLocalCounts {
    internal: BTreeMap<NamespacedName, usize>,
    external: BTreeMap<NamespacedName, usize>,
}

impl NoLocalCounts {
    /// Counts a port of `service` in.
    pub fn add(&mut self, service: &NamespacedName, port: &PortBelief) {
        if port.no_local_internal {
            *self.internal.entry(service.clone()).or_default() += 1;
        }
        if port.no_local_external {
            *self.external.entry(service.clone()).or_default() += 1;
        }
    }

    /// Counts a port of `service` out.
    pub fn remove(&mut self, service: &NamespacedName, port: &PortBelief) {
        for (flagged, counts) in [
            (port.no_local_internal, &mut self.internal),
            (port.no_local_external, &mut self.external),
        ] {
            if !flagged {
                continue;
            }
            if let Some(n) = counts.get_mut(service) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(service);
                }
            }
        }
    }

    /// Forgets every port.
    pub fn clear(&mut self) {
        self.internal.clear();
        self.external.clear();
    }

    /// Services (internal, external) with a flagged port.
    pub fn services(&self) -> (usize, usize) {
        (self.internal.len(), self.external.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_come_back_in_order() {
        let names: Vec<String> = std::iter::once("service-AAAAAAAA-ns/svc/tcp/p80".to_string())
            .chain((0..10).map(|i| format!("endpoint-BBBBBBB{i}-ns/svc/tcp/p80__10.0.0.{i}/80")))
            .collect();
        let belief = PortBelief {
            chains: PackedText::pack(&names.join("\n")),
            ..PortBelief::default()
        };
        assert!(belief.chains.stored_len() < belief.chains.len());
        assert_eq!(belief.chains().iter().collect::<Vec<_>>(), names);
        assert_eq!(PortBelief::default().chains().iter().count(), 0);
    }

    #[test]
    fn counts_services_not_ports() {
        let flagged = PortBelief {
            no_local_internal: true,
            no_local_external: true,
            ..PortBelief::default()
        };
        let internal_only = PortBelief {
            no_local_internal: true,
            ..PortBelief::default()
        };
        let a = NamespacedName::new("ns", "a");
        let b = NamespacedName::new("ns", "b");
        let mut counts = NoLocalCounts::default();
        counts.add(&a, &flagged);
        counts.add(&a, &internal_only);
        counts.add(&b, &internal_only);
        assert_eq!(counts.services(), (2, 1));
        counts.remove(&a, &flagged);
        assert_eq!(counts.services(), (2, 0));
        counts.remove(&a, &internal_only);
        counts.remove(&b, &internal_only);
        assert_eq!(counts.services(), (0, 0));
    }
}
