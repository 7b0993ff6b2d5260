//! Prefix routing: one shard file per distinct key prefix (pure).
//!
//! The key (after column affinity) is turned into text: TEXT as is, INTEGER in decimal, REAL as
//! SQLite prints it, BLOB bytes as text. Collation folding applies first (NOCASE lowercases
//! ASCII, RTRIM drops trailing spaces) so keys equal under the column's collation share a file.
//! Then:
//! - with `prefix_sep`: the prefix is the text up to (not including) the `depth`-th separator;
//!   a key with fewer separators is its own prefix (documented home: the whole key);
//! - then, with `prefix_len`: the prefix is cut to at most that many characters.
//!
//! NULL keys have no prefix and live in the dedicated NULL shard.
//! Invariant used by pruning: every key in shard P starts with P (byte-wise, after folding).
//!
//! File names: `p-<safe>-<xxh64(prefix) as 8 hex>.db`, where `<safe>` keeps `[A-Za-z0-9_.-]`
//! of the first 40 characters and maps anything else to `_` (so no name can leave the dir);
//! the NULL shard is `p-null.db`.

use xxhash_rust::xxh64::xxh64;

use super::collate_key;
use crate::value::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct PrefixRule {
    pub sep: Option<String>,
    pub depth: u32,
    pub len: Option<u32>,
}

/// The prefix of a key, or None for NULL.
pub fn prefix_of(v: &Value, rule: &PrefixRule, collation: &str) -> Option<String> {
    if v.is_null() {
        return None;
    }
    let text = collate_key(&v.to_text(), collation);
    let text = String::from_utf8_lossy(&text).into_owned();
    let mut p: &str = &text;
    if let Some(sep) = &rule.sep {
        let mut from = 0;
        let mut found = 0;
        while let Some(pos) = text[from..].find(sep.as_str()) {
            found += 1;
            if found == rule.depth {
                p = &text[..from + pos];
                break;
            }
            from += pos + sep.len();
        }
    }
    let mut out = p.to_string();
    if let Some(n) = rule.len {
        if let Some((idx, _)) = out.char_indices().nth(n as usize) {
            out.truncate(idx);
        }
    }
    Some(out)
}

pub fn prefix_file_name(prefix: Option<&str>) -> String {
    match prefix {
        None => "p-null.db".into(),
        Some(p) => {
            let safe: String = p
                .chars()
                .take(40)
                .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' { c } else { '_' })
                .collect();
            format!("p-{safe}-{:08x}.db", (xxh64(p.as_bytes(), 0) >> 32) as u32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(sep: Option<&str>, depth: u32, len: Option<u32>) -> PrefixRule {
        PrefixRule { sep: sep.map(|s| s.to_string()), depth, len }
    }

    #[test]
    fn separators_and_depth() {
        let r = rule(Some(":"), 2, None);
        assert_eq!(prefix_of(&Value::text("acme:2025:01:x"), &r, "BINARY").as_deref(), Some("acme:2025"));
        assert_eq!(prefix_of(&Value::text("acme:2025"), &r, "BINARY").as_deref(), Some("acme:2025"));
        assert_eq!(prefix_of(&Value::text("acme"), &r, "BINARY").as_deref(), Some("acme"));
        let r1 = rule(Some("::"), 1, None);
        assert_eq!(prefix_of(&Value::text("a::b::c"), &r1, "BINARY").as_deref(), Some("a"));
        assert_eq!(prefix_of(&Value::Null, &r1, "BINARY"), None);
    }

    #[test]
    fn length_and_numbers() {
        let r = rule(None, 1, Some(2));
        assert_eq!(prefix_of(&Value::text("héllo"), &r, "BINARY").as_deref(), Some("hé"));
        assert_eq!(prefix_of(&Value::Integer(12345), &r, "BINARY").as_deref(), Some("12"));
        assert_eq!(prefix_of(&Value::Integer(7), &r, "BINARY").as_deref(), Some("7"));
        assert_eq!(prefix_of(&Value::text("ABc"), &r, "NOCASE").as_deref(), Some("ab"));
        let both = rule(Some(":"), 1, Some(3));
        assert_eq!(prefix_of(&Value::text("tenant:9"), &both, "BINARY").as_deref(), Some("ten"));
    }

    #[test]
    fn file_names_are_safe() {
        assert_eq!(prefix_file_name(None), "p-null.db");
        let n = prefix_file_name(Some("../../etc/passwd"));
        assert!(n.starts_with("p-.._.._etc_passwd-") && !n.contains('/'), "{n}");
        assert_ne!(prefix_file_name(Some("a/b")), prefix_file_name(Some("a_b")));
        assert!(prefix_file_name(Some("")).starts_with("p--"));
    }
}
