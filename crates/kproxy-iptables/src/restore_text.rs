//! `iptables-restore` input built from pieces: text of its own, and the chain rules of each
//! service port shared with the render cache. A full sync of a large cluster is then
//! written to the pipe piece by piece instead of being copied into one string first (at
//! 10,000 services that copy, and the buffer it was assembled in, were 60 MB).

use crate::service::ServiceRules;
use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    ChainRules(Arc<ServiceRules>),
}

impl Piece {
    fn as_str(&self) -> &str {
        match self {
            Piece::Text(text) => text,
            Piece::ChainRules(rules) => &rules.chain_rules,
        }
    }
}

/// Restore input: whole lines, in order, in pieces some of which are shared with the
/// proxier's render cache. Concatenated, the pieces are the text `iptables-restore` reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreText {
    pieces: Vec<Piece>,
    len: usize,
}

impl RestoreText {
    /// Appends text of whole lines.
    pub(crate) fn push_text(&mut self, text: String) {
        if !text.is_empty() {
            self.len += text.len();
            self.pieces.push(Piece::Text(text));
        }
    }

    /// Appends a service port's chain rules without copying them.
    pub(crate) fn push_chain_rules(&mut self, rules: &Arc<ServiceRules>) {
        if !rules.chain_rules.is_empty() {
            self.len += rules.chain_rules.len();
            self.pieces.push(Piece::ChainRules(Arc::clone(rules)));
        }
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().map(Piece::as_str)
    }

    /// The lines, in order.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.pieces().flat_map(str::lines)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no input at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes the whole input.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        for piece in self.pieces() {
            out.write_all(piece.as_bytes())?;
        }
        Ok(())
    }
}

impl From<String> for RestoreText {
    fn from(text: String) -> Self {
        let mut restore = RestoreText::default();
        restore.push_text(text);
        restore
    }
}

impl fmt::Display for RestoreText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.pieces().try_for_each(|piece| f.write_str(piece))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_concatenate_to_the_input() {
        let rules = Arc::new(ServiceRules {
            chain_rules: "-A KUBE-SVC-X -j KUBE-SEP-Y\n".into(),
            ..ServiceRules::default()
        });
        let mut restore = RestoreText::from("*nat\n:KUBE-SVC-X - [0:0]\n".to_string());
        restore.push_chain_rules(&rules);
        restore.push_chain_rules(&Arc::new(ServiceRules::default()));
        restore.push_text("COMMIT\n".into());
        let text = "*nat\n:KUBE-SVC-X - [0:0]\n-A KUBE-SVC-X -j KUBE-SEP-Y\nCOMMIT\n";
        assert_eq!(restore.to_string(), text);
        assert_eq!(restore.len(), text.len());
        assert_eq!(restore.lines().count(), 4);
        assert_eq!(restore.pieces().count(), 3);
        let mut written = Vec::new();
        restore.write_to(&mut written).expect("writes");
        assert_eq!(written, text.as_bytes());
        assert!(RestoreText::default().is_empty());
    }
}
