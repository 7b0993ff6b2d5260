//! The read side, per shard: changes after a position, consumer lag, purge.
//!
//! A shard's outbox is in commit order (seq), and csn grows with seq within a shard (a csn is
//! allocated while the shard is write-locked, so a later transaction on the shard gets a larger
//! one). "After position P = (csn, tn)" is therefore a suffix of each shard's outbox: the
//! transactions with csn > P.csn, plus the changes with tn > P.tn of the transaction P.csn.
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
use super::{COMMIT_TABLE, OUTBOX_TABLE, SHARD_DDL};

/// Creates the outbox tables if this shard never had any (no-op otherwise).
pub fn ensure_schema(c: &mut ShardConn) -> Result<()> {
    c.conn.exec(SHARD_DDL)
}

/// Waits until no writer holds the shard (see the file header). No-op for a shard in our own
/// write transaction (we hold the lock: every other writer is done or not yet sealed).
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

/// Up to `max` changes of this shard after `from` with csn <= `upto`, in order.
pub fn read_changes(c: &mut ShardConn, shard: u32, from: Position, upto: i64, max: usize) -> Result<Vec<Change>> {
    let commits = format!("SELECT last_seq, first_seq, csn, txid FROM {COMMIT_TABLE} WHERE csn >= ?1 AND csn <= ?2 ORDER BY csn");
    let rows = format!("SELECT seq, tn, op, rid, before, after, ts FROM {OUTBOX_TABLE} WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq");
    let mut out = Vec::new();
    let mut cst = c.take(&commits)?;
    let mut rst = match c.take(&rows) {
        Ok(s) => s,
        Err(e) => {
            c.give(&commits, cst);
            return Err(e);
        }
    };
    let r = (|| -> Result<()> {
        cst.bind_i64(1, from.csn)?;
        cst.bind_i64(2, upto)?;
        while out.len() < max && cst.step()? {
            let (last, first, csn) = (cst.column_i64(0), cst.column_i64(1), cst.column_i64(2));
            let txid = text(cst.column_value(3)).unwrap_or_default();
            rst.bind_i64(1, first)?;
            rst.bind_i64(2, last)?;
            while out.len() < max && rst.step()? {
                let tn = rst.column_i64(1);
                if (Position { csn, tn }) <= from {
                    continue;
                }
                out.push(Change {
                    csn,
                    tn,
                    shard,
                    seq: rst.column_i64(0),
                    txid: txid.clone(),
                    op: text(rst.column_value(2)).unwrap_or_default(),
                    rid: rst.column_i64(3),
                    before: text(rst.column_value(4)),
                    after: text(rst.column_value(5)),
                    ts: match rst.column_value(6) {
                        Value::Real(f) => f,
                        Value::Integer(i) => i as f64,
                        _ => 0.0,
                    },
                });
            }
            rst.reset();
        }
        Ok(())
    })();
    c.give(&rows, rst);
    c.give(&commits, cst);
    r.map(|_| out)
}

fn scalar(c: &mut ShardConn, sql: &str, binds: &[i64]) -> Result<i64> {
    let mut st = c.take(sql)?;
    let mut r = Ok(());
    for (i, b) in binds.iter().enumerate() {
        r = r.and_then(|_| st.bind_i64(i + 1, *b));
    }
    let r = r.and_then(|_| st.step()).map(|_| st.column_i64(0));
    c.give(sql, st);
    r
}

/// The highest seq of this shard at or before position `p` (0: none).
fn seq_through(c: &mut ShardConn, p: Position) -> Result<i64> {
    let whole = scalar(c, &format!("SELECT coalesce(max(last_seq), 0) FROM {COMMIT_TABLE} WHERE csn < ?1"), &[p.csn])?;
    let part = scalar(
        c,
        &format!(
            "SELECT coalesce(max(o.seq), 0) FROM {COMMIT_TABLE} k JOIN {OUTBOX_TABLE} o \
             ON o.seq BETWEEN k.first_seq AND k.last_seq WHERE k.csn = ?1 AND o.tn <= ?2"
        ),
        &[p.csn, p.tn],
    )?;
    Ok(whole.max(part))
}

/// Committed changes of this shard after position `p` (a consumer's lag here).
pub fn count_after(c: &mut ShardConn, p: Position) -> Result<i64> {
    let through = seq_through(c, p)?;
    scalar(
        c,
        &format!("SELECT count(*) FROM {OUTBOX_TABLE} WHERE seq > ?1"),
        &[through],
    )
}

/// Changes retained in this shard's outbox (committed ones).
pub fn count_all(c: &mut ShardConn) -> Result<i64> {
    count_after(c, Position::ZERO)
}

/// Deletes the changes at or before `p` (every consumer acknowledged them). Returns how many.
/// Skips a shard in our own write transaction.
pub fn purge(c: &mut ShardConn, p: Position) -> Result<i64> {
    if c.txn_levels.is_some() || c.conn.in_transaction() {
        return Ok(0);
    }
    let through = seq_through(c, p)?;
    let any = scalar(c, &format!("SELECT count(*) FROM (SELECT 1 FROM {OUTBOX_TABLE} WHERE seq <= ?1 LIMIT 1)"), &[through])?
        + scalar(c, &format!("SELECT count(*) FROM (SELECT 1 FROM {COMMIT_TABLE} WHERE last_seq <= ?1 LIMIT 1)"), &[through])?;
    if any == 0 {
        return Ok(0);
    }
    c.conn.exec("BEGIN IMMEDIATE")?;
    let r = (|| -> Result<i64> {
        let mut del = c.conn.prepare(&format!("DELETE FROM {OUTBOX_TABLE} WHERE seq <= ?1"))?;
        del.bind_i64(1, through)?;
        del.step()?;
        let n = c.conn.changes();
        drop(del);
        let mut del = c.conn.prepare(&format!("DELETE FROM {COMMIT_TABLE} WHERE last_seq <= ?1"))?;
        del.bind_i64(1, through)?;
        del.step()?;
        Ok(n)
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
