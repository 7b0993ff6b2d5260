//! Hash routing: key → canonical encoding → XXH64 (seed 0) → bucket = hash mod buckets.
//!
//! Canonical encoding of a key value *after* column affinity and collation folding (format 1,
//! frozen; see ARCHITECTURE.md):
//!
//! ```text
//!   NULL                          0x00
//!   INTEGER, or REAL that is an   0x01  i64 big-endian (8 bytes)
//!     integral value fitting i64
//!   other REAL                    0x02  IEEE-754 bits big-endian (8 bytes)
//!   TEXT                          0x03  UTF-8 bytes (NOCASE: ASCII-lowercased; RTRIM: trailing
//!                                       spaces removed)
//!   BLOB                          0x04  bytes
//! ```
//! Numerically equal values (5 and 5.0) therefore share a bucket, as SQLite compares them equal.

use xxhash_rust::xxh64::xxh64;

use super::{collate_key, BucketId};
use crate::value::{real_as_integer, Value};

pub const HASH_SEED: u64 = 0;

pub fn key_bytes(v: &Value, collation: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    match v {
        Value::Null => out.push(0),
        Value::Integer(i) => {
            out.push(1);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::Real(f) => match real_as_integer(*f) {
            Some(i) => {
                out.push(1);
                out.extend_from_slice(&i.to_be_bytes());
            }
            None => {
                out.push(2);
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
        },
        Value::Text(t) => {
            out.push(3);
            out.extend_from_slice(&collate_key(t, collation));
        }
        Value::Blob(b) => {
            out.push(4);
            out.extend_from_slice(b);
        }
    }
    out
}

pub fn key_hash(v: &Value, collation: &str) -> u64 {
    xxh64(&key_bytes(v, collation), HASH_SEED)
}

pub fn bucket_of(v: &Value, collation: &str, buckets: u32) -> BucketId {
    BucketId((key_hash(v, collation) % buckets as u64) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden vectors: these must never change (they decide where existing rows live).
    /// Cross-checked against an independent XXH64 (Python `xxhash`) when first pinned.
    #[test]
    fn golden_vectors() {
        let cases: &[(Value, u64)] = &[
            (Value::Null, 0xe934a84adb052768),
            (Value::Integer(0), 0xa2443c71157cb676),
            (Value::Integer(1), 0x46894e5a99fba7f0),
            (Value::Integer(-1), 0xe4a42358fe73e0b6),
            (Value::Integer(i64::MIN), 0x781d72b3df4e5192),
            (Value::text("u1"), 0xa939e21f343a8db6),
            (Value::text(""), 0x1f25c8d0bc1f4bb6),
            (Value::Real(1.5), 0x6c75a56da50ae37a),
            (Value::Blob(vec![0xde, 0xad]), 0xc014bbc541421dea),
        ];
        let mut report = String::new();
        for (v, want) in cases {
            let got = key_hash(v, "BINARY");
            if got != *want {
                report.push_str(&format!("{v:?} => 0x{got:016x} (pinned 0x{want:016x})\n"));
            }
        }
        assert!(report.is_empty(), "hash vectors changed:\n{report}");
        // buckets of the README example with 256 buckets
        assert_eq!(bucket_of(&Value::text("u1"), "BINARY", 256), BucketId((0xa939e21f343a8db6u64 % 256) as u32));
    }

    #[test]
    fn equal_values_hash_alike() {
        assert_eq!(key_hash(&Value::Integer(5), "BINARY"), key_hash(&Value::Real(5.0), "BINARY"));
        assert_ne!(key_hash(&Value::Integer(5), "BINARY"), key_hash(&Value::text("5"), "BINARY"));
        assert_eq!(key_hash(&Value::text("AbC"), "NOCASE"), key_hash(&Value::text("abc"), "NOCASE"));
        assert_eq!(key_hash(&Value::text("ab  "), "RTRIM"), key_hash(&Value::text("ab"), "RTRIM"));
        assert_ne!(key_hash(&Value::text("AbC"), "BINARY"), key_hash(&Value::text("abc"), "BINARY"));
        assert_eq!(key_hash(&Value::Real(-0.0), "BINARY"), key_hash(&Value::Integer(0), "BINARY"));
    }
}
