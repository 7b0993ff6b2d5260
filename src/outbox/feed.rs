//! The read side, per shard: changes after a position, consumer lag, purge.
//!
//! Within a shard, (csn, tn) grows with seq: a transaction's rows are contiguous (the shard is
//! write-locked from its first write to its COMMIT), its tn grows with seq, and a later
//! transaction on the shard gets a larger csn (allocated while it holds the lock). Rows of a
//! transaction still in flight are invisible to other connections. So "the changes after
//! position P" is a suffix of the shard's outbox, found by binary search over seq
//! (`first_after`: about log2(rows) point lookups by rowid; no index needed).
//!
//! `barrier`: `BEGIN IMMEDIATE; COMMIT` waits until no transaction holds the shard's write lock.
//! A transaction holds the locks of all its shards from before its csn is allocated until it
//! commits them, so after the barrier every transaction with a csn <= a clock value read before
//! the barrier has committed (or rolled back) on this shard: the changes with csn <= that value
//! are final and an export never later discovers an older change. Writers wait at most for the
//! few microseconds the barrier holds the lock; the reading itself takes no lock.

use crate::error::Result;
use crate::shard::conn::ShardConn;
use crate::value::Value;

use super::envelope::{Change, Position};
use super::{OUTBOX_TABLE, SHARD_DDL};

/// Creates the outbox table if this shard never had one (no-op otherwise).
pub fn ensure_schema(c: &mut ShardConn) -> Result<()> {
    c.conn.exec(SHARD_DDL)
}

/// Waits until no writer holds the shard (see the file header). No-op for a shard in our own
/// write transaction.
pub fn barrier(c: &mut ShardConn) -> Result<()> {
    if c.txn_levels.is_some() || c.conn.in_transaction() {
        return Ok(());
    }
    c.conn.exec("BEGIN IMMEDIATE; COMMIT")
}

fn text(v: Value) -> Option<String> {
    match v {
        Value::Null => None,
        v => Some(String::from_utf8_lossy(&v.to_text()).into_owned()),
    }
}

fn scalar(c: &mut ShardConn, sql: &str, binds: &[i64]) -> Result<Option<i64>> {
    let mut st = c.take(sql)?;
    let mut r = Ok(());
    for (i, b) in binds.iter().enumerate() {
        r = r.and_then(|_| st.bind_i64(i + 1, *b));
    }
    let r = r.and_then(|_| st.step()).map(|row| match row {
        true => st.column_value(0).as_integer(),
        false => None,
    });
    c.give(sql, st);
    r
}

/// The first row at or after `seq`: (its seq, its position).
fn probe(c: &mut ShardConn, seq: i64) -> Result<Option<(i64, Position)>> {
    let sql = format!("SELECT seq, csn, tn FROM {OUTBOX_TABLE} WHERE seq >= ?1 ORDER BY seq LIMIT 1");
    let mut st = c.take(&sql)?;
    let r = st
        .bind_i64(1, seq)
        .and_then(|_| st.step())
        .map(|row| row.then(|| (st.column_i64(0), Position { csn: st.column_i64(1), tn: st.column_i64(2) })));
    c.give(&sql, st);
    r
}

/// The smallest seq whose change comes after `p` (None: no such change in this shard).
pub fn first_after(c: &mut ShardConn, p: Position) -> Result<Option<i64>> {
    let Some(min) = scalar(c, &format!("SELECT min(seq) FROM {OUTBOX_TABLE}"), &[])? else { return Ok(None) };
    let max = scalar(c, &format!("SELECT max(seq) FROM {OUTBOX_TABLE}"), &[])?.unwrap_or(min);
    // after(s): the first row at or after s comes after p (true past the end); monotone in s.
    let (mut lo, mut hi) = (min, max.saturating_add(1));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let after = probe(c, mid)?.is_none_or(|(_, pos)| pos > p);
        if after {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(probe(c, lo)?.map(|(seq, _)| seq))
}

/// Up to `max` changes of this shard after `from` with csn <= `upto`, in order.
pub fn read_changes(c: &mut ShardConn, shard: u32, from: Position, upto: i64, max: usize) -> Result<Vec<Change>> {
    let Some(start) = first_after(c, from)? else { return Ok(Vec::new()) };
    let sql = format!("SELECT seq, csn, tn, txid, op, rid, before, after, ts FROM {OUTBOX_TABLE} WHERE seq >= ?1 ORDER BY seq");
    let mut out = Vec::new();
    let mut st = c.take(&sql)?;
    let r = (|| -> Result<()> {
        st.bind_i64(1, start)?;
        while out.len() < max && st.step()? {
            let csn = st.column_i64(1);
            if csn > upto {
                break; // committed after the export began (or, in another shard, not final yet)
            }
            let (after, after_packed) = match st.column_value(7) {
                Value::Blob(b) => (None, Some(b)),
                v => (text(v), None),
            };
            out.push(Change {
                csn,
                tn: st.column_i64(2),
                shard,
                seq: st.column_i64(0),
                txid: super::capture::txid_text(st.column_value(3)),
                op: text(st.column_value(4)).unwrap_or_default(),
                rid: st.column_i64(5),
                before: text(st.column_value(6)),
                after,
                after_packed,
                ts: match st.column_value(8) {
                    Value::Real(f) => f,
                    Value::Integer(i) => i as f64,
                    _ => 0.0,
                },
            });
        }
        Ok(())
    })();
    c.give(&sql, st);
    r.map(|_| out)
}

/// Changes of this shard after position `p` (a consumer's lag here).
pub fn count_after(c: &mut ShardConn, p: Position) -> Result<i64> {
    match first_after(c, p)? {
        None => Ok(0),
        Some(seq) => Ok(scalar(c, &format!("SELECT count(*) FROM {OUTBOX_TABLE} WHERE seq >= ?1"), &[seq])?.unwrap_or(0)),
    }
}

/// Changes retained in this shard's outbox.
pub fn count_all(c: &mut ShardConn) -> Result<i64> {
    Ok(scalar(c, &format!("SELECT count(*) FROM {OUTBOX_TABLE}"), &[])?.unwrap_or(0))
}

/// Deletes the changes at or before `p` (every consumer acknowledged them). Returns how many.
/// Skips a shard in our own write transaction.
pub fn purge(c: &mut ShardConn, p: Position) -> Result<i64> {
    if c.txn_levels.is_some() || c.conn.in_transaction() {
        return Ok(0);
    }
    let keep_from = match first_after(c, p)? {
        Some(seq) => seq,
        None => match scalar(c, &format!("SELECT max(seq) FROM {OUTBOX_TABLE}"), &[])? {
            Some(max) => max + 1,
            None => return Ok(0),
        },
    };
    if scalar(c, &format!("SELECT min(seq) FROM {OUTBOX_TABLE}"), &[])?.is_none_or(|min| min >= keep_from) {
        return Ok(0);
    }
    c.conn.exec("BEGIN IMMEDIATE")?;
    let r = (|| -> Result<i64> {
        let mut del = c.conn.prepare(&format!("DELETE FROM {OUTBOX_TABLE} WHERE seq < ?1"))?;
        del.bind_i64(1, keep_from)?;
        del.step()?;
        Ok(c.conn.changes())
    })();
    match r {
        Ok(n) => {
            c.conn.exec("COMMIT")?;
            Ok(n)
        }
        Err(e) => {
            let _ = c.conn.exec("ROLLBACK");
            Err(e)
        }
    }
}
