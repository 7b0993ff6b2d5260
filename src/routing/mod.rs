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
