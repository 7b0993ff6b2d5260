//! `<dir>/txlog.db`: the redo log of multi-shard transactions (see `txn` for the protocol).
//!
//! The connection runs `synchronous=FULL`: the commit of a log record is the durable decision
//! of a multi-shard transaction. `txid`s come from AUTOINCREMENT, so they only grow and are
//! never reused (marker clean-up relies on that).

use std::path::Path;

use crate::error::{Error, Result};
use crate::ffi::api::{Connection, OPEN_CREATE, OPEN_READWRITE};
use crate::shard::BUSY_TIMEOUT_MS;
use crate::value::Value;

use super::{parse_shard_list, TXLOG_FILE, TXLOG_SCHEMA};

pub struct TxLog {
    /// cached `PRAGMA data_version` (declared before `conn`: statements drop first)
    dv_stmt: Option<crate::ffi::api::Statement>,
    conn: Connection,
    data_version: i64,
    /// lock-free shortcut in front of `PRAGMA data_version` (see `shard::watch`)
    watch: crate::shard::watch::Watch,
    /// side-table rows to write with the next record (see `stage_side`)
    staged_side: std::cell::RefCell<Vec<super::SideImage>>,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub txid: i64,
    pub done: bool,
    pub shards: Vec<u32>,
    /// Some((gtid, coordinator log path)) for a record of a multi-table transaction that is not
    /// known to be decided yet.
    pub prepared: Option<(String, String)>,
}

impl TxLog {
    fn configure(conn: Connection) -> Result<TxLog> {
        conn.busy_timeout(BUSY_TIMEOUT_MS);
        conn.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")?;
        conn.exec(super::REDO_SIDE_DDL)?;
        let watch = crate::shard::watch::Watch::default();
        Ok(TxLog { dv_stmt: None, conn, data_version: -1, watch, staged_side: Default::default() })
    }

    pub fn create(dir: &Path) -> Result<TxLog> {
        // A log without a catalog is an orphan (a DROP TABLE interrupted half-way): its entries
        // describe shards that no longer exist and must never be applied to the new table.
        for ext in ["", "-wal", "-shm"] {
            let p = dir.join(format!("{TXLOG_FILE}{ext}"));
            if p.exists() {
                std::fs::remove_file(&p).map_err(|e| Error::config(format!("sharded: cannot remove stale {}: {e}", p.display())))?;
            }
        }
        let conn = Connection::open(&dir.join(TXLOG_FILE).to_string_lossy(), OPEN_READWRITE | OPEN_CREATE)?;
        let log = Self::configure(conn)?;
        log.conn.exec(&TXLOG_SCHEMA.replace("txid    INTEGER PRIMARY KEY,", "txid    INTEGER PRIMARY KEY AUTOINCREMENT,"))?;
        Ok(log)
    }

    pub fn open(dir: &Path) -> Result<TxLog> {
        let p = dir.join(TXLOG_FILE);
        if !p.exists() {
            return Err(Error::catalog(format!(
                "sharded: {} is missing (the multi-shard commit log); restore the shard folder whole",
                p.display()
            )));
        }
        Self::configure(Connection::open(&p.to_string_lossy(), OPEN_READWRITE)?)
    }

    /// Makes the next `changed()` report a change (to retry work left for later).
    pub fn invalidate(&mut self) {
        self.data_version = -1;
        self.watch.forget();
    }

    /// True when another connection wrote to the log since the last call.
    pub fn changed(&mut self) -> Result<bool> {
        let hdr = self.watch.header(&self.conn);
        if self.watch.unchanged(&hdr) {
            return Ok(false); // nothing committed to the log since the last real check
        }
        let v = self.conn.data_version(&mut self.dv_stmt)?;
        let changed = v != self.data_version;
        self.data_version = v;
        self.watch.remember(hdr);
        Ok(changed)
    }

    /// Writes the durable record of a multi-shard transaction: the commit point.
    /// `prepared`: Some((gtid, coordinator log path)) for a part of a multi-table transaction.
    pub fn write_record(
        &self,
        shards: &[u32],
        images: &[(u32, i64, Option<Vec<u8>>)],
        prepared: Option<(&str, &str)>,
    ) -> Result<i64> {
        self.conn.write_txn(|_| {
            let list: Vec<String> = shards.iter().map(|s| s.to_string()).collect();
            let mut st = self.conn.prepare(
                "INSERT INTO txn(state, shards, gtid, coord) VALUES (?2, ?1, ?3, ?4) RETURNING txid",
            )?;
            st.bind(1, &Value::text(&list.join(",")))?;
            st.bind(2, &Value::text(if prepared.is_some() { "prepared" } else { "pending" }))?;
            st.bind(3, &prepared.map(|p| Value::text(p.0)).unwrap_or(Value::Null))?;
            st.bind(4, &prepared.map(|p| Value::text(p.1)).unwrap_or(Value::Null))?;
            st.step()?;
            let txid = st.column_i64(0);
            drop(st);
            let mut per_shard: std::collections::BTreeMap<u32, Vec<(i64, Option<Vec<u8>>)>> = Default::default();
            for (shard, rid, img) in images {
                per_shard.entry(*shard).or_default().push((*rid, img.clone()));
            }
            let mut ins = self.conn.prepare("INSERT OR REPLACE INTO redo(txid, shard, images) VALUES (?1, ?2, ?3)")?;
            for (shard, rows) in per_shard {
                ins.bind_i64(1, txid)?;
                ins.bind_i64(2, shard as i64)?;
                ins.bind(3, &Value::Blob(super::encode_images(&rows)))?;
                ins.step()?;
                ins.reset();
            }
            drop(ins);
            // side rows: one batch row (rid = SIDE_BATCH) per shard and side table
            let side = std::mem::take(&mut *self.staged_side.borrow_mut());
            let mut batches: std::collections::BTreeMap<(u32, String), Vec<(i64, Option<Vec<u8>>)>> = Default::default();
            for s in side {
                batches.entry((s.shard, s.table)).or_default().push((s.rid, Some(s.image)));
            }
            let mut ins = self.conn.prepare("INSERT OR REPLACE INTO redo_side(txid, shard, tbl, rid, image) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for ((shard, table), rows) in batches {
                ins.bind_i64(1, txid)?;
                ins.bind_i64(2, shard as i64)?;
                ins.bind_str(3, Some(&table))?;
                ins.bind_i64(4, super::SIDE_BATCH)?;
                ins.bind(5, &Value::Blob(super::encode_images(&rows)))?;
                ins.step()?;
                ins.reset();
            }
            Ok(txid)
        })
    }

    /// Side-table rows (the outbox) to write in the same transaction as the next
    /// `write_record`, which takes them; staging again replaces them.
    pub fn stage_side(&self, rows: Vec<super::SideImage>) {
        *self.staged_side.borrow_mut() = rows;
    }

    /// The side-table rows of `txid` for `shard`: (table, rowid, image).
    pub fn side_rows(&self, txid: i64, shard: u32) -> Result<Vec<(String, i64, Vec<u8>)>> {
        let mut st = self.conn.prepare("SELECT tbl, rid, image FROM redo_side WHERE txid = ?1 AND shard = ?2 ORDER BY tbl, rid")?;
        st.bind_i64(1, txid)?;
        st.bind_i64(2, shard as i64)?;
        let mut out = Vec::new();
        while st.step()? {
            let tbl = String::from_utf8_lossy(&st.column_value(0).to_text()).into_owned();
            let img = match st.column_value(2) {
                Value::Blob(b) | Value::Text(b) => b,
                _ => return Err(Error::catalog("sharded: corrupt side row in txlog.db")),
            };
            let rid = st.column_i64(1);
            if rid == super::SIDE_BATCH {
                for (rid, img) in super::decode_images(&img)? {
                    let img = img.ok_or_else(|| Error::catalog("sharded: corrupt side row batch in txlog.db"))?;
                    out.push((tbl.clone(), rid, img));
                }
            } else {
                out.push((tbl, rid, img)); // one row per image (logs written before batches)
            }
        }
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        Ok(out)
    }

    pub fn mark_done(&self, txid: i64) -> Result<()> {
        let mut st = self.conn.prepare("UPDATE txn SET state = 'done' WHERE txid = ?1")?;
        st.bind_i64(1, txid)?;
        st.step().map(|_| ())
    }

    /// Forgets transactions (their redo rows too).
    pub fn delete(&self, txids: &[i64]) -> Result<()> {
        self.conn.write_txn(|_| {
            let mut a = self.conn.prepare("DELETE FROM txn WHERE txid = ?1")?;
            let mut b = self.conn.prepare("DELETE FROM redo WHERE txid = ?1")?;
            let mut c = self.conn.prepare("DELETE FROM redo_side WHERE txid = ?1")?;
            for t in txids {
                a.bind_i64(1, *t)?;
                a.step()?;
                a.reset();
                b.bind_i64(1, *t)?;
                b.step()?;
                b.reset();
                c.bind_i64(1, *t)?;
                c.step()?;
                c.reset();
            }
            Ok(())
        })
    }

    pub fn entries(&self, include_done: bool) -> Result<Vec<Entry>> {
        let sql = if include_done {
            "SELECT txid, state, shards, gtid, coord FROM txn ORDER BY txid"
        } else {
            "SELECT txid, state, shards, gtid, coord FROM txn WHERE state <> 'done' ORDER BY txid"
        };
        let mut st = self.conn.prepare(sql)?;
        let mut out = Vec::new();
        while st.step()? {
            let shards = String::from_utf8_lossy(&st.column_value(2).to_text()).into_owned();
            let state = st.column_value(1);
            let text = |i: usize| String::from_utf8_lossy(&st.column_value(i).to_text()).into_owned();
            out.push(Entry {
                txid: st.column_i64(0),
                done: state == Value::text("done"),
                shards: parse_shard_list(&shards),
                prepared: if state == Value::text("prepared") { Some((text(3), text(4))) } else { None },
            });
        }
        Ok(out)
    }

    pub fn count_done(&self) -> Result<i64> {
        let mut st = self.conn.prepare("SELECT count(*) FROM txn WHERE state = 'done'")?;
        st.step()?;
        Ok(st.column_i64(0))
    }

    /// The images of `txid` for `shard`, deletions first (then a re-applied upsert can never be
    /// blocked by a row the transaction deleted).
    pub fn redo_rows(&self, txid: i64, shard: u32) -> Result<Vec<(i64, Option<Vec<u8>>)>> {
        let mut st = self.conn.prepare("SELECT images FROM redo WHERE txid = ?1 AND shard = ?2")?;
        st.bind_i64(1, txid)?;
        st.bind_i64(2, shard as i64)?;
        let mut out = Vec::new();
        while st.step()? {
            match st.column_value(0) {
                Value::Blob(b) => out.extend(super::decode_images(&b)?),
                _ => return Err(Error::catalog("sharded: corrupt redo row in txlog.db")),
            }
        }
        out.sort_by_key(|(rid, img)| (img.is_some(), *rid));
        Ok(out)
    }

    /// Writes the decision of multi-table transaction `gtid` (durable: synchronous=FULL).
    pub fn write_decision(&self, gtid: &str) -> Result<()> {
        let mut st = self.conn.prepare("INSERT OR IGNORE INTO decision(gtid) VALUES (?1)")?;
        st.bind(1, &Value::text(gtid))?;
        st.step().map(|_| ())
    }

    pub fn has_decision(&self, gtid: &str) -> Result<bool> {
        let mut st = self.conn.prepare("SELECT 1 FROM decision WHERE gtid = ?1")?;
        st.bind(1, &Value::text(gtid))?;
        st.step()
    }

    /// Opens another table's log (the coordinator of a multi-table transaction).
    pub fn open_path(path: &Path) -> Result<TxLog> {
        if !path.exists() {
            return Err(Error::catalog(format!("sharded: coordinator log {} is missing", path.display())));
        }
        Self::configure(Connection::open(&path.to_string_lossy(), OPEN_READWRITE)?)
    }

    pub fn entry_exists(&self, txid: i64) -> Result<bool> {
        let mut st = self.conn.prepare("SELECT 1 FROM txn WHERE txid = ?1")?;
        st.bind_i64(1, txid)?;
        st.step()
    }

    /// Transaction ids still in the log.
    pub fn live_txids(&self) -> Result<Vec<i64>> {
        let mut st = self.conn.prepare("SELECT txid FROM txn ORDER BY txid")?;
        let mut out = Vec::new();
        while st.step()? {
            out.push(st.column_i64(0));
        }
        Ok(out)
    }
}
