//! The write side: recording changes in a shard's outbox inside the shard transaction.
//!
//! Per host transaction (reset by `end_txn`): a `txid` (16 hex digits, made on the first
//! change), a change counter `tn` (1, 2, … in the order the changes were made, across shards).
//!
//! STAGING. A change is first staged in memory (`record`); `seal` (xSync, before any shard
//! commits, all shard locks held) allocates one csn from the clock (`store`) and inserts the
//! staged rows into their shards' outboxes with that csn and explicit `seq`s (max + 1, …), so a
//! commit writes each outbox row once and the multi-shard redo record (`redo_rows`) is built
//! from memory. Savepoints: `savepoint`/`release`/`rollback_to` mirror SQLite's numbering; a
//! ROLLBACK TO drops the staged changes made after the savepoint (`tn` above its mark). A
//! savepoint (also a statement's) that opens while changes are staged spills them first, so
//! they are written at the level they were made in: invariant, every staged change came after
//! every open savepoint, so a spill may write all of them at the current level, and a shard's
//! outbox rows keep tn growing with seq (`feed` relies on it).
//!
//! SPILL. A transaction whose staged images pass [`SPILL_BYTES`] writes them into the shards
//! at once (`spill`), with the placeholder csn [`UNSEALED`] (same 8-byte size as a real csn), and
//! remembers the first spilled `seq` of each shard. Because the shard is write-locked from its
//! first write until COMMIT and `seq` is max + 1, the rows `seq >= first` of a spilled shard
//! are exactly this transaction's (savepoint rollbacks remove some of them, never add others);
//! `seal` rewrites their csn in place and `redo_rows` reads them back. `apply_redo` writes the
//! redo record's rows during recovery, so a recovered shard gets its outbox rows too.
//!
//! AFTER IMAGES of inserts are built from the inserted values when the column affinity's effect
//! on them is certain (`stored_exactly`) and stored packed (`packed`: a BLOB, turned into JSON
//! at export); otherwise (DEFAULTs, numeric text, …) they are read back from the shard as JSON.
//! The txid is stored as its 8 bytes (a BLOB; older rows hold the 16 hex digits as TEXT).
//!
//! REPLACE victims: `INSERT/UPDATE OR REPLACE` may make SQLite delete other rows of the shard
//! (a conflicting rowid or UNIQUE value). To record those as deletes, a shard connection used
//! for a REPLACE write gets a TEMP trigger (`recursive_triggers=ON` makes REPLACE fire delete
//! triggers) that copies each deleted row into `temp._shardvt_gone` while the table is armed
//! (a row with `rid IS NULL` present). `arm`/`disarm` bracket the write.
//! Temp objects and the outbox tables are created on first need: a statement that fails with
//! "no such table" runs the DDL and is retried once (a DDL rolled back with its transaction is
//! re-created the same way).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::config::{quote_ident, TableConfig};
use crate::error::{Error, Result};
use crate::routing::ShardId;
use crate::shard::conn::ShardConn;
use crate::shard::SHARD_TABLE;
use crate::txn::{decode_row, encode_row, SideImage};
use crate::value::{Affinity, Value};

use super::envelope::ImageLayout;
use super::{packed, redo};
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
const WRITE_SQL: &str = "INSERT INTO _shardvt_outbox(seq, csn, tn, txid, op, rid, before, after, ts) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
/// The last seq of a shard's outbox (asked once per shard before its rows are written).
const LAST_SEQ_SQL: &str = "SELECT coalesce(max(seq), 0) FROM _shardvt_outbox";
/// Staged image bytes of one transaction above which they are written to the shards at once
/// (tests lower it with the environment variable `SHARDVT_OUTBOX_SPILL_BYTES`, read when the
/// table is opened).
pub const SPILL_BYTES: usize = 8 << 20;
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

/// What a staged change counts towards [`SPILL_BYTES`].
fn staged_size(before: &Option<String>, after: &Option<String>, values: &Option<Vec<u8>>) -> usize {
    64 + before.as_ref().map_or(0, |s| s.len()) + after.as_ref().map_or(0, |s| s.len()) + values.as_ref().map_or(0, |v| v.len())
}

/// The stored form of a txid (16 hex digits): its 8 bytes, big-endian.
fn txid_bytes(txid: &str) -> [u8; 8] {
    u64::from_str_radix(txid, 16).unwrap_or(0).to_be_bytes()
}

/// A stored txid as 16 hex digits (8-byte BLOB; TEXT from before the BLOB form).
pub fn txid_text(v: Value) -> String {
    match v {
        Value::Blob(b) if b.len() == 8 => format!("{:016x}", u64::from_be_bytes(b.try_into().expect("8 bytes"))),
        Value::Null => String::new(),
        v => String::from_utf8_lossy(&v.to_text()).into_owned(),
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

/// A change recorded in memory until `seal` (or `spill`) writes it.
struct Staged {
    shard: ShardId,
    tn: i64,
    op: Op,
    rid: i64,
    before: Option<String>,
    /// the JSON after image (None: `values` is it, or a `d`)
    after: Option<String>,
    ts: f64,
    /// assigned when written
    seq: i64,
    /// `c` with its after image built from the inserted values: those values in the redo image
    /// encoding (`txn::encode_row`); written packed (`packed::pack_redo`), and `redo_rows`
    /// compares them with the commit's redo image of the row
    values: Option<Vec<u8>>,
    /// `values` packed, as `write_rows` stored them (reused by `redo_rows`)
    packed: Option<Vec<u8>>,
}

pub struct Capture {
    pub layout: ImageLayout,
    select_image: String,
    gone_ddl: String,
    gone_read: String,
    txid: Option<String>,
    next_tn: i64,
    /// changes not yet written to their shards, in tn order
    staged: Vec<Staged>,
    staged_bytes: usize,
    spill_bytes: usize,
    /// SQLite savepoint number -> the last tn made before it opened
    marks: BTreeMap<i32, i64>,
    /// spilled shards: the first seq this transaction wrote there
    first_seq: BTreeMap<ShardId, i64>,
    /// (shard, first seq) of spilled rows `seal` covered
    sealed: Vec<(ShardId, i64)>,
    /// the staged rows `seal` wrote, with their csn (for the redo record)
    sealed_csn: i64,
    written: Vec<Staged>,
    /// shard connections that got the REPLACE-victim temp objects (a reopened connection
    /// lacks them: the "no such table" retry re-creates them)
    gone_ready: HashSet<ShardId>,
    pub store: Store,
    /// `outbox_retention`: seconds an acknowledged change is kept before a purge may delete it
    pub retention_secs: u64,
    /// a ROLLBACK TO (statement or savepoint) ran in this transaction: a spilled shard may have
    /// lost all its outbox rows, so `seal` checks each one
    partial_rollback: bool,
}

/// The value SQLite stores for `v` in a column of affinity `aff`, when that is certain without
/// SQLite's text-to-number parser (None: read the row back instead).
pub fn stored_exactly(v: Value, aff: Affinity) -> Option<Value> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: integral reals below convert exactly
    Some(match (v, aff) {
        (v @ (Value::Null | Value::Blob(_)), _) => v,
        (v, Affinity::Blob) => v,
        (Value::Integer(i), Affinity::Integer | Affinity::Numeric) => Value::Integer(i),
        (Value::Integer(i), Affinity::Real) => Value::Real(i as f64),
        (Value::Integer(i), Affinity::Text) => Value::Text(i.to_string().into_bytes()),
        (Value::Real(f), Affinity::Real) => Value::Real(f),
        (Value::Real(f), Affinity::Integer | Affinity::Numeric) => {
            if f.fract() == 0.0 && f.abs() < EXACT {
                Value::Integer(f as i64)
            } else if f.is_finite() && f.fract() != 0.0 {
                Value::Real(f)
            } else {
                return None;
            }
        }
        (Value::Real(_), Affinity::Text) => return None,
        (Value::Text(t), Affinity::Text) => Value::Text(t),
        (Value::Text(t), _) => {
            if crate::value::parse_numeric_text(&t).is_some() {
                return None;
            }
            Value::Text(t)
        }
    })
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
            staged: Vec::new(),
            staged_bytes: 0,
            spill_bytes: std::env::var("SHARDVT_OUTBOX_SPILL_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(SPILL_BYTES),
            marks: BTreeMap::new(),
            first_seq: BTreeMap::new(),
            sealed: Vec::new(),
            sealed_csn: 0,
            written: Vec::new(),
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

    /// The after image of a row just inserted with these stored-column values (in
    /// [`ImageLayout::stored`] order, with their affinities), if the stored values are certain:
    /// the values in the redo image encoding (see [`Staged`]).
    pub fn image_of_values(&self, vals: impl Iterator<Item = (Value, Affinity)>) -> Option<Vec<u8>> {
        let stored: Vec<Value> = vals.map(|(v, a)| stored_exactly(v, a)).collect::<Option<_>>()?;
        Some(encode_row(&stored))
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

    /// Stages one change of shard `id` (which is in the write transaction). Call `spill` when
    /// it returns true.
    /// `values`: see [`Staged`] (None when the after image was read back).
    pub fn record(&mut self, id: ShardId, op: Op, rid: i64, before: Option<String>, after: Option<String>, values: Option<Vec<u8>>) -> bool {
        if self.txid.is_none() {
            self.txid = Some(new_txid());
        }
        self.next_tn += 1;
        self.staged_bytes += staged_size(&before, &after, &values);
        self.staged.push(Staged { shard: id, tn: self.next_tn, op, rid, before, after, ts: now_secs(), seq: 0, values, packed: None });
        self.staged_bytes > self.spill_bytes
    }

    /// Writes `rows` (of one shard, in tn order) with `csn`, seqs following the shard's last.
    fn write_rows(&self, c: &mut ShardConn, rows: &mut [Staged], csn: i64) -> Result<()> {
        let txid = txid_bytes(self.txid.as_deref().unwrap_or(""));
        let mut seq = with_ddl(c, SHARD_DDL, |c| {
            let mut st = c.take(LAST_SEQ_SQL)?;
            let seq = st.step().map(|_| st.column_i64(0));
            c.give(LAST_SEQ_SQL, st);
            seq
        })?;
        let mut st = c.take(WRITE_SQL)?;
        let r = (|| -> Result<()> {
            st.bind_i64(2, csn)?;
            st.bind_blob(4, &txid)?;
            for r in rows.iter_mut() {
                seq += 1;
                r.seq = seq;
                st.bind_i64(1, seq)?;
                st.bind_i64(3, r.tn)?;
                st.bind_str(5, Some(r.op.code()))?;
                st.bind_i64(6, r.rid)?;
                st.bind_str(7, r.before.as_deref())?;
                match (&r.after, &r.values) {
                    (None, Some(v)) => {
                        let p = packed::pack_redo(v).ok_or_else(|| Error::internal("outbox: malformed row values"))?;
                        st.bind_blob(8, &p)?;
                        r.packed = Some(p);
                    }
                    (a, _) => st.bind_str(8, a.as_deref())?,
                }
                st.bind_f64(9, r.ts)?;
                st.step()?;
                st.reset();
            }
            Ok(())
        })();
        st.reset();
        c.give(WRITE_SQL, st);
        r
    }

    /// Groups the staged rows by shard (each group in tn order) and empties the stage.
    fn take_staged(&mut self) -> BTreeMap<ShardId, Vec<Staged>> {
        let mut by_shard: BTreeMap<ShardId, Vec<Staged>> = BTreeMap::new();
        for r in self.staged.drain(..) {
            by_shard.entry(r.shard).or_default().push(r);
        }
        self.staged_bytes = 0;
        by_shard
    }

    /// Writes the staged changes into their shards now, unsealed (a large transaction).
    pub fn spill(&mut self, conns: &mut BTreeMap<ShardId, ShardConn>) -> Result<()> {
        for (id, mut rows) in self.take_staged() {
            let c = conns.get_mut(&id).ok_or_else(|| Error::shard(format!("sharded: outbox of shard {} is not open", id.0)))?;
            self.write_rows(c, &mut rows, UNSEALED)?;
            let first = rows[0].seq;
            self.first_seq.entry(id).or_insert(first);
        }
        Ok(())
    }

    /// xSync: one csn for the transaction; the staged rows are written with it and the spilled
    /// rows (`seq >= first`, see the file header) get it in place.
    pub fn seal(&mut self, conns: &mut BTreeMap<ShardId, ShardConn>, dir: &Path) -> Result<()> {
        self.sealed.clear();
        self.written.clear();
        let mut kept = Vec::new();
        for (&id, &first) in &self.first_seq {
            let Some(c) = conns.get_mut(&id) else { continue };
            if c.txn_levels.is_none() {
                continue;
            }
            if !self.partial_rollback {
                kept.push((id, first)); // nothing was undone: the rows spilled here are all there
                continue;
            }
            let mut st = c.take(ANY_SQL)?;
            let any = st.bind_i64(1, first).and_then(|_| st.step()).map(|_| st.column_i64(0) > 0);
            c.give(ANY_SQL, st);
            if any? {
                kept.push((id, first));
            }
        }
        if kept.is_empty() && self.staged.is_empty() {
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
        for (id, mut rows) in self.take_staged() {
            let c = conns.get_mut(&id).ok_or_else(|| Error::shard(format!("sharded: outbox of shard {} is not open", id.0)))?;
            self.write_rows(c, &mut rows, csn)?;
            self.written.extend(rows);
        }
        self.sealed = kept;
        self.sealed_csn = csn;
        Ok(())
    }

    /// The outbox rows `seal` covered, as side images for the multi-shard redo record.
    /// `finals`: the record's data images, (shard, rowid) -> image (None: row gone). An insert
    /// whose values equal its row's final image stores no after image: recovery rebuilds it
    /// from that image (the record is smaller; ARCHITECTURE.md §6).
    pub fn redo_rows(&self, conns: &mut BTreeMap<ShardId, ShardConn>, finals: &HashMap<(u32, i64), Option<&[u8]>>) -> Result<Vec<SideImage>> {
        let mut out = Vec::new();
        let txid = u64::from_be_bytes(txid_bytes(self.txid.as_deref().unwrap_or("")));
        let spilled = |id: ShardId| self.sealed.iter().any(|&(s, _)| s == id);
        let mut batches: BTreeMap<ShardId, Vec<redo::Row>> = BTreeMap::new();
        for r in self.written.iter().filter(|r| !spilled(r.shard)) {
            let from_final = match (&r.values, finals.get(&(r.shard.0, r.rid))) {
                (Some(v), Some(Some(f))) => v.as_slice() == *f,
                _ => false,
            };
            let after = match (&r.after, &r.values) {
                _ if from_final => redo::After::FromFinal,
                (Some(j), _) => redo::After::Json(j.clone()),
                (None, Some(v)) => redo::After::Packed(match &r.packed {
                    Some(p) => p.clone(),
                    None => packed::pack_redo(v).ok_or_else(|| Error::internal("outbox: malformed row values"))?,
                }),
                (None, None) => redo::After::Null,
            };
            let op = r.op.code().as_bytes()[0];
            batches.entry(r.shard).or_default().push(redo::Row { seq: r.seq, tn: r.tn, op, rid: r.rid, ts: r.ts, before: r.before.clone(), after });
        }
        for (id, rows) in batches {
            let first = rows[0].seq;
            out.push(SideImage { shard: id.0, table: redo::BATCH_TABLE.into(), rid: first, image: redo::encode(self.sealed_csn, txid, &rows) });
        }
        // spilled shards: read everything back (the rows written at seal follow the spilled ones)
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

    /// SQLite opens savepoint `n` (statement or SAVEPOINT); call before the shards open theirs.
    pub fn savepoint(&mut self, n: i32, conns: &mut BTreeMap<ShardId, ShardConn>) -> Result<()> {
        if !self.staged.is_empty() {
            self.spill(conns)?; // the invariant in the file header
        }
        // Levels below n that this table never saw open (it joined the transaction inside
        // them, or a statement savepoint was reported first) count from here, as the shards'
        // own savepoints do (`ShardConn::open_savepoints` opens every lower level at once).
        for k in 0..n {
            self.marks.entry(k).or_insert(self.next_tn);
        }
        self.marks.insert(n, self.next_tn);
        Ok(())
    }

    /// SQLite released savepoints `n` and above.
    pub fn release(&mut self, n: i32) {
        self.marks.retain(|&k, _| k < n);
    }

    /// ROLLBACK TO savepoint `n` (statement rollback or savepoint): the changes staged after it
    /// opened are dropped; spilled ones are undone by the shards themselves. Level -1 is the
    /// transaction start. Without a mark at `n`, the first mark above it counts (this table
    /// joined the transaction after `n` opened: all its changes came later); without any, the
    /// table saw no savepoint at or above `n` and nothing is undone (as `ShardConn::rollback_to`).
    pub fn rollback_to(&mut self, n: i32) {
        self.partial_rollback = true;
        let mark = if n < 0 {
            0
        } else {
            match self.marks.range(n..).next() {
                Some((_, &t)) => t,
                None => return,
            }
        };
        self.marks.retain(|&k, _| k < n);
        self.marks.insert(n, mark);
        let keep = self.staged.partition_point(|r| r.tn <= mark);
        for r in self.staged.drain(keep..) {
            self.staged_bytes -= staged_size(&r.before, &r.after, &r.values);
        }
    }

    /// Forgets the transaction (COMMIT, ROLLBACK, BEGIN).
    pub fn end_txn(&mut self) {
        self.partial_rollback = false;
        self.txid = None;
        self.next_tn = 0;
        self.staged.clear();
        self.staged_bytes = 0;
        self.marks.clear();
        self.first_seq.clear();
        self.sealed.clear();
        self.written.clear();
    }
}

/// 9th value of an outbox redo row of the one-row-per-change form (records written before
/// `redo` batches): its after image is its data image's.
const AFTER_FROM_FINAL: i64 = 1;

/// Creates the outbox tables in a new shard file (CREATE of the table, a new prefix shard).
pub fn create_tables(c: &ShardConn) -> Result<()> {
    c.conn.exec(SHARD_DDL)
}

/// Recovery: writes the outbox rows of a redo record into a shard (inside the recovery's shard
/// transaction). Idempotent (INSERT OR REPLACE by seq). `after_of(rid)`: the record's data image
/// of row `rid`, in the redo encoding (for rows stored without their after image).
pub fn apply_redo(c: &crate::ffi::api::Connection, rows: &[(String, i64, Vec<u8>)], after_of: impl Fn(i64) -> Result<Vec<u8>>) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    c.exec(SHARD_DDL)?;
    let mut st = c.prepare(
        "INSERT OR REPLACE INTO _shardvt_outbox(seq, csn, tn, txid, op, rid, before, after, ts) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let corrupt = || Error::catalog("sharded: corrupt outbox redo row in txlog.db");
    let packed_final = |rid: i64| -> Result<Value> { Ok(Value::Blob(packed::pack_redo(&after_of(rid)?).ok_or_else(corrupt)?)) };
    let mut write = |seq: i64, vals: &[Value]| -> Result<()> {
        st.bind_i64(1, seq)?;
        for (i, v) in vals.iter().enumerate() {
            st.bind(i + 2, v)?;
        }
        st.step()?;
        st.reset();
        Ok(())
    };
    for (table, rid, image) in rows {
        if table == redo::BATCH_TABLE {
            let (csn, txid, batch) = redo::decode(image)?;
            for r in batch {
                let after = match r.after {
                    redo::After::Null => Value::Null,
                    redo::After::Json(j) => Value::text(&j),
                    redo::After::Packed(p) => Value::Blob(p),
                    redo::After::FromFinal => packed_final(r.rid)?,
                };
                let before = r.before.as_deref().map_or(Value::Null, Value::text);
                let vals = [
                    Value::Integer(csn),
                    Value::Integer(r.tn),
                    Value::Blob(txid.to_be_bytes().to_vec()),
                    Value::Text(vec![r.op]),
                    Value::Integer(r.rid),
                    before,
                    after,
                    Value::Real(r.ts),
                ];
                write(r.seq, &vals)?;
            }
            continue;
        }
        // one row per change (spilled shards; records written before batches)
        let mut vals = decode_row(image)?;
        if table != OUTBOX_TABLE || !(8..=9).contains(&vals.len()) {
            return Err(corrupt());
        }
        if vals.len() == 9 {
            match (vals.pop(), &vals[4]) {
                (Some(Value::Integer(AFTER_FROM_FINAL)), Value::Integer(rid)) => vals[6] = packed_final(*rid)?,
                _ => return Err(corrupt()),
            }
        }
        write(*rid, &vals)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txids_are_stored_as_eight_bytes() {
        assert_eq!(txid_bytes("00000000000000ff"), [0, 0, 0, 0, 0, 0, 0, 0xff]);
        assert_eq!(txid_text(Value::Blob(txid_bytes("db553191dbfec049").to_vec())), "db553191dbfec049");
        assert_eq!(txid_text(Value::text("00ff")), "00ff"); // rows written before the BLOB form
        let t = new_txid();
        assert_eq!(txid_text(Value::Blob(txid_bytes(&t).to_vec())), t);
    }

    #[test]
    fn stored_values_are_certain_or_refused() {
        use Affinity::*;
        let t = |s: &str| Value::text(s);
        assert_eq!(stored_exactly(Value::Integer(5), Real), Some(Value::Real(5.0)));
        assert_eq!(stored_exactly(Value::Integer(5), Text), Some(t("5")));
        assert_eq!(stored_exactly(Value::Real(5.0), Integer), Some(Value::Integer(5)));
        assert_eq!(stored_exactly(Value::Real(5.5), Numeric), Some(Value::Real(5.5)));
        assert_eq!(stored_exactly(Value::Real(1e300), Integer), None); // SQLite's range rules: read back
        assert_eq!(stored_exactly(Value::Real(5.0), Text), None); // real-to-text formatting: read back
        assert_eq!(stored_exactly(t("12"), Integer), None); // numeric text: read back
        assert_eq!(stored_exactly(t("abc"), Integer), Some(t("abc")));
        assert_eq!(stored_exactly(t("12"), Text), Some(t("12")));
        assert_eq!(stored_exactly(t("12"), Blob), Some(t("12")));
        assert_eq!(stored_exactly(Value::Blob(vec![1]), Integer), Some(Value::Blob(vec![1])));
        assert_eq!(stored_exactly(Value::Null, Real), Some(Value::Null));
    }
}
