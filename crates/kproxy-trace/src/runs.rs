//! Runs of consecutive `-A` lines, their rules grouped by chain while a chunk is parsed,
//! so that applying them in order moves whole lists of rules into their chains.

use crate::ruleset::{NameHasher, Rule};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// The rules one run appends to one chain, in line order.
pub(crate) struct Group<'a> {
    /// The chain's name.
    pub chain: &'a str,
    /// The line of the first of these rules (where an unknown chain is reported).
    pub first_line: usize,
    /// The rules.
    pub rules: Vec<Rule>,
}

/// Collects the rules of consecutive `-A` lines.
#[derive(Default)]
pub(crate) struct RunBuilder<'a> {
    /// Groups in the order their chains first appear.
    groups: Vec<Group<'a>>,
    index: HashMap<&'a str, usize, BuildHasherDefault<NameHasher>>,
}

impl<'a> RunBuilder<'a> {
    /// Adds the rule of line `line` to chain `chain`.
    pub fn push(&mut self, chain: &'a str, line: usize, rule: Rule) {
        let last = self.groups.len().checked_sub(1);
        let group = match last.filter(|&i| self.groups[i].chain == chain) {
            Some(i) => i,
            None => *self.index.entry(chain).or_insert_with(|| {
                self.groups.push(Group {
                    chain,
                    first_line: line,
                    rules: Vec::new(),
                });
                self.groups.len() - 1
            }),
        };
        self.groups[group].rules.push(rule);
    }

    /// The groups collected so far (none if the run is empty); starts a new run.
    pub fn take(&mut self) -> Vec<Group<'a>> {
        self.index.clear();
        std::mem::take(&mut self.groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::Text;
    use crate::Target;

    fn rule(line: usize) -> Rule {
        Rule::new(line, Text::from("-A X"), Box::new([]), Target::None)
    }

    #[test]
    fn groups_keep_first_appearance_and_line_order() {
        let mut run = RunBuilder::default();
        run.push("A", 1, rule(1));
        run.push("B", 2, rule(2));
        run.push("A", 3, rule(3));
        let groups = run.take();
        let seen: Vec<_> = groups
            .iter()
            .map(|g| {
                let lines: Vec<_> = g.rules.iter().map(|r| r.line).collect();
                (g.chain, g.first_line, lines)
            })
            .collect();
        assert_eq!(seen, [("A", 1, vec![1, 3]), ("B", 2, vec![2])]);
        assert!(run.take().is_empty());
    }
}
