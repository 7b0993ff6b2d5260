//! The sharded table's side of the outbox (`crate::outbox`): the hooks its write path calls,
//! and export / ack / stats over its shards. Every hook is a no-op for a table created without
//! `outbox=on` (`self.outbox` is None).
//!
//! Hook points in `table.rs`: `insert_into` (`c`), `delete_in` (`d`), the in-place UPDATE and
//! the move in `do_update` (`u`), `write_captured` around a shard write (REPLACE victims),
//! `sync` (`outbox_seal`, `outbox_stage_redo`), `begin`/`commit`/`rollback` (`outbox_end_txn`),
//! `recover_shard` (`outbox::apply_redo`), `rename` (`outbox_close_store`).

use crate::error::{Error, Result};
use crate::outbox::envelope::{self, Change, Position};
use crate::outbox::{feed, Op, Record, MAX_EXPORT};
use crate::routing::ShardId;
use crate::shard::conn::ShardConn;

use super::ShardedTable;

/// SQLite's ON CONFLICT REPLACE as a template index (see `mode_index`).
const MODE_REPLACE: usize = 1;

impl ShardedTable {
    /// Runs `write` on shard `id` (already in the write transaction). With the outbox on and
    /// mode REPLACE, every row SQLite's REPLACE deleted is recorded as a `d`.
    pub(super) fn write_captured(&mut self, id: ShardId, mode: usize, write: impl FnOnce(&mut ShardConn) -> Result<i64>) -> Result<i64> {
        let c = self.conns.get_mut(&id).expect("joined by write_conn");
        let Some(ob) = self.outbox.as_mut().filter(|_| mode == MODE_REPLACE) else {
            return write(c);
        };
        ob.arm(id, c)?;
        let r = write(c);
        let gone = ob.disarm(c)?;
        let changed = r?;
        for (rid, before) in gone {
            ob.record(id, c, Op::Delete, rid, Some(&before), None)?;
        }
        Ok(changed)
    }

    /// The row's image before a change (None: outbox off, part of a move, or no such row).
    /// Joins shard `id` to the write transaction first, so the read is inside it.
    pub(super) fn outbox_before(&mut self, id: ShardId, rid: i64, rec: Record) -> Result<Option<String>> {
        if self.outbox.is_none() || rec == Record::PartOfMove {
            return Ok(None);
        }
        self.write_conn(id)?;
        let ob = self.outbox.as_ref().expect("checked");
        ob.image(self.conns.get_mut(&id).expect("joined by write_conn"), rid)
    }

    /// Records a change of row `rid` on shard `id`; the after image (`c`, `u`) is read back
    /// from the shard. A `u`/`d` without a before image records nothing (outbox off).
    pub(super) fn outbox_record(&mut self, id: ShardId, op: Op, rid: i64, before: Option<String>) -> Result<()> {
        let Some(ob) = self.outbox.as_mut() else { return Ok(()) };
        if op != Op::Create && before.is_none() {
            return Ok(());
        }
        let c = self.conns.get_mut(&id).expect("joined by write_conn");
        let after = if op == Op::Delete { None } else { ob.image(c, rid)? };
        ob.record(id, c, op, rid, before.as_deref(), after.as_deref())
    }

    /// xSync: the transaction's csn, written into its outbox rows (before any redo image is read).
    pub(super) fn outbox_seal(&mut self) -> Result<()> {
        let dir = self.catalog.dir.clone();
        match self.outbox.as_mut() {
            Some(ob) => ob.seal(&mut self.conns, &dir),
            None => Ok(()),
        }
    }

    /// xSync of a logged transaction: hand the outbox rows to the redo record.
    pub(super) fn outbox_stage_redo(&mut self) -> Result<()> {
        if let Some(ob) = self.outbox.as_ref() {
            let rows = ob.redo_rows(&mut self.conns)?;
            self.txlog.stage_side(rows);
        }
        Ok(())
    }

    pub(super) fn outbox_end_txn(&mut self) {
        if let Some(ob) = self.outbox.as_mut() {
            ob.end_txn();
        }
        self.txlog.stage_side(Vec::new());
    }

    /// Closes outbox.db before the table's folder moves (it reopens lazily).
    pub(super) fn outbox_close_store(&mut self) {
        if let Some(ob) = self.outbox.as_mut() {
            ob.store.close();
            ob.forget_connections();
        }
    }

    fn outbox_check(&self, fname: &str) -> Result<()> {
        if self.outbox.is_none() {
            return Err(Error::config(format!(
                "{fname}: table {} has no outbox (create it with outbox=on)",
                self.name
            )));
        }
        if self.in_txn && self.conns.values().any(|c| c.txn_levels.is_some()) {
            return Err(Error::config(format!(
                "{fname}: {} has uncommitted writes in this transaction; COMMIT or ROLLBACK first",
                self.name
            )));
        }
        Ok(())
    }

    /// `shardvt_outbox_export`: up to `max` changes after the consumer's position, as a JSON
    /// array of envelopes in (csn, tn) order (see `crate::outbox`).
    pub fn outbox_export(&mut self, consumer: &str, max: i64) -> Result<String> {
        const F: &str = "shardvt_outbox_export";
        self.outbox_check(F)?;
        if !(1..=MAX_EXPORT).contains(&max) {
            return Err(Error::config(format!("{F}: max_changes must be between 1 and {MAX_EXPORT}, not {max}")));
        }
        let dir = self.catalog.dir.clone();
        let ob = self.outbox.as_mut().expect("checked");
        let from = ob.store.position(&dir, consumer)?;
        let upto = ob.store.clock(&dir)?;
        let ids = self.all_shards()?;
        for &id in &ids {
            let c = self.conn(id)?;
            feed::ensure_schema(c)?;
            feed::barrier(c)?;
        }
        self.resolve_in_doubt()?;
        let mut all: Vec<Change> = Vec::new();
        for &id in &ids {
            let c = self.conn(id)?;
            all.extend(feed::read_changes(c, id.0, from, upto, max as usize)?);
        }
        Ok(envelope::envelopes(&self.name, &envelope::merge(all, max as usize)))
    }

    /// `shardvt_outbox_ack`: moves the consumer to `cursor`, then purges what every consumer
    /// has passed. Returns the consumer's cursor after the ack.
    pub fn outbox_ack(&mut self, consumer: &str, cursor: &str) -> Result<String> {
        const F: &str = "shardvt_outbox_ack";
        self.outbox_check(F)?;
        let dir = self.catalog.dir.clone();
        let ob = self.outbox.as_mut().expect("checked");
        let to = Position::parse(cursor).ok_or_else(|| {
            Error::config(format!("{F}: \"{cursor}\" is not an outbox cursor (use the \"cursor\" of an exported change)"))
        })?;
        if to.csn > ob.store.clock(&dir)? {
            return Err(Error::config(format!("{F}: cursor \"{cursor}\" is ahead of every change of table {}", self.name)));
        }
        let now = ob.store.ack(&dir, consumer, to)?;
        let oldest = ob.store.consumers(&dir)?.iter().map(|c| c.position).min().unwrap_or(Position::ZERO);
        if oldest > Position::ZERO {
            for id in self.all_shards()? {
                let c = self.conn(id)?;
                feed::ensure_schema(c)?;
                feed::purge(c, oldest)?;
            }
        }
        Ok(now.cursor())
    }

    /// `shardvt_outbox_stats`: JSON with retained changes, the clock and each consumer's lag.
    pub fn outbox_stats(&mut self) -> Result<String> {
        const F: &str = "shardvt_outbox_stats";
        self.outbox_check(F)?;
        let dir = self.catalog.dir.clone();
        let ob = self.outbox.as_mut().expect("checked");
        let consumers = ob.store.consumers(&dir)?;
        let clock = ob.store.clock(&dir)?;
        let ids = self.all_shards()?;
        let mut retained = 0;
        let mut lags = vec![0i64; consumers.len()];
        for &id in &ids {
            let c = self.conn(id)?;
            feed::ensure_schema(c)?;
            retained += feed::count_all(c)?;
            for (k, con) in consumers.iter().enumerate() {
                lags[k] += feed::count_after(c, con.position)?;
            }
        }
        let mut out = String::from("{\"table\":");
        envelope::push_json_string(&mut out, &self.name);
        out.push_str(&format!(",\"shards\":{},\"retained\":{retained},\"last_csn\":{clock},\"consumers\":[", ids.len()));
        for (k, con) in consumers.iter().enumerate() {
            if k > 0 {
                out.push(',');
            }
            out.push_str("{\"name\":");
            envelope::push_json_string(&mut out, &con.name);
            out.push_str(",\"cursor\":");
            envelope::push_json_string(&mut out, &con.position.cursor());
            out.push_str(&format!(",\"lag\":{},\"created_ms\":{}", lags[k], envelope::ts_ms(con.created)));
            match con.acked {
                Some(t) => out.push_str(&format!(",\"acked_ms\":{}}}", envelope::ts_ms(t))),
                None => out.push_str(",\"acked_ms\":null}"),
            }
        }
        out.push_str("]}");
        Ok(out)
    }
}
