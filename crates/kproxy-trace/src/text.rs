//! Pieces of ruleset text that share the parsed source instead of owning a copy.
//!
//! A large ruleset has hundreds of thousands of rules, each with a comment and a jump
//! target; sharing them with the source text keeps parsing and dropping cheap.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// An immutable string that is a range of a shared text.
#[derive(Clone)]
pub struct Text {
    source: Arc<String>,
    start: u32,
    end: u32,
}

impl Text {
    /// The text as a `&str`.
    pub fn as_str(&self) -> &str {
        &self.source[self.start as usize..self.end as usize]
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        let end = s.len() as u32;
        Text {
            source: Arc::new(s.to_owned()),
            start: 0,
            end,
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The source text being parsed; makes [`Text`]s of its sub-slices without copying.
///
/// The text is an `Arc<String>` rather than an `Arc<str>` so that a file can be read
/// straight into it, without a copy.
pub(crate) struct TextSource {
    source: Arc<String>,
    /// The address of the text that the parsed slices point into: the source itself, or
    /// the original it was copied from.
    base: usize,
}

impl TextSource {
    /// Wraps a whole text. Texts larger than 4 GiB are copied piece by piece.
    pub fn new(source: Arc<String>) -> TextSource {
        let base = source.as_ptr() as usize;
        TextSource { source, base }
    }

    /// A shared copy of `original`; slices of `original` become [`Text`]s of the copy.
    /// Each parser thread copies its own chunk, so no reference count is shared between
    /// threads while parsing.
    pub fn copy_of(original: &str) -> TextSource {
        TextSource {
            source: Arc::new(original.to_owned()),
            base: original.as_ptr() as usize,
        }
    }

    /// A [`Text`] for `s`: shared if `s` lies inside the source, else a copy.
    pub fn text(&self, s: &str) -> Text {
        let at = s.as_ptr() as usize;
        let inside = at >= self.base && at + s.len() <= self.base + self.source.len();
        let start = at.wrapping_sub(self.base);
        match (u32::try_from(start), u32::try_from(start + s.len())) {
            (Ok(start), Ok(end)) if inside => Text {
                source: Arc::clone(&self.source),
                start,
                end,
            },
            _ => Text::from(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_of_the_source_are_shared_and_others_copied() {
        let src = TextSource::new(Arc::new("-A X -j KUBE-SVC-A".to_owned()));
        let whole = src.source.clone();
        let shared = src.text(&whole[8..]);
        assert_eq!(&*shared, "KUBE-SVC-A");
        assert!(Arc::ptr_eq(&shared.source, &whole));
        let copied = src.text("elsewhere");
        assert_eq!(copied.to_string(), "elsewhere");
        assert!(!Arc::ptr_eq(&copied.source, &whole));
    }

    #[test]
    fn slices_of_the_original_map_to_the_copy() {
        let original = String::from("-A X -j KUBE-SVC-A");
        let src = TextSource::copy_of(&original);
        let text = src.text(&original[8..]);
        assert_eq!(&*text, "KUBE-SVC-A");
        assert!(Arc::ptr_eq(&text.source, &src.source));
    }
}
