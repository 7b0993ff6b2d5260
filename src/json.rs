//! JSON text output shared by every function that returns JSON (I/O stats, aggregates as JSON,
//! outbox envelopes, debug info). Writing only: the extension never parses JSON.
//!
//! Strings are escaped per RFC 8259: `"` and `\` escaped, control characters as `\n`, `\r`,
//! `\t` or `\u00XX`; everything else (including non-ASCII) passes through as UTF-8.

/// Appends `s` as a JSON string literal.
pub fn push_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    // copy runs of bytes that need no escape at once (bytes >= 0x80 are parts of UTF-8
    // characters, copied as they are)
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc = match c {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            c if c < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            use std::fmt::Write;
            let _ = write!(out, "\\u{:04x}", c);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// `s` as a JSON string literal.
pub fn string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    push_string(&mut o, s);
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        assert_eq!(super::string("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
        assert_eq!(super::string("\r\t\u{1f}x\u{7f}€"), "\"\\r\\t\\u001fx\u{7f}€\"");
        assert_eq!(super::string(""), "\"\"");
    }
}
