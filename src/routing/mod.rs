//! Routing: which shard a key lives in, and which shards a query must visit (pure).
//!
//! - `hash`: key value → canonical bytes → XXH64 → bucket; bucket → shard via the catalog map.
//! - `prefix`: key value → prefix string → one shard file per prefix.
//! - `prune`: constraints on the key → the set of shards that may hold matching rows.
//!
//! Everything here is an on-disk format or derived from one; ARCHITECTURE.md specifies it and
//! golden vectors in the tests pin it.

pub mod hash;
pub mod prefix;
pub mod prune;

/// Shard number inside one table (index into the catalog's `shards` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u32);

/// Hasher for maps keyed by [`ShardId`]: the id's integer spread by one multiply (ids are
/// small dense integers; SipHash's setup showed in per-statement profiles).
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = (v as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Virtual bucket number (hash strategy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketId(pub u32);

/// Normalises text for a collation so that values equal under it hash alike.
/// NOCASE folds ASCII only (as SQLite does); RTRIM drops trailing spaces.
pub fn collate_key(bytes: &[u8], collation: &str) -> Vec<u8> {
    match collation {
        "NOCASE" => bytes.to_ascii_lowercase(),
        "RTRIM" => {
            let mut end = bytes.len();
            while end > 0 && bytes[end - 1] == b' ' {
                end -= 1;
            }
            bytes[..end].to_vec()
        }
        _ => bytes.to_vec(),
    }
}
