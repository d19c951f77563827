//! The trace as an indented tree: chain by chain, the rules that matched, where the
//! branches split and with which probability, and how each branch ends.

use crate::trace::{Branch, Fate, Step, StepKind, Trace};
use std::fmt::Write;

/// Branches sharing a path prefix share a node.
#[derive(Default)]
struct Node<'t> {
    step: Option<&'t Step>,
    children: Vec<Node<'t>>,
    ends: Vec<&'t Branch>,
}

impl<'t> Node<'t> {
    fn insert(&mut self, branch: &'t Branch) {
        let mut node = self;
        for step in &branch.steps {
            let pos = node.children.iter().position(|c| c.step == Some(step));
            let pos = pos.unwrap_or_else(|| {
                node.children.push(Node {
                    step: Some(step),
                    ..Node::default()
                });
                node.children.len() - 1
            });
            node = &mut node.children[pos];
        }
        node.ends.push(branch);
    }
}

impl Trace {
    /// Renders the trace as an indented tree, followed by the upstream-style result.
    pub fn render_tree(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "packet: {}", self.packet);
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        render_branches(&self.branches, &mut out);
        let _ = writeln!(
            out,
            "result: output={:?} masquerade={}",
            self.output(),
            self.masquerade()
        );
        for repeat in &self.repeat {
            let _ = writeln!(
                out,
                "\nlater connection from the same client (in recent list {}):",
                repeat.recent.join(", ")
            );
            render_branches(&repeat.branches, &mut out);
        }
        out
    }
}

fn render_branches(branches: &[Branch], out: &mut String) {
    let mut root = Node::default();
    for branch in branches {
        root.insert(branch);
    }
    render_children(&root, "", 0, out);
}

fn render_children(node: &Node<'_>, gutter: &str, depth: usize, out: &mut String) {
    let count = node.children.len() + node.ends.len();
    let forked = count > 1;
    let mut index = 0;
    let mut next_gutter = |first: &mut String, rest: &mut String| {
        index += 1;
        let last = index == count;
        *first = match (forked, last) {
            (false, _) => gutter.to_string(),
            (true, false) => format!("{gutter}├─ "),
            (true, true) => format!("{gutter}└─ "),
        };
        *rest = match (forked, last) {
            (false, _) => gutter.to_string(),
            (true, false) => format!("{gutter}│  "),
            (true, true) => format!("{gutter}   "),
        };
    };
    let (mut first, mut rest) = (String::new(), String::new());
    for child in &node.children {
        next_gutter(&mut first, &mut rest);
        let step_depth = child.step.map_or(depth, |s| s.depth);
        if let Some(step) = child.step {
            let _ = writeln!(out, "{first}{}{}", indent(step), describe(step));
        }
        render_children(child, &rest, step_depth, out);
    }
    for end in &node.ends {
        next_gutter(&mut first, &mut rest);
        let pad = "    ".repeat(depth) + "  ";
        let _ = writeln!(out, "{first}{pad}=> {}", describe_end(end));
    }
}

fn indent(step: &Step) -> String {
    let base = "    ".repeat(step.depth);
    match step.kind {
        StepKind::Hook { .. } | StepKind::Chain => base,
        _ => base + "  ",
    }
}

fn describe(step: &Step) -> String {
    match &step.kind {
        StepKind::Hook { hook } => format!("[{} {}]", step.table, hook.chain()),
        StepKind::Chain => format!("{} ({})", step.chain, step.table),
        StepKind::Rule {
            line,
            text,
            added,
            chance,
        } => {
            let mut s = String::new();
            if let Some(p) = chance {
                let _ = write!(s, "[{:.2}%] ", p * 100.0);
            }
            s.push_str(text);
            match (added, line) {
                (true, _) => s.push_str("   (added: kube-proxy built-in jump)"),
                (false, 0) => {}
                (false, line) => {
                    let _ = write!(s, "   (line {line})");
                }
            }
            s
        }
        StepKind::Policy { policy } => format!("policy {policy}"),
        StepKind::Assumption { text } => format!("? {text}"),
    }
}

fn describe_end(branch: &Branch) -> String {
    let mut s = match (&branch.fate, &branch.dnat) {
        (Fate::Delivered | Fate::Leaves, Some(dest)) => format!("{dest} ({})", branch.fate),
        (fate, _) => fate.to_string(),
    };
    if branch.masquerade {
        s.push_str(match &branch.snat {
            Some(_) => ", SNAT",
            None => ", masqueraded",
        });
    }
    if branch.accepted {
        s.push_str(", accepted by filter rule");
    }
    let _ = write!(s, " [probability {:.2}%]", branch.probability * 100.0);
    if !branch.assumptions.is_empty() {
        let _ = write!(s, " [{} assumption(s)]", branch.assumptions.len());
    }
    s
}
