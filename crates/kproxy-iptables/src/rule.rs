//! A small writer for one iptables rule line, so quoting lives in one place.

use kproxy_model::Decimal;
use std::net::IpAddr;

/// Rule lines and how many there are, counted as they are written.
#[derive(Debug, Default)]
pub struct RuleText {
    /// The lines, each ending in `\n`.
    pub text: String,
    /// Number of lines in `text`.
    pub lines: usize,
}

impl RuleText {
    /// Starts the next line, `-A chain`.
    pub fn append(&mut self, chain: &str) -> RuleLine<'_> {
        self.lines += 1;
        RuleLine::append(&mut self.text, chain)
    }

    /// Empties the text, keeping its buffer.
    pub fn clear(&mut self) {
        self.text.clear();
        self.lines = 0;
    }
}

/// Appends one rule line (`-A CHAIN args…\n`) to a buffer, word by word.
pub struct RuleLine<'a> {
    out: &'a mut String,
}

impl<'a> RuleLine<'a> {
    /// Starts `-A chain` in `out`.
    pub fn append(out: &'a mut String, chain: &str) -> Self {
        out.push_str("-A ");
        out.push_str(chain);
        RuleLine { out }
    }

    /// Adds words exactly as given (kproxy's own constant arguments).
    pub fn raw(self, words: &str) -> Self {
        if !words.is_empty() {
            self.out.push(' ');
            self.out.push_str(words);
        }
        self
    }

    /// Adds `-m comment --comment TEXT`, quoted when needed.
    pub fn comment(self, text: &str) -> Self {
        self.out.push_str(" -m comment --comment ");
        push_quoted(self.out, text);
        self
    }

    /// Adds one value word (an address, a port, a chain name).
    pub fn value(self, flag: &str, value: impl std::fmt::Display) -> Self {
        use std::fmt::Write;
        let _ = write!(self.out, " {flag} {value}");
        self
    }

    /// Adds one address word (`-d 10.0.0.1`), IPv4 written without the formatting
    /// machinery: a full sync writes several per endpoint.
    pub fn ip(self, flag: &str, ip: &IpAddr) -> Self {
        push_flag(self.out, flag);
        match ip {
            IpAddr::V4(v4) => {
                for (index, octet) in v4.octets().into_iter().enumerate() {
                    if index > 0 {
                        self.out.push('.');
                    }
                    push_decimal(self.out, u32::from(octet));
                }
            }
            IpAddr::V6(_) => {
                use std::fmt::Write;
                let _ = write!(self.out, "{ip}");
            }
        }
        self
    }

    /// Adds one port word (`--dport 80`).
    pub fn port(self, flag: &str, port: impl Into<u32>) -> Self {
        push_flag(self.out, flag);
        push_decimal(self.out, port.into());
        self
    }

    /// Adds `-j TARGET` and ends the line.
    pub fn jump(self, target: &str) {
        self.out.push_str(" -j ");
        self.out.push_str(target);
        self.out.push('\n');
    }

    /// Ends the line without a target.
    pub fn end(self) {
        self.out.push('\n');
    }
}

/// ` FLAG ` before a value word.
fn push_flag(out: &mut String, flag: &str) {
    out.push(' ');
    out.push_str(flag);
    out.push(' ');
}

/// A decimal number.
fn push_decimal(out: &mut String, value: u32) {
    for &digit in Decimal::new(value).digits() {
        out.push(char::from(digit));
    }
}

/// Longest comment iptables accepts.
const MAX_COMMENT_BYTES: usize = 255;

/// Writes a comment so that iptables-restore reads it back as exactly one word: bare when
/// it is made of safe characters (as upstream writes service names), otherwise in double
/// quotes with `"` and `\` escaped. Control characters become spaces, so no input can end
/// the line and start a rule of its own; overlong comments are cut at a character boundary.
pub fn push_quoted(out: &mut String, text: &str) {
    let safe = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/:._-".contains(&b));
    if safe && text.len() <= MAX_COMMENT_BYTES {
        out.push_str(text);
        return;
    }
    out.push('"');
    let plain = text.len() <= MAX_COMMENT_BYTES
        && text
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\');
    if plain {
        out.push_str(text);
        out.push('"');
        return;
    }
    let mut used = 0;
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        let extra = if c == '"' || c == '\\' { 1 } else { 0 };
        if used + c.len_utf8() + extra > MAX_COMMENT_BYTES {
            break;
        }
        used += c.len_utf8() + extra;
        if extra == 1 {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(text: &str) -> String {
        let mut out = String::new();
        push_quoted(&mut out, text);
        out
    }

    #[test]
    fn service_names_stay_bare_and_sentences_get_quotes() {
        assert_eq!(quoted("ns1/svc1:p80"), "ns1/svc1:p80");
        assert_eq!(
            quoted("ns1/svc1:p80 cluster IP"),
            "\"ns1/svc1:p80 cluster IP\""
        );
    }

    #[test]
    fn addresses_and_ports_read_as_display_writes_them() {
        let mut rules = RuleText::default();
        for ip in ["10.0.0.1", "0.255.10.100", "fd00::1", "::ffff:1.2.3.4"] {
            let ip: IpAddr = ip.parse().expect("address");
            for port in [0u16, 9, 80, 65535] {
                rules.append("C").ip("-d", &ip).port("--dport", port).end();
                let line = format!("-A C -d {ip} --dport {port}\n");
                assert!(rules.text.ends_with(&line), "{}", rules.text);
            }
        }
        assert_eq!(rules.lines, 16);
        rules.clear();
        assert_eq!((rules.text.as_str(), rules.lines), ("", 0));
    }

    #[test]
    fn hostile_text_cannot_break_out() {
        let out = quoted("x\"\n-A KUBE-SERVICES -j ACCEPT \\");
        assert!(!out.contains('\n'));
        assert_eq!(out, "\"x\\\" -A KUBE-SERVICES -j ACCEPT \\\\\"");
        assert!(quoted(&"é".repeat(400)).len() <= MAX_COMMENT_BYTES + 2);
    }
}
