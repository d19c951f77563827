//! The two places untrusted text meets nft syntax: object names and quoted comments.

/// nftables' limit on object names (bytes).
pub const MAX_NAME_LEN: usize = 256;

/// nftables' limit on comments (bytes).
pub const MAX_COMMENT_LEN: usize = 128;

/// Whether `name` can be written unquoted as a table, chain, set or map name: it starts
/// with a letter and holds only letters, digits and `-_./`.
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let Some(first) = bytes.next() else {
        return false;
    };
    name.len() <= MAX_NAME_LEN
        && first.is_ascii_alphabetic()
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
}

/// Quotes a comment. Characters that could end the string or the line (quotes,
/// backslashes, control characters) become `_`, and the text is cut to nft's limit, so a
/// comment can never carry syntax.
pub fn quote_comment(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    let mut used = 0;
    for c in text.chars() {
        let c = if c == '"' || c == '\\' || c.is_control() {
            '_'
        } else {
            c
        };
        if used + c.len_utf8() > MAX_COMMENT_LEN {
            break;
        }
        used += c.len_utf8();
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name("service-ULMVA6XW-ns1/svc1/tcp/p80"));
        assert!(is_valid_name("endpoint-X-ns/s/tcp/__10.0.0.1/80"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name("a;flush ruleset"));
        assert!(!is_valid_name("-x"));
        assert!(!is_valid_name(&"a".repeat(257)));
    }

    #[test]
    fn comments_cannot_escape() {
        assert_eq!(quote_comment("ns1/svc1:p80"), "\"ns1/svc1:p80\"");
        assert_eq!(
            quote_comment("a\" ; flush ruleset"),
            "\"a_ ; flush ruleset\""
        );
        assert_eq!(quote_comment("x\ny"), "\"x_y\"");
        assert_eq!(quote_comment(&"é".repeat(100)).len(), 2 + 128);
    }
}
