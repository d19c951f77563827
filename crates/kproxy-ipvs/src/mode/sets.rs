//! The entries the ipvs mode wants in each of kube-proxy's ipsets, and the sets built from
//! them for `ipset restore`.

use std::collections::{BTreeMap, BTreeSet};

use crate::ipset::{Entry, IpSet, KubeSet};

use super::settings::IpvsSettings;

/// Wanted entries per set; sets without entries are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetEntries {
    entries: BTreeMap<KubeSet, BTreeSet<Entry>>,
}

impl SetEntries {
    /// Adds an entry to a set.
    pub fn add(&mut self, set: KubeSet, entry: Entry) {
        self.entries.entry(set).or_default().insert(entry);
    }

    /// Whether a set has entries.
    pub fn has(&self, set: KubeSet) -> bool {
        self.entries.get(&set).is_some_and(|e| !e.is_empty())
    }

    /// The entries of a set, sorted.
    pub fn of(&self, set: KubeSet) -> impl Iterator<Item = &Entry> {
        self.entries.get(&set).into_iter().flatten()
    }
}

/// The name of a set for this proxier: `KUBE-6-…` for IPv6 unless the settings say otherwise.
pub fn set_name(settings: &IpvsSettings, set: KubeSet) -> String {
    if settings.prefixed_ipv6_set_names {
        set.name(settings.set_family())
    } else {
        set.base_name().to_string()
    }
}

/// Every kube-proxy set with exactly its wanted entries (empty sets included, so stale
/// entries go). Entries a set cannot hold are left out and described in the second value.
pub fn build_sets(settings: &IpvsSettings, wanted: &SetEntries) -> (Vec<IpSet>, Vec<String>) {
    let mut refused = Vec::new();
    let sets = KubeSet::ALL
        .iter()
        .map(|kind| {
            let mut set = IpSet::new(
                set_name(settings, *kind),
                kind.set_type(),
                settings.set_family(),
            );
            for entry in wanted.of(*kind) {
                if let Err(e) = set.add(*entry, None) {
                    refused.push(e.to_string());
                }
            }
            set
        })
        .collect();
    (sets, refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kproxy_model::IpFamily;

    #[test]
    fn ipv6_names_can_be_left_unprefixed_like_upstreams_fake() {
        let mut settings = IpvsSettings::new(IpFamily::V6, "n");
        assert_eq!(
            set_name(&settings, KubeSet::NodePortLocalSctp),
            "KUBE-6-NODE-PORT-LOCAL-SCTP-HAS"
        );
        settings.prefixed_ipv6_set_names = false;
        assert_eq!(
            set_name(&settings, KubeSet::NodePortLocalSctp),
            "KUBE-NODE-PORT-LOCAL-SCTP-HASH"
        );
    }

    #[test]
    fn entries_of_the_wrong_family_are_refused_not_written() {
        let settings = IpvsSettings::new(IpFamily::V4, "n");
        let mut wanted = SetEntries::default();
        wanted.add(KubeSet::IpvsIps, Entry::Ip("fd00::1".parse().expect("v6")));
        wanted.add(KubeSet::IpvsIps, Entry::Ip("10.0.0.1".parse().expect("v4")));
        let (sets, refused) = build_sets(&settings, &wanted);
        assert_eq!(sets.len(), KubeSet::ALL.len());
        assert_eq!(refused.len(), 1);
        let ips = sets
            .iter()
            .find(|s| s.name == "KUBE-IPVS-IPS")
            .expect("set");
        assert_eq!(ips.members().count(), 1);
    }
}
