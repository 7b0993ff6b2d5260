//! The write side: recording changes in a shard's outbox inside the shard transaction.
//!
//! Per host transaction (reset by `end_txn`): a `txid` (16 hex digits, made on the first
//! change), a change counter `tn` (1, 2, … in the order the changes were made, across shards),
//! and the first outbox `seq` written on each shard. Because the shard is write-locked from its
//! first write until COMMIT and `seq` is max + 1, the rows `seq >= first` of a shard are
//! exactly this transaction's (savepoint rollbacks remove some of them, never add others).
//!
//! `seal` (xSync, before any shard commits, all shard locks held): allocate one csn from the
//! clock (`store`) and write it into the transaction's rows on every shard that kept some (they
//! were inserted with the placeholder [`UNSEALED`], the same 8-byte size, so the update rewrites
//! them in place on pages the transaction has already dirtied). `redo_rows` then reads those
//! rows back for the multi-shard redo record (`txn`), and `apply_redo` writes them during
//! recovery, so a recovered shard gets its outbox rows too.
//!
//! REPLACE victims: `INSERT/UPDATE OR REPLACE` may make SQLite delete other rows of the shard
//! (a conflicting rowid or UNIQUE value). To record those as deletes, a shard connection used
//! for a REPLACE write gets a TEMP trigger (`recursive_triggers=ON` makes REPLACE fire delete
//! triggers) that copies each deleted row into `temp._shardvt_gone` while the table is armed
//! (a row with `rid IS NULL` present). `arm`/`disarm` bracket the write.
//! Temp objects and the outbox tables are created on first need: a statement that fails with
//! "no such table" runs the DDL and is retried once (a DDL rolled back with its transaction is
//! re-created the same way).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use crate::config::{quote_ident, TableConfig};
use crate::error::{Error, Result};
use crate::routing::ShardId;
use crate::shard::conn::ShardConn;
use crate::shard::SHARD_TABLE;
use crate::txn::{decode_row, encode_row, SideImage};
use crate::value::Value;

use super::envelope::ImageLayout;
use super::store::{now_secs, Store};
use super::{OUTBOX_TABLE, SHARD_DDL};

/// What a change is, as stored in the `op` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    Delete,
}

impl Op {
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
        }
    }
}

/// Whether a row write is a change of its own or half of a shard-key move (recorded once, as
/// an update, by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    Change,
    PartOfMove,
}

/// csn of rows whose transaction has not reached COMMIT yet (same 8-byte size as a real csn,
/// so `seal` updates rows in place; and larger than any real csn).
pub const UNSEALED: i64 = i64::MAX;
const RECORD_SQL: &str = "INSERT INTO _shardvt_outbox(csn, tn, txid, op, rid, before, after, ts) \
                          VALUES (9223372036854775807, ?1, ?2, ?3, ?4, ?5, ?6, ?7)";
/// The seq just written (asked once per shard and transaction; RETURNING on every insert costs more).
const LAST_SEQ_SQL: &str = "SELECT max(seq) FROM _shardvt_outbox";
const SEAL_SQL: &str = "UPDATE _shardvt_outbox SET csn = ?1 WHERE seq >= ?2";
const ANY_SQL: &str = "SELECT count(*) FROM (SELECT 1 FROM _shardvt_outbox WHERE seq >= ?1 LIMIT 1)";
const ARM_SQL: &str = "INSERT INTO temp._shardvt_gone(rid) VALUES (NULL)";
const CLEAR_SQL: &str = "DELETE FROM temp._shardvt_gone";
const REDO_SQL: &str = "SELECT seq, csn, tn, txid, op, rid, before, after, ts FROM _shardvt_outbox WHERE seq >= ?1";

fn missing_table(e: &Error) -> bool {
    e.message.contains("no such table")
}

/// Runs `f`; if it failed because a table is missing, runs `ddl` and `f` once more.
fn with_ddl<T>(c: &mut ShardConn, ddl: &str, mut f: impl FnMut(&mut ShardConn) -> Result<T>) -> Result<T> {
    match f(c) {
        Err(e) if missing_table(&e) => {
            c.conn.exec(ddl)?;
            f(c)
        }
        r => r,
    }
}

fn new_txid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut seed = Vec::with_capacity(40);
    seed.extend_from_slice(&t.to_le_bytes());
    seed.extend_from_slice(&(std::process::id() as u64).to_le_bytes());
    seed.extend_from_slice(&n.to_le_bytes());
    seed.extend_from_slice(&(&COUNTER as *const _ as u64).to_le_bytes());
    format!("{:016x}", xxhash_rust::xxh64::xxh64(&seed, 0x6f75_7462_6f78))
}

pub struct Capture {
    pub layout: ImageLayout,
    select_image: String,
    gone_ddl: String,
    gone_read: String,
    txid: Option<String>,
    next_tn: i64,
    first_seq: BTreeMap<ShardId, i64>,
    /// (shard, first seq of this transaction) sealed by `seal`
    sealed: Vec<(ShardId, i64)>,
    /// shard connections that got the REPLACE-victim temp objects (a reopened connection
    /// lacks them: the "no such table" retry re-creates them)
    gone_ready: HashSet<ShardId>,
    pub store: Store,
    /// `outbox_retention`: seconds an acknowledged change is kept before a purge may delete it
    pub retention_secs: u64,
    /// a ROLLBACK TO (statement or savepoint) ran in this transaction: some shards may have
    /// lost all their outbox rows, so `seal` checks each one
    partial_rollback: bool,
}

impl Capture {
    pub fn new(cfg: &TableConfig) -> Capture {
        let layout = ImageLayout { names: cfg.columns.iter().map(|c| c.name.clone()).collect(), rowid_alias: cfg.rowid_alias() };
        let stored: Vec<String> = layout.stored().map(|n| quote_ident(n)).collect();
        let list = if stored.is_empty() { "NULL".to_string() } else { stored.join(", ") };
        let temp_cols: String = (0..stored.len()).map(|i| format!(", c{i}")).collect();
        let old_vals: String = stored.iter().map(|n| format!(", old.{n}")).collect();
        let gone_ddl = format!(
            "PRAGMA recursive_triggers = ON;\n\
             CREATE TEMP TABLE IF NOT EXISTS _shardvt_gone(rid{temp_cols});\n\
             CREATE TEMP TRIGGER IF NOT EXISTS _shardvt_gone_capture AFTER DELETE ON main.{SHARD_TABLE}\n\
             WHEN EXISTS (SELECT 1 FROM temp._shardvt_gone WHERE rid IS NULL)\n\
             BEGIN INSERT INTO temp._shardvt_gone VALUES (old.rowid{old_vals}); END;"
        );
        let gone_read = format!(
            "SELECT rid{} FROM temp._shardvt_gone WHERE rid IS NOT NULL ORDER BY rowid",
            (0..stored.len()).map(|i| format!(", c{i}")).collect::<String>()
        );
        Capture {
            select_image: format!("SELECT {list} FROM {SHARD_TABLE} WHERE rowid = ?1"),
            layout,
            gone_ddl,
            gone_read,
            txid: None,
            next_tn: 0,
            first_seq: BTreeMap::new(),
            sealed: Vec::new(),
            gone_ready: HashSet::new(),
            store: Store::default(),
            retention_secs: cfg.outbox_retention,
            partial_rollback: false,
        }
    }

    fn stored_count(&self) -> usize {
        self.layout.stored().count()
    }

    /// The JSON image of row `rid` as the shard holds it now (None: no such row).
    pub fn image(&self, c: &mut ShardConn, rid: i64) -> Result<Option<String>> {
        let n = self.stored_count();
        let mut st = c.take(&self.select_image)?;
        let r = st.bind_i64(1, rid).and_then(|_| st.step()).map(|found| {
            found.then(|| {
                let vals: Vec<Value> = (0..n).map(|i| st.column_value(i)).collect();
                self.layout.image(rid, &vals)
            })
        });
        c.give(&self.select_image, st);
        r
    }

    /// Before a REPLACE write: start copying rows that SQLite deletes into temp._shardvt_gone.
    pub fn arm(&mut self, id: ShardId, c: &mut ShardConn) -> Result<()> {
        if self.gone_ready.insert(id) {
            c.conn.exec(&self.gone_ddl)?;
        }
        with_ddl(c, &self.gone_ddl, |c| {
            c.run(CLEAR_SQL, |_| Ok(()))?;
            c.run(ARM_SQL, |_| Ok(()))
        })
        .map(|_| ())
    }

    /// After a REPLACE write (also when it failed): stop copying; the deleted rows' images.
    pub fn disarm(&self, c: &mut ShardConn) -> Result<Vec<(i64, String)>> {
        let n = self.stored_count();
        let mut out = Vec::new();
        let mut st = c.take(&self.gone_read)?;
        let r = (|| -> Result<()> {
            while st.step()? {
                let rid = st.column_i64(0);
                let vals: Vec<Value> = (0..n).map(|i| st.column_value(i + 1)).collect();
                out.push((rid, self.layout.image(rid, &vals)));
            }
            Ok(())
        })();
        c.give(&self.gone_read, st);
        c.run(CLEAR_SQL, |_| Ok(()))?;
        r.map(|_| out)
    }

    /// Appends one change to shard `id`'s outbox (the shard is in the write transaction).
    pub fn record(&mut self, id: ShardId, c: &mut ShardConn, op: Op, rid: i64, before: Option<&str>, after: Option<&str>) -> Result<()> {
        let txid = self.txid.get_or_insert_with(new_txid).clone();
        self.next_tn += 1;
        let tn = self.next_tn;
        let ts = now_secs();
        let text = |s: Option<&str>| s.map(Value::text).unwrap_or(Value::Null);
        with_ddl(c, SHARD_DDL, |c| {
            c.run(RECORD_SQL, |st| {
                st.bind_i64(1, tn)?;
                st.bind(2, &Value::text(&txid))?;
                st.bind(3, &Value::text(op.code()))?;
                st.bind_i64(4, rid)?;
                st.bind(5, &text(before))?;
                st.bind(6, &text(after))?;
                st.bind(7, &Value::Real(ts))
            })
        })?;
        if !self.first_seq.contains_key(&id) {
            let mut st = c.take(LAST_SEQ_SQL)?;
            let seq = st.step().map(|_| st.column_i64(0));
            c.give(LAST_SEQ_SQL, st);
            self.first_seq.insert(id, seq?);
        }
        Ok(())
    }

    /// xSync: one csn for the transaction, written into its rows on every shard that kept some
    /// (rows `seq >= first`: the shard is locked by us, see the file header).
    pub fn seal(&mut self, conns: &mut BTreeMap<ShardId, ShardConn>, dir: &Path) -> Result<()> {
        self.sealed.clear();
        let mut kept = Vec::new();
        for (&id, &first) in &self.first_seq {
            let Some(c) = conns.get_mut(&id) else { continue };
            if c.txn_levels.is_none() {
                continue;
            }
            if !self.partial_rollback {
                kept.push((id, first)); // nothing was undone: the rows recorded here are all there
                continue;
            }
            let mut st = c.take(ANY_SQL)?;
            let any = st.bind_i64(1, first).and_then(|_| st.step()).map(|_| st.column_i64(0) > 0);
            c.give(ANY_SQL, st);
            if any? {
                kept.push((id, first));
            }
        }
        if kept.is_empty() {
            return Ok(());
        }
        let csn = self.store.next_csn(dir)?;
        for &(id, first) in &kept {
            let c = conns.get_mut(&id).expect("checked above");
            c.run(SEAL_SQL, |st| {
                st.bind_i64(1, csn)?;
                st.bind_i64(2, first)
            })?;
        }
        self.sealed = kept;
        Ok(())
    }

    /// The outbox rows `seal` covered, as side images for the multi-shard redo record.
    pub fn redo_rows(&self, conns: &mut BTreeMap<ShardId, ShardConn>) -> Result<Vec<SideImage>> {
        let mut out = Vec::new();
        for &(id, first) in &self.sealed {
            let c = conns.get_mut(&id).expect("sealed shards are open");
            let mut st = c.take(REDO_SQL)?;
            let r = (|| -> Result<()> {
                st.bind_i64(1, first)?;
                while st.step()? {
                    let vals: Vec<Value> = (1..9).map(|i| st.column_value(i)).collect();
                    out.push(SideImage { shard: id.0, table: OUTBOX_TABLE.into(), rid: st.column_i64(0), image: encode_row(&vals) });
                }
                Ok(())
            })();
            c.give(REDO_SQL, st);
            r?;
        }
        Ok(out)
    }

    /// The shard connections were closed (RENAME): their temp objects are gone.
    pub fn forget_connections(&mut self) {
        self.gone_ready.clear();
    }

    /// A ROLLBACK TO ran (statement rollback or savepoint).
    pub fn note_partial_rollback(&mut self) {
        self.partial_rollback = true;
    }

    /// Forgets the transaction (COMMIT, ROLLBACK, BEGIN).
    pub fn end_txn(&mut self) {
        self.partial_rollback = false;
        self.txid = None;
        self.next_tn = 0;
        self.first_seq.clear();
        self.sealed.clear();
    }
}

/// Creates the outbox tables in a new shard file (CREATE of the table, a new prefix shard).
pub fn create_tables(c: &ShardConn) -> Result<()> {
    c.conn.exec(SHARD_DDL)
}

/// Recovery: writes the outbox rows of a redo record into a shard (inside the recovery's shard
/// transaction). Idempotent (INSERT OR REPLACE by seq).
pub fn apply_redo(c: &crate::ffi::api::Connection, rows: &[(String, i64, Vec<u8>)]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    c.exec(SHARD_DDL)?;
    let mut st = c.prepare(
        "INSERT OR REPLACE INTO _shardvt_outbox(seq, csn, tn, txid, op, rid, before, after, ts) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for (table, rid, image) in rows {
        let vals = decode_row(image)?;
        if table != OUTBOX_TABLE || vals.len() != 8 {
            return Err(Error::catalog("sharded: corrupt outbox redo row in txlog.db"));
        }
        st.bind_i64(1, *rid)?;
        for (i, v) in vals.iter().enumerate() {
            st.bind(i + 2, v)?;
        }
        st.step()?;
        st.reset();
    }
    Ok(())
}
