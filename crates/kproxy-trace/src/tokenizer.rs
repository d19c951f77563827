//! Shell-style splitting of one ruleset line into words.
//!
//! `iptables-save` double-quotes arguments that contain spaces (comments) and escapes `"`
//! and `\` inside them with a backslash. Single quotes are accepted too and are literal.

use std::borrow::Cow;

/// Why a line could not be split into words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenizeError {
    /// A quote was opened and the line ended before it was closed.
    #[error("unterminated {0} quote")]
    UnterminatedQuote(char),
    /// The line ended right after a backslash.
    #[error("line ends with a lone backslash")]
    TrailingBackslash,
}

/// Splits `line` into words, appending them to `words` (which is cleared first).
///
/// Words without quotes or escapes borrow from `line`; only quoted words allocate.
pub fn tokenize_into<'a>(
    line: &'a str,
    words: &mut Vec<Cow<'a, str>>,
) -> Result<(), TokenizeError> {
    words.clear();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !ENDS_PLAIN[usize::from(bytes[i])] {
            i += 1;
        }
        if i == bytes.len() || bytes[i].is_ascii_whitespace() {
            words.push(Cow::Borrowed(&line[start..i]));
            continue;
        }
        if let Some(end) = plain_double_quoted(bytes, start) {
            words.push(Cow::Borrowed(&line[start + 1..end - 1]));
            i = end;
            continue;
        }
        let (word, end) = quoted_word(line, start)?;
        words.push(Cow::Owned(word));
        i = end;
    }
    Ok(())
}

/// If the word at `start` is `"..."` with no escapes inside and whitespace (or the end)
/// after it, returns the offset just after the closing quote.
fn plain_double_quoted(bytes: &[u8], start: usize) -> Option<usize> {
    if bytes[start] != b'"' {
        return None;
    }
    let len = bytes[start + 1..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\')?;
    let close = start + 1 + len;
    let end = close + 1;
    let clean = bytes[close] == b'"' && bytes.get(end).is_none_or(u8::is_ascii_whitespace);
    clean.then_some(end)
}

/// Bytes that end a plain (unquoted, unescaped) word: ASCII whitespace, quotes, backslash.
const ENDS_PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = matches!(
            b as u8,
            b' ' | b'\t' | b'\n' | b'\r' | 0x0c | b'"' | b'\'' | b'\\'
        );
        b += 1;
    }
    table
};

/// Reads a word that contains quotes or escapes, starting at byte `start`.
/// Returns the unquoted word and the byte offset just after it.
fn quoted_word(line: &str, start: usize) -> Result<(String, usize), TokenizeError> {
    let mut word = String::new();
    let mut chars = line[start..].char_indices().peekable();
    while let Some(&(offset, c)) = chars.peek() {
        match c {
            c if c.is_ascii_whitespace() => return Ok((word, start + offset)),
            '\\' => {
                chars.next();
                let (_, escaped) = chars.next().ok_or(TokenizeError::TrailingBackslash)?;
                word.push(escaped);
            }
            '"' => {
                chars.next();
                loop {
                    match chars.next() {
                        None => return Err(TokenizeError::UnterminatedQuote('"')),
                        Some((_, '"')) => break,
                        Some((_, '\\')) => {
                            let (_, escaped) =
                                chars.next().ok_or(TokenizeError::UnterminatedQuote('"'))?;
                            word.push(escaped);
                        }
                        Some((_, other)) => word.push(other),
                    }
                }
            }
            '\'' => {
                chars.next();
                loop {
                    match chars.next() {
                        None => return Err(TokenizeError::UnterminatedQuote('\'')),
                        Some((_, '\'')) => break,
                        Some((_, other)) => word.push(other),
                    }
                }
            }
            other => {
                chars.next();
                word.push(other);
            }
        }
    }
    Ok((word, line.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        tokenize_into(line, &mut out).unwrap();
        out.into_iter().map(Cow::into_owned).collect()
    }

    #[test]
    fn plain_words_split_on_whitespace() {
        assert_eq!(words("-A  X\t-j Y "), ["-A", "X", "-j", "Y"]);
    }

    #[test]
    fn double_quotes_keep_spaces_and_unescape() {
        assert_eq!(
            words(r#"--comment "ns1/svc1:p80 cluster IP" -j X"#),
            ["--comment", "ns1/svc1:p80 cluster IP", "-j", "X"]
        );
        assert_eq!(words(r#""a \"b\" \\c""#), [r#"a "b" \c"#]);
        assert_eq!(words(r#"pre"mid dle"post"#), ["premid dlepost"]);
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(words(r"'a \b'"), [r"a \b"]);
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        let mut out = Vec::new();
        assert_eq!(
            tokenize_into(r#"--comment "open"#, &mut out),
            Err(TokenizeError::UnterminatedQuote('"'))
        );
        assert_eq!(
            tokenize_into(r"x\", &mut out),
            Err(TokenizeError::TrailingBackslash)
        );
    }
}
