//! JSON row images, change envelopes and cursors (pure: no SQLite).
//!
//! Row image: a JSON object with every column of the table in declaration order, the INTEGER
//! PRIMARY KEY column (if any) holding the rowid. Values: NULL → `null`; INTEGER → number;
//! REAL → number in the shortest text that reads back as the same double (`1.0`, `0.1`, `1e300`;
//! ±infinity as `±9e999`, as SQLite's JSON does); TEXT → string (invalid UTF-8 replaced by
//! U+FFFD); BLOB → base64 string (RFC 4648, padded), as Debezium encodes bytes.
//!
//! Envelope (one change, Debezium-compatible field names):
//! ```text
//! {"op":"c"|"u"|"d","before":{..}|null,"after":{..}|null,
//!  "source":{"table":T,"shard":S,"seq":Q,"txid":X,"ts_ms":M,"csn":C,"tn":N,"rowid":R},
//!  "ts_ms":M,"cursor":"v1.C.N"}
//! ```
//! Cursor: `v1.<csn>.<tn>`, the position of the change in the table-wide order (csn, tn).
//! Consumers treat it as opaque; acknowledging it means "every change up to and including this
//! one". `Position::ZERO` (`v1.0.0`) is before every change.

use std::fmt::Write;

use crate::value::Value;

/// A position in the table-wide change order: commit sequence number, then change number
/// inside that transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub csn: i64,
    pub tn: i64,
}

impl Position {
    pub const ZERO: Position = Position { csn: 0, tn: 0 };

    pub fn cursor(&self) -> String {
        format!("v1.{}.{}", self.csn, self.tn)
    }

    /// Parses a cursor made by [`Position::cursor`]; None for anything else.
    pub fn parse(cursor: &str) -> Option<Position> {
        let rest = cursor.trim().strip_prefix("v1.")?;
        let (c, t) = rest.split_once('.')?;
        let num = |s: &str| -> Option<i64> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        Some(Position { csn: num(c)?, tn: num(t)? })
    }
}

/// One captured change as stored in a shard's outbox, with its commit's csn.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub csn: i64,
    pub tn: i64,
    pub shard: u32,
    pub seq: i64,
    pub txid: String,
    pub op: String,
    pub rid: i64,
    pub before: Option<String>,
    pub after: Option<String>,
    /// the after image as stored packed (`packed`), until `unpack_after` makes it `after`
    pub after_packed: Option<Vec<u8>>,
    /// unix time, seconds
    pub ts: f64,
}

impl Change {
    /// Turns a packed after image into its JSON object (`after`).
    pub fn unpack_after(&mut self, layout: &ImageLayout) -> crate::error::Result<()> {
        if let Some(p) = self.after_packed.take() {
            self.after = Some(layout.image(self.rid, &super::packed::unpack(&p)?));
        }
        Ok(())
    }

    pub fn position(&self) -> Position {
        Position { csn: self.csn, tn: self.tn }
    }
}

/// The table-wide order of changes read from several shards: by (csn, tn), at most `max`.
/// Each shard's list is already in this order; merging them by sorting keeps it stable.
pub fn merge(mut changes: Vec<Change>, max: usize) -> Vec<Change> {
    changes.sort_by_key(|c| c.position());
    changes.truncate(max);
    changes
}

pub use crate::json::push_string as push_json_string;

pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { A[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { A[n as usize & 63] as char } else { '=' });
    }
    out
}

pub fn push_json_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Real(f) if f.is_finite() => {
            let _ = write!(out, "{f:?}");
        }
        Value::Real(f) if f.is_nan() => out.push_str("null"),
        Value::Real(f) => out.push_str(if *f > 0.0 { "9e999" } else { "-9e999" }),
        Value::Text(t) => push_json_string(out, &String::from_utf8_lossy(t)),
        Value::Blob(b) => push_json_string(out, &base64(b)),
    }
}

/// The names of a table's columns and which one (if any) is the rowid.
#[derive(Debug, Clone)]
pub struct ImageLayout {
    pub names: Vec<String>,
    pub rowid_alias: Option<usize>,
}

impl ImageLayout {
    /// Columns stored in the shard table (every column but the rowid alias), in order.
    pub fn stored(&self) -> impl Iterator<Item = &String> {
        self.names.iter().enumerate().filter(move |(i, _)| Some(*i) != self.rowid_alias).map(|(_, n)| n)
    }

    /// The row image: `stored` holds the values of [`ImageLayout::stored`] columns.
    pub fn image(&self, rid: i64, stored: &[Value]) -> String {
        let mut out = String::with_capacity(16 + self.names.len() * 16);
        out.push('{');
        let mut vals = stored.iter();
        for (i, n) in self.names.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(&mut out, n);
            out.push(':');
            if Some(i) == self.rowid_alias {
                let _ = write!(out, "{rid}");
            } else {
                push_json_value(&mut out, vals.next().unwrap_or(&Value::Null));
            }
        }
        out.push('}');
        out
    }
}

pub fn ts_ms(ts: f64) -> i64 {
    (ts * 1000.0).round() as i64
}

/// One change as a JSON envelope (see the file header).
pub fn envelope(out: &mut String, table: &str, c: &Change) {
    out.push_str("{\"op\":");
    push_json_string(out, &c.op);
    out.push_str(",\"before\":");
    out.push_str(c.before.as_deref().unwrap_or("null"));
    out.push_str(",\"after\":");
    out.push_str(c.after.as_deref().unwrap_or("null"));
    out.push_str(",\"source\":{\"table\":");
    push_json_string(out, table);
    let ms = ts_ms(c.ts);
    out.push_str(&format!(",\"shard\":{},\"seq\":{},\"txid\":", c.shard, c.seq));
    push_json_string(out, &c.txid);
    out.push_str(&format!(",\"ts_ms\":{ms},\"csn\":{},\"tn\":{},\"rowid\":{}}},\"ts_ms\":{ms},\"cursor\":", c.csn, c.tn, c.rid));
    push_json_string(out, &c.position().cursor());
    out.push('}');
}

/// A JSON array of envelopes, in the given order.
pub fn envelopes(table: &str, changes: &[Change]) -> String {
    let mut out = String::with_capacity(2 + changes.len() * 256);
    out.push('[');
    for (i, c) in changes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        envelope(&mut out, table, c);
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_roundtrip_and_order() {
        let p = Position { csn: 1718000000123456, tn: 7 };
        assert_eq!(p.cursor(), "v1.1718000000123456.7");
        assert_eq!(Position::parse(&p.cursor()), Some(p));
        assert_eq!(Position::parse("v1.0.0"), Some(Position::ZERO));
        for bad in ["", "v1", "v1.1", "v2.1.1", "v1.-1.2", "v1.1.x", "v1.1.2.3", "v1..1"] {
            assert_eq!(Position::parse(bad), None, "{bad}");
        }
        assert!(Position { csn: 2, tn: 1 } > Position { csn: 1, tn: 99 });
        assert!(Position { csn: 2, tn: 2 } > Position { csn: 2, tn: 1 });
    }

    #[test]
    fn base64_vectors() {
        // RFC 4648 §10
        for (i, o) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn images() {
        let l = ImageLayout { names: vec!["id".into(), "k".into(), "v\"x".into(), "r".into(), "b".into()], rowid_alias: Some(0) };
        assert_eq!(l.stored().cloned().collect::<Vec<_>>(), vec!["k", "v\"x", "r", "b"]);
        let img = l.image(5, &[Value::text("a\"\n\u{1}é"), Value::Null, Value::Real(1.0), Value::Blob(vec![0, 255])]);
        assert_eq!(img, r#"{"id":5,"k":"a\"\n\u0001é","v\"x":null,"r":1.0,"b":"AP8="}"#);
        let l2 = ImageLayout { names: vec!["a".into()], rowid_alias: None };
        assert_eq!(l2.image(1, &[Value::Real(0.1)]), r#"{"a":0.1}"#);
        assert_eq!(l2.image(1, &[Value::Real(f64::INFINITY)]), r#"{"a":9e999}"#);
        assert_eq!(l2.image(1, &[Value::Real(1e300)]), r#"{"a":1e300}"#);
        assert_eq!(l2.image(1, &[Value::Integer(i64::MIN)]), r#"{"a":-9223372036854775808}"#);
    }

    fn ch(csn: i64, tn: i64, shard: u32, seq: i64) -> Change {
        Change {
            csn,
            tn,
            shard,
            seq,
            txid: "00ff".into(),
            op: "u".into(),
            rid: 3,
            before: Some("{\"a\":1}".into()),
            after: Some("{\"a\":2}".into()),
            after_packed: None,
            ts: 1.5,
        }
    }

    #[test]
    fn merge_orders_by_commit_then_change_number() {
        // A transaction that touched shards 2 and 0: its changes interleave by tn, not by shard.
        let all = vec![ch(10, 1, 2, 5), ch(10, 3, 2, 6), ch(12, 1, 2, 7), ch(10, 2, 0, 9), ch(11, 1, 0, 10)];
        let got: Vec<(i64, i64)> = merge(all.clone(), 10).iter().map(|c| (c.csn, c.tn)).collect();
        assert_eq!(got, vec![(10, 1), (10, 2), (10, 3), (11, 1), (12, 1)]);
        assert_eq!(merge(all, 2).len(), 2);
    }

    #[test]
    fn envelope_text() {
        let s = envelopes("t", &[ch(10, 1, 2, 5)]);
        assert_eq!(
            s,
            r#"[{"op":"u","before":{"a":1},"after":{"a":2},"source":{"table":"t","shard":2,"seq":5,"txid":"00ff","ts_ms":1500,"csn":10,"tn":1,"rowid":3},"ts_ms":1500,"cursor":"v1.10.1"}]"#
        );
        assert_eq!(envelopes("t", &[]), "[]");
    }
}
