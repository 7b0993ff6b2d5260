//! Atomic multi-shard commit: a redo log beside the catalog, and its recovery.
//!
//! SQLite cannot commit several WAL files atomically, and a WAL transaction cannot be
//! "prepared" without being committed. So the decision is made durable *before* any shard
//! commits, as a redo record holding the final image of every row the transaction touched:
//!
//! 1. xSync (the host's COMMIT, before its own commit): if the transaction wrote to two or more
//!    shards, write to `<dir>/txlog.db`, in one `synchronous=FULL` transaction, a `txn` row
//!    (`state='pending'`, participant shards) and one `redo` row per touched (shard, rowid):
//!    the row's full image, or NULL when the row no longer exists. This is the commit point.
//!    Each shard also gets a marker row `_shardvt_txn(txid)` inside its open transaction.
//! 2. xCommit: commit every participant shard (marker and data together, atomically per file),
//!    then set `state='done'` (no fsync needed: see 4).
//! 3. A transaction that wrote to one shard writes no log at all (fast path).
//! 4. Recovery, for each logged transaction in txid order and each participant: if the shard has
//!    the marker, its part is there; otherwise (crash between shard commits, or a shard commit
//!    lost to power failure with synchronous=NORMAL) re-apply the images inside one shard
//!    transaction that also inserts the marker. Applying images is idempotent, so a crash during
//!    recovery is harmless. A shard is examined under its write lock (`BEGIN IMMEDIATE`), so a
//!    live committer (which holds the locks of all its participants until it commits them) is
//!    waited for, never raced. WAL prefix order guarantees that a shard missing a marker holds no
//!    later commit that the images could overwrite.
//!    - `pending` entries are resolved on connect, before every write transaction and before
//!      every scan whenever the log changed (one `PRAGMA data_version`).
//!    - `done` entries are checked on connect (a power loss may have dropped a shard commit), then
//!      the participants are checkpointed (which makes their commits durable) and the entries and
//!      markers are deleted.
//! 5. If the host rolls back after xSync (its own commit failed), the entry is deleted before the
//!    shard locks are released, so nobody can apply it.
//!
//! Redo image encoding (format 1): a sequence of values, one per non-rowid column in
//! declaration order; each value is a tag byte then its payload:
//! `0` NULL; `1` INTEGER i64 BE; `2` REAL f64 bits BE; `3` TEXT u32 BE length + bytes;
//! `4` BLOB u32 BE length + bytes.

pub mod group;
pub mod log;

use crate::error::{Error, Result};
use crate::value::Value;

pub const TXLOG_FILE: &str = "txlog.db";

pub const TXLOG_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS txn(
  txid    INTEGER PRIMARY KEY,
  state   TEXT NOT NULL CHECK (state IN ('prepared', 'pending', 'done')),
  shards  TEXT NOT NULL,              -- participant shard ids, comma-separated
  created REAL NOT NULL DEFAULT (julianday('now')),
  gtid    TEXT,                       -- prepared: the host transaction spanning several tables
  coord   TEXT                        -- prepared: path of the log holding its decision
);
CREATE TABLE IF NOT EXISTS decision(
  gtid    TEXT PRIMARY KEY,           -- decided multi-table transactions (commit points)
  created REAL NOT NULL DEFAULT (julianday('now'))
);
CREATE TABLE IF NOT EXISTS redo(
  txid   INTEGER NOT NULL,
  shard  INTEGER NOT NULL,
  images BLOB NOT NULL,               -- every touched row of the shard: see encode_images
  PRIMARY KEY (txid, shard)
) WITHOUT ROWID;
";

/// Rows of shard *side tables* (the outbox, `crate::outbox`) written by a multi-shard
/// transaction, so recovery restores them with the data rows. `table` names the shard table,
/// `rid` is the row's rowid there, `image` its other columns (encoded as `redo.image`).
pub const REDO_SIDE_DDL: &str = "
CREATE TABLE IF NOT EXISTS redo_side(
  txid  INTEGER NOT NULL,
  shard INTEGER NOT NULL,
  tbl   TEXT NOT NULL,                -- shard table: _shardvt_outbox, _shardvt_outbox_commit
  rid   INTEGER NOT NULL,             -- its rowid (seq); -1: a batch of rows (SIDE_BATCH)
  image BLOB NOT NULL,                -- its other columns, encoded as redo.image
  PRIMARY KEY (txid, shard, tbl, rid)
) WITHOUT ROWID;
";

/// `redo_side.rid` of a batch row: its image holds many rows of one side table, encoded as
/// `redo.images` (side tables' rowids are positive, so it never names a real row).
pub const SIDE_BATCH: i64 = -1;

/// One row of a side table for the redo record (see [`REDO_SIDE_DDL`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SideImage {
    pub shard: u32,
    pub table: String,
    pub rid: i64,
    pub image: Vec<u8>,
}

/// The marker table inside every shard file.
pub const MARKER_DDL: &str = "CREATE TABLE IF NOT EXISTS _shardvt_txn(txid INTEGER PRIMARY KEY)";

pub fn encode_row(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 9);
    for v in values {
        match v {
            Value::Null => out.push(0),
            Value::Integer(i) => {
                out.push(1);
                out.extend_from_slice(&i.to_be_bytes());
            }
            Value::Real(f) => {
                out.push(2);
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
            Value::Text(t) | Value::Blob(t) => {
                out.push(if matches!(v, Value::Text(_)) { 3 } else { 4 });
                out.extend_from_slice(&(t.len() as u32).to_be_bytes());
                out.extend_from_slice(t);
            }
        }
    }
    out
}

pub fn decode_row(mut b: &[u8]) -> Result<Vec<Value>> {
    let bad = || Error::catalog("sharded: corrupt redo image in txlog.db");
    let mut out = Vec::new();
    while let Some((&tag, rest)) = b.split_first() {
        b = rest;
        let take = |b: &mut &[u8], n: usize| -> Result<Vec<u8>> {
            if b.len() < n {
                return Err(bad());
            }
            let (h, t) = b.split_at(n);
            *b = t;
            Ok(h.to_vec())
        };
        let v = match tag {
            0 => Value::Null,
            1 => Value::Integer(i64::from_be_bytes(take(&mut b, 8)?.try_into().unwrap())),
            2 => Value::Real(f64::from_bits(u64::from_be_bytes(take(&mut b, 8)?.try_into().unwrap()))),
            3 | 4 => {
                let n = u32::from_be_bytes(take(&mut b, 4)?.try_into().unwrap()) as usize;
                let bytes = take(&mut b, n)?;
                if tag == 3 {
                    Value::Text(bytes)
                } else {
                    Value::Blob(bytes)
                }
            }
            _ => return Err(bad()),
        };
        out.push(v);
    }
    Ok(out)
}

/// One shard's redo images in one BLOB (a b-tree insert per shard, not per row):
/// repeated `rid: i64 BE`, `len: u32 BE` (0xFFFFFFFF: the row is deleted), `len` image bytes.
pub fn encode_images(rows: &[(i64, Option<Vec<u8>>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.iter().map(|r| 12 + r.1.as_ref().map_or(0, |i| i.len())).sum());
    for (rid, img) in rows {
        out.extend_from_slice(&rid.to_be_bytes());
        match img {
            None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
            Some(b) => {
                out.extend_from_slice(&(b.len() as u32).to_be_bytes());
                out.extend_from_slice(b);
            }
        }
    }
    out
}

pub fn decode_images(mut b: &[u8]) -> Result<Vec<(i64, Option<Vec<u8>>)>> {
    let bad = || Error::catalog("sharded: corrupt redo images in txlog.db");
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < 12 {
            return Err(bad());
        }
        let rid = i64::from_be_bytes(b[..8].try_into().unwrap());
        let len = u32::from_be_bytes(b[8..12].try_into().unwrap());
        b = &b[12..];
        if len == u32::MAX {
            out.push((rid, None));
        } else {
            let n = len as usize;
            if b.len() < n {
                return Err(bad());
            }
            out.push((rid, Some(b[..n].to_vec())));
            b = &b[n..];
        }
    }
    Ok(out)
}

pub fn parse_shard_list(s: &str) -> Vec<u32> {
    s.split(',').filter_map(|x| x.trim().parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_roundtrip() {
        let row = vec![
            Value::Null,
            Value::Integer(i64::MIN),
            Value::Real(-0.5),
            Value::text("héllo"),
            Value::Blob(vec![0, 1, 255]),
            Value::text(""),
        ];
        assert_eq!(decode_row(&encode_row(&row)).unwrap(), row);
        assert!(decode_row(&[9]).is_err());
        assert!(decode_row(&[3, 0, 0, 0, 5, b'a']).is_err());
        assert_eq!(parse_shard_list("0,3, 7"), vec![0, 3, 7]);
        let imgs = vec![(5, Some(vec![1, 2, 3])), (-9, None), (i64::MAX, Some(vec![]))];
        assert_eq!(decode_images(&encode_images(&imgs)).unwrap(), imgs);
        assert!(decode_images(&[0; 5]).is_err());
        assert!(decode_images(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9, 1]).is_err());
    }
}
