//! Checks on the iptables restore text: per-chain jump targets and set names (as upstream's
//! `checkIptables`), single lines, and a readable line diff.

use serde_json::Value;

/// The `-A CHAIN` rules of `chain` in the text, in order (nat, then filter).
fn chain_rules<'a>(text: &'a str, chain: &str) -> Vec<&'a str> {
    let prefix = format!("-A {chain} ");
    text.lines().filter(|l| l.starts_with(&prefix)).collect()
}

/// The word after `flag` in a rule.
fn word_after<'a>(rule: &'a str, flag: &str) -> Option<&'a str> {
    let mut words = rule.split_whitespace();
    words.by_ref().find(|w| *w == flag)?;
    words.next()
}

/// `iptables:` — for each chain, the rules' targets and match-set names, in order.
pub(crate) fn check_chains(text: &str, v: &Value) -> Result<(), String> {
    let map = v.as_object().ok_or("not a mapping")?;
    for (chain, list) in map {
        let want = list.as_array().ok_or("not a list")?;
        let got = chain_rules(text, chain);
        if got.len() != want.len() {
            return Err(format!(
                "chain {chain}: {} rules {got:#?}, want {}",
                got.len(),
                want.len()
            ));
        }
        for (rule, w) in got.iter().zip(want) {
            let jump = w.get("jump").and_then(Value::as_str);
            let set = w.get("matchSet").and_then(Value::as_str);
            if word_after(rule, "-j") != jump || word_after(rule, "--match-set") != set {
                return Err(format!(
                    "chain {chain}: rule {rule:?}, want jump {jump:?} set {set:?}"
                ));
            }
            let source = w.get("source").and_then(Value::as_str);
            if source.is_some() && word_after(rule, "-s") != source {
                return Err(format!(
                    "chain {chain}: rule {rule:?}, want source {source:?}"
                ));
            }
        }
    }
    Ok(())
}

/// The text holds exactly this line.
pub(crate) fn check_line(text: &str, v: &Value) -> Result<(), String> {
    let want = v.as_str().ok_or("not a string")?;
    if text.lines().any(|l| l == want) {
        Ok(())
    } else {
        Err(format!("no line {want:?} in:\n{text}"))
    }
}

/// The first KUBE-SERVICES rule is this line.
pub(crate) fn check_first_rule(text: &str, v: &Value) -> Result<(), String> {
    let want = v.as_str().ok_or("not a string")?;
    let first = chain_rules(text, "KUBE-SERVICES").first().copied();
    if first == Some(want) {
        Ok(())
    } else {
        Err(format!("first KUBE-SERVICES rule {first:?}, want {want:?}"))
    }
}

/// Lines only in `want` (-) and only in `got` (+), or a note that only the order differs.
pub(crate) fn line_diff(want: &str, got: &str) -> String {
    let w: Vec<&str> = want.lines().collect();
    let g: Vec<&str> = got.lines().collect();
    let mut out = String::new();
    for line in w.iter().filter(|l| !g.contains(l)) {
        out.push_str(&format!("- {line}\n"));
    }
    for line in g.iter().filter(|l| !w.contains(l)) {
        out.push_str(&format!("+ {line}\n"));
    }
    if out.is_empty() {
        out.push_str("(same lines, different order or line ends)\n");
    }
    out
}
