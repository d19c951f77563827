//! Upstream's ruleset comparison: blank and `#` lines dropped, lines sorted by object
//! type then object name, rules of one chain kept in order, other same-name lines sorted.

/// Object-type rank of a line (`add table` first, ... anything else last).
fn rank(line: &str) -> usize {
    let kind = line.split_whitespace().nth(1).unwrap_or("");
    ["table", "chain", "rule", "set", "map", "element"]
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(6)
}

/// The normalized lines of a ruleset.
pub fn normalize(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut keyed: Vec<(usize, &str, usize, &str, &str)> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let r = rank(line);
            let name = line.split_whitespace().nth(4).unwrap_or("");
            if r == 2 {
                (r, name, i, "", *line)
            } else {
                (r, name, 0, *line, *line)
            }
        })
        .collect();
    keyed.sort();
    keyed
        .into_iter()
        .map(|(.., line)| line.to_string())
        .collect()
}

/// `Ok` when equal; otherwise a diff of lines only in one side.
pub fn compare(label: &str, expected: &str, actual: &str) -> Result<(), String> {
    let want = normalize(expected);
    let got = normalize(actual);
    if want == got {
        return Ok(());
    }
    let mut report = format!("{label}: ruleset differs\n");
    for line in want.iter().filter(|l| !got.contains(l)) {
        report.push_str(&format!("  - {line}\n"));
    }
    for line in got.iter().filter(|l| !want.contains(l)) {
        report.push_str(&format!("  + {line}\n"));
    }
    if report.lines().count() == 1 {
        report.push_str("  (same lines, different rule order)\n");
        for (w, g) in want.iter().zip(&got).filter(|(w, g)| w != g).take(4) {
            report.push_str(&format!("  expected {w}\n  actual   {g}\n"));
        }
    }
    Err(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_order_matters_element_order_does_not() {
        let a = "add rule ip t c a\nadd rule ip t c b\nadd element ip t s { 2 }\nadd element ip t s { 1 }\nadd table ip t";
        let b = "add table ip t\n# x\nadd element ip t s { 1 }\n\nadd element ip t s { 2 }\nadd rule ip t c a\nadd rule ip t c b";
        assert!(compare("x", a, b).is_ok());
        let c = "add table ip t\nadd element ip t s { 1 }\nadd element ip t s { 2 }\nadd rule ip t c b\nadd rule ip t c a";
        assert!(compare("x", a, c).is_err());
    }
}
