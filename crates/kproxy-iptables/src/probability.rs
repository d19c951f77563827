//! The `statistic --probability` values for random balancing: 1/n written with exactly ten
//! decimals, correctly rounded, as upstream formats them.

/// `1/n` with ten decimals (`0.3333333333`).
pub fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
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
}
