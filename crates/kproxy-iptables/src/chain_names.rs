//! The nat chains of one service port, kept as one string: at 10,000 services × 10
//! endpoints there are 110,000 names, and a `String` each cost more in headers and
//! allocator overhead than the names themselves.

/// Chain names in the order they were added, without repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainNames {
    /// The names, each followed by `\n` (a chain name never contains one).
    joined: String,
    /// Number of names.
    count: usize,
}

impl ChainNames {
    /// Adds a chain unless it is there already.
    pub fn insert(&mut self, chain: &str) {
        if !self.contains(chain) {
            self.push_new(chain);
        }
    }

    /// Adds a chain that is not there yet (an endpoint's chain: each endpoint of a port
    /// hashes to a name of its own), without looking through the others.
    pub fn push_new(&mut self, chain: &str) {
        debug_assert!(!self.contains(chain), "{chain} added twice");
        self.joined.push_str(chain);
        self.joined.push('\n');
        self.count += 1;
    }

    /// Removes every name, keeping the buffer.
    pub fn clear(&mut self) {
        self.joined.clear();
        self.count = 0;
    }

    /// Whether `chain` is one of the names.
    pub fn contains(&self, chain: &str) -> bool {
        self.iter().any(|c| c == chain)
    }

    /// The names, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.joined.lines()
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there is no name.
    pub fn is_empty(&self) -> bool {
        self.joined.is_empty()
    }

    /// Total length of the names in bytes.
    pub fn text_len(&self) -> usize {
        self.joined.len() - self.len()
    }

    /// Drops spare capacity (the render cache keeps these for every port).
    pub fn shrink_to_fit(&mut self) {
        self.joined.shrink_to_fit();
    }
}

impl<'a> FromIterator<&'a str> for ChainNames {
    fn from_iter<I: IntoIterator<Item = &'a str>>(names: I) -> Self {
        let mut chains = ChainNames::default();
        names.into_iter().for_each(|name| chains.insert(name));
        chains
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_their_order_without_repeats() {
        let mut chains: ChainNames = ["KUBE-SVC-A", "KUBE-SEP-B"].into_iter().collect();
        chains.insert("KUBE-SVC-A");
        chains.push_new("KUBE-SEP-C");
        assert_eq!(
            chains.iter().collect::<Vec<_>>(),
            ["KUBE-SVC-A", "KUBE-SEP-B", "KUBE-SEP-C"]
        );
        assert_eq!(chains.len(), 3);
        assert_eq!(chains.text_len(), 30);
        assert!(chains.contains("KUBE-SEP-B"));
        assert!(!chains.contains("KUBE-SEP"));
        assert!(ChainNames::default().is_empty());
        chains.clear();
        assert!(chains.is_empty());
    }
}
