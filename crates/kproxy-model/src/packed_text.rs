//! Text kept LZ4-compressed between syncs: the iptables mode's rendered rules, the
//! nftables mode's chain names.
//!
//! At 10,000 services × 10 endpoints the per-service chain rules are 32 MB of text that
//! every full sync writes again. They are highly repetitive (the same matches, chain
//! prefixes and addresses line after line), so each service's rules compress to about a
//! quarter, and decompressing them while the restore is written costs a few milliseconds
//! against the seconds `iptables-restore` takes to read them.

use std::fmt;

/// Text shorter than this is kept as it is: compressing it saves little.
const PACK_THRESHOLD: usize = 256;

/// A piece of text stored compressed when that makes it smaller.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PackedText {
    repr: Repr,
}

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Plain(Box<str>),
    Lz4 { block: Box<[u8]>, len: usize },
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Plain(Box::default())
    }
}

/// A compressed block did not decompress to the text it was made from (a bug, not bad
/// input: kproxy only decompresses what it compressed itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptText;

impl fmt::Display for CorruptText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a packed text block did not decompress")
    }
}

impl std::error::Error for CorruptText {}

impl PackedText {
    /// Stores `text`, compressed if that is smaller.
    pub fn pack(text: &str) -> Self {
        Packer::default().pack(text)
    }

    /// Length of the text in bytes.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Plain(text) => text.len(),
            Repr::Lz4 { len, .. } => *len,
        }
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held in memory for the text.
    pub fn stored_len(&self) -> usize {
        match &self.repr {
            Repr::Plain(text) => text.len(),
            Repr::Lz4 { block, .. } => block.len(),
        }
    }

    /// Appends the text to `out`.
    pub fn unpack_into(&self, out: &mut Vec<u8>) -> Result<(), CorruptText> {
        match &self.repr {
            Repr::Plain(text) => out.extend_from_slice(text.as_bytes()),
            Repr::Lz4 { block, len } => {
                let start = out.len();
                out.resize(start + len, 0);
                let written = lz4_flex::block::decompress_into(block, &mut out[start..]);
                if written.ok() != Some(*len) {
                    out.truncate(start);
                    return Err(CorruptText);
                }
            }
        }
        Ok(())
    }

    /// The text.
    pub fn unpack(&self) -> Result<String, CorruptText> {
        let mut bytes = Vec::with_capacity(self.len());
        self.unpack_into(&mut bytes)?;
        String::from_utf8(bytes).map_err(|_| CorruptText)
    }
}

/// Compression state reused from text to text: the LZ4 hash table and the output buffer,
/// so packing thousands of services allocates only the blocks that are kept.
#[derive(Default)]
pub struct Packer {
    table: lz4_flex::block::CompressTable,
    block: Vec<u8>,
}

impl Packer {
    /// Stores `text`, compressed if that is smaller.
    pub fn pack(&mut self, text: &str) -> PackedText {
        if text.len() >= PACK_THRESHOLD {
            let needed = lz4_flex::block::get_maximum_output_size(text.len());
            if self.block.len() < needed {
                self.block.resize(needed, 0);
            }
            let written = lz4_flex::block::compress_into_with_table(
                text.as_bytes(),
                &mut self.block,
                &mut self.table,
            );
            if let Some(block) = written.ok().and_then(|n| self.block.get(..n)) {
                if block.len() < text.len() {
                    return PackedText {
                        repr: Repr::Lz4 {
                            block: block.into(),
                            len: text.len(),
                        },
                    };
                }
            }
        }
        PackedText {
            repr: Repr::Plain(text.into()),
        }
    }
}

impl fmt::Debug for PackedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.unpack() {
            Ok(text) => fmt::Debug::fmt(&text, f),
            Err(error) => write!(f, "<{error}>"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(n: usize) -> String {
        (0..n)
            .map(|i| {
                format!(
                    "-A KUBE-SEP-ABCDEFGHIJKLMNO{} -m tcp -p tcp -j DNAT --to-destination 10.64.0.{i}:9090\n",
                    i % 10
                )
            })
            .collect()
    }

    #[test]
    fn long_text_is_compressed_and_comes_back_whole() {
        let text = rules(20);
        let packed = PackedText::pack(&text);
        assert!(
            packed.stored_len() < text.len() / 2,
            "{}",
            packed.stored_len()
        );
        assert_eq!(packed.len(), text.len());
        assert_eq!(packed.unpack().as_deref(), Ok(text.as_str()));
        let mut out = b"head\n".to_vec();
        packed.unpack_into(&mut out).expect("unpacks");
        assert_eq!(out, format!("head\n{text}").as_bytes());
    }

    #[test]
    fn short_or_incompressible_text_stays_plain() {
        let short = "-A KUBE-SVC-X -j KUBE-SEP-Y\n";
        let packed = PackedText::pack(short);
        assert_eq!(packed.stored_len(), short.len());
        assert_eq!(packed.unpack().as_deref(), Ok(short));
        let empty = PackedText::pack("");
        assert!(empty.is_empty());
        assert_eq!(empty, PackedText::default());
    }

    #[test]
    fn a_reused_packer_packs_as_a_fresh_one() {
        let mut packer = Packer::default();
        for text in [rules(20), rules(3), rules(2000), rules(20)] {
            let packed = packer.pack(&text);
            assert_eq!(packed, PackedText::pack(&text));
            assert_eq!(packed.unpack().as_deref(), Ok(text.as_str()));
        }
    }

    #[test]
    fn a_damaged_block_is_an_error_not_a_panic() {
        let mut packed = PackedText::pack(&rules(20));
        if let Repr::Lz4 { block, .. } = &mut packed.repr {
            let cut = block.len() / 2;
            *block = block[..cut].into();
        }
        let mut out = Vec::new();
        assert_eq!(packed.unpack_into(&mut out), Err(CorruptText));
        assert!(out.is_empty());
    }
}
