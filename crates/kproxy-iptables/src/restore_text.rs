//! `iptables-restore` input built from pieces: text of its own, and parts of the service
//! ports' rules shared with the render cache (chain rules kept compressed there). A full sync
//! of a large cluster is then written to the pipe piece by piece, each service's rules
//! decompressed as they are written, instead of being copied into one string first (at
//! 10,000 services that copy, and the buffer it was assembled in, were 60 MB).

use crate::service::ServiceRules;
use kproxy_model::CorruptText;
use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;

/// Decompressed chain rules are gathered up to this size before each write to the pipe.
const WRITE_BATCH: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// One part of each of these service ports' cached rules, one port after the other.
    Ports(Arc<[Arc<ServiceRules>]>, PortText),
}

/// Which part of a service port's cached rules a piece writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortText {
    /// `:CHAIN - [0:0]` for each of its nat chains.
    Declarations,
    /// Its filter-table rules.
    Filter,
    /// Its rules in `KUBE-SERVICES` and `KUBE-NODEPORTS`.
    Dispatch,
    /// The rules of its nat chains (decompressed from the cache).
    ChainRules,
}

impl PortText {
    fn append(self, rules: &ServiceRules, out: &mut Vec<u8>) -> Result<(), CorruptText> {
        match self {
            PortText::Declarations => {
                for chain in rules.chains.iter() {
                    out.push(b':');
                    out.extend_from_slice(chain.as_bytes());
                    out.extend_from_slice(b" - [0:0]\n");
                }
            }
            PortText::Filter => out.extend_from_slice(rules.filter_rules.as_bytes()),
            PortText::Dispatch => out.extend_from_slice(rules.dispatch_rules.as_bytes()),
            PortText::ChainRules => rules.chain_rules.unpack_into(out)?,
        }
        Ok(())
    }

    fn len(self, rules: &ServiceRules) -> usize {
        match self {
            PortText::Declarations => rules.chains.text_len() + 10 * rules.chains.len(),
            PortText::Filter => rules.filter_rules.len(),
            PortText::Dispatch => rules.dispatch_rules.len(),
            PortText::ChainRules => rules.chain_rules.len(),
        }
    }
}

impl Piece {
    /// Appends the piece's text to `out`, calling `flush` whenever `out` may have grown
    /// past a write batch.
    fn append_to(
        &self,
        out: &mut Vec<u8>,
        flush: &mut impl FnMut(&mut Vec<u8>) -> io::Result<()>,
    ) -> io::Result<()> {
        match self {
            Piece::Text(text) => out.extend_from_slice(text.as_bytes()),
            Piece::Ports(ports, part) => {
                for rules in ports.iter() {
                    part.append(rules, out)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    flush(out)?;
                }
            }
        }
        flush(out)
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

    /// Appends one part of these service ports' cached rules, written from the cache
    /// when the input is written.
    pub(crate) fn push_port_text(&mut self, ports: Arc<[Arc<ServiceRules>]>, part: PortText) {
        let len: usize = ports.iter().map(|rules| part.len(rules)).sum();
        if len > 0 {
            self.len += len;
            self.pieces.push(Piece::Ports(ports, part));
        }
    }

    /// Calls `each` with every line, in order (a piece at a time is decompressed).
    pub fn for_each_line(&self, mut each: impl FnMut(&str)) -> Result<(), CorruptText> {
        let mut batch = Vec::new();
        for piece in &self.pieces {
            if let Piece::Text(text) = piece {
                text.lines().for_each(&mut each);
                continue;
            }
            let mut lines = |batch: &mut Vec<u8>| {
                let text = std::str::from_utf8(batch)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                text.lines().for_each(&mut each);
                batch.clear();
                Ok(())
            };
            piece
                .append_to(&mut batch, &mut lines)
                .map_err(|_| CorruptText)?;
        }
        Ok(())
    }

    /// The whole input as one string.
    pub fn text(&self) -> Result<String, CorruptText> {
        let mut bytes = Vec::with_capacity(self.len);
        for piece in &self.pieces {
            piece
                .append_to(&mut bytes, &mut |_| Ok(()))
                .map_err(|_| CorruptText)?;
        }
        String::from_utf8(bytes).map_err(|_| CorruptText)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no input at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes the whole input: its own text as it is, the chain rules decompressed and
    /// gathered into writes of about 64 KiB.
    pub fn write_to(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut batch = Vec::with_capacity(WRITE_BATCH * 2);
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) if text.len() >= WRITE_BATCH => {
                    out.write_all(&batch)?;
                    batch.clear();
                    out.write_all(text.as_bytes())?;
                }
                _ => {
                    let mut flush = |batch: &mut Vec<u8>| {
                        if batch.len() >= WRITE_BATCH {
                            out.write_all(batch)?;
                            batch.clear();
                        }
                        Ok(())
                    };
                    piece.append_to(&mut batch, &mut flush)?;
                }
            }
        }
        out.write_all(&batch)
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
        f.write_str(&self.text().map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kproxy_model::PackedText;

    #[test]
    fn pieces_concatenate_to_the_input() {
        let rules = Arc::new(ServiceRules {
            chains: ["KUBE-SVC-X"].into_iter().collect(),
            chain_rules: PackedText::pack("-A KUBE-SVC-X -j KUBE-SEP-Y\n"),
            ..ServiceRules::default()
        });
        let mut restore = RestoreText::from("*nat\n".to_string());
        restore.push_port_text(vec![Arc::clone(&rules)].into(), PortText::Declarations);
        restore.push_port_text(Vec::new().into(), PortText::Dispatch);
        restore.push_port_text(
            vec![rules, Arc::new(ServiceRules::default())].into(),
            PortText::ChainRules,
        );
        restore.push_text("COMMIT\n".into());
        let text = "*nat\n:KUBE-SVC-X - [0:0]\n-A KUBE-SVC-X -j KUBE-SEP-Y\nCOMMIT\n";
        assert_eq!(restore.to_string(), text);
        assert_eq!(restore.len(), text.len());
        let mut lines = 0;
        restore.for_each_line(|_| lines += 1).expect("unpacks");
        assert_eq!(lines, 4);
        assert_eq!(restore.pieces.len(), 4);
        let mut written = Vec::new();
        restore.write_to(&mut written).expect("writes");
        assert_eq!(written, text.as_bytes());
        assert!(RestoreText::default().is_empty());
    }

    #[test]
    fn large_input_is_written_whole_in_batches() {
        let chain = |i: usize| {
            let text: String = (0..40)
                .map(|j| format!("-A KUBE-SEP-{i:016} -j DNAT --to-destination 10.1.{i}.{j}:80\n"))
                .collect();
            Arc::new(ServiceRules {
                chain_rules: PackedText::pack(&text),
                ..ServiceRules::default()
            })
        };
        let mut restore = RestoreText::from("*nat\n".to_string());
        restore.push_port_text((0..100).map(chain).collect(), PortText::ChainRules);
        restore.push_text("-A KUBE-SERVICES -j RETURN\n".repeat(5000));
        restore.push_port_text(vec![chain(100)].into(), PortText::ChainRules);
        restore.push_text("COMMIT\n".into());
        let mut written = Vec::new();
        restore.write_to(&mut written).expect("writes");
        let text = restore.text().expect("unpacks");
        assert_eq!(written, text.as_bytes());
        assert_eq!(text.len(), restore.len());
        assert!(text.ends_with("10.1.100.39:80\nCOMMIT\n"));
    }
}
