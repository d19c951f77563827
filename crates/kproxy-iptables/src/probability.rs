//! The `statistic --probability` values for random balancing: 1/n written with exactly ten
//! decimals, correctly rounded, as upstream formats them.

/// `1/n` with ten decimals (`0.3333333333`).
pub fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
}

/// `1/n` texts formatted once each: a full sync writes one for every endpoint but the last
/// of each service, and float formatting is slow.
#[derive(Debug, Default)]
pub struct Probabilities {
    /// `texts[n]` is `probability(n)`.
    texts: Vec<String>,
}

impl Probabilities {
    /// `probability(n)`, formatted on first use.
    pub fn get(&mut self, n: usize) -> &str {
        if n >= self.texts.len() {
            let known = self.texts.len();
            self.texts.extend((known..=n).map(probability));
        }
        self.texts.get(n).map_or("", String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_vectors() {
        assert_eq!(probability(1), "1.0000000000");
        assert_eq!(probability(2), "0.5000000000");
        assert_eq!(probability(3), "0.3333333333");
        assert_eq!(probability(100001), "0.0000099999");
    }

    #[test]
    fn remembered_texts_match_fresh_ones() {
        let mut memo = Probabilities::default();
        for n in [7, 2, 2048, 3, 7] {
            assert_eq!(memo.get(n), probability(n));
        }
    }
}
