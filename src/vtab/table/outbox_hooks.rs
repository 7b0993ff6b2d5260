//! The sharded table's side of the outbox (`crate::outbox`): the hooks its write path calls,
//! and export / ack / stats over its shards. Every hook is a no-op for a table created without
//! `outbox=on` (`self.outbox` is None).
//!
//! Hook points in `table.rs`: `insert_into` (`c`), `delete_in` (`d`), the in-place UPDATE and
//! the move in `do_update` (`u`), `write_captured` around a shard write (REPLACE victims),
//! `sync` (`outbox_seal`, `outbox_stage_redo`), `begin`/`commit`/`rollback` (`outbox_end_txn`),
//! `savepoint`/`release`/`rollback_to` (`outbox_savepoint`, …),
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
        let mut spill = false;
        for (rid, before) in gone {
            spill |= ob.record(id, Op::Delete, rid, Some(before), None, None);
        }
        if spill {
            ob.spill(&mut self.conns)?;
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

    /// Records a change of row `rid` on shard `id`; the after image (`c`, `u`) is `after` or,
    /// when that is None, read back from the shard. A `u`/`d` without a before image records
    /// nothing (outbox off).
    pub(super) fn outbox_record(&mut self, id: ShardId, op: Op, rid: i64, before: Option<String>) -> Result<()> {
        self.outbox_record_with(id, op, rid, before, None)
    }

    /// `values`: the after image as values (see `Capture::image_of_values`), if known.
    pub(super) fn outbox_record_with(&mut self, id: ShardId, op: Op, rid: i64, before: Option<String>, values: Option<Vec<u8>>) -> Result<()> {
        let Some(ob) = self.outbox.as_mut() else { return Ok(()) };
        if op != Op::Create && before.is_none() {
            return Ok(());
        }
        let (after, values) = match (op, values) {
            (Op::Delete, _) => (None, None),
            (_, Some(v)) => (None, Some(v)),
            (_, None) => (ob.image(self.conns.get_mut(&id).expect("joined by write_conn"), rid)?, None),
        };
        if ob.record(id, op, rid, before, after, values) {
            ob.spill(&mut self.conns)?;
        }
        Ok(())
    }

    /// Savepoint bookkeeping of the staged changes (see `outbox::capture`).
    pub(super) fn outbox_savepoint(&mut self, n: i32) -> Result<()> {
        match self.outbox.as_mut() {
            Some(ob) => ob.savepoint(n, &mut self.conns),
            None => Ok(()),
        }
    }

    pub(super) fn outbox_release(&mut self, n: i32) {
        if let Some(ob) = self.outbox.as_mut() {
            ob.release(n);
        }
    }

    pub(super) fn outbox_rollback_to(&mut self, n: i32) {
        if let Some(ob) = self.outbox.as_mut() {
            ob.rollback_to(n);
        }
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
    /// `images`: the record's data images (shard, rowid, image).
    pub(super) fn outbox_stage_redo(&mut self, images: &[(u32, i64, Option<Vec<u8>>)]) -> Result<()> {
        if let Some(ob) = self.outbox.as_ref() {
            let finals: std::collections::HashMap<(u32, i64), Option<&[u8]>> =
                images.iter().map(|(s, r, i)| ((*s, *r), i.as_deref())).collect();
            let rows = ob.redo_rows(&mut self.conns, &finals)?;
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
        let mut batch = envelope::merge(all, max as usize);
        let layout = &self.outbox.as_ref().expect("checked").layout;
        for ch in &mut batch {
            ch.unpack_after(layout)?;
        }
        Ok(envelope::envelopes(&self.name, &batch))
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
        self.outbox_purge()?;
        Ok(now.cursor())
    }

    /// `shardvt_outbox_drop_consumer`: forgets a consumer, then purges what the remaining ones
    /// have passed. Returns 1 if the consumer existed, else 0.
    pub fn outbox_drop_consumer(&mut self, consumer: &str) -> Result<i64> {
        self.outbox_check("shardvt_outbox_drop_consumer")?;
        let dir = self.catalog.dir.clone();
        let ob = self.outbox.as_mut().expect("checked");
        let existed = ob.store.drop_consumer(&dir, consumer)?;
        self.outbox_purge()?;
        Ok(existed as i64)
    }

    /// Deletes, on every shard, the changes every registered consumer has acknowledged and
    /// that committed more than `outbox_retention` ago. No consumer: nothing is purged.
    fn outbox_purge(&mut self) -> Result<()> {
        let dir = self.catalog.dir.clone();
        let ob = self.outbox.as_mut().expect("checked by the caller");
        let consumers = ob.store.consumers(&dir)?;
        let Some(oldest) = consumers.iter().map(|c| c.position).min() else { return Ok(()) };
        let upto = purge_point(oldest, ob.retention_secs, crate::outbox::store::now_secs());
        if upto > Position::ZERO {
            for id in self.all_shards()? {
                let c = self.conn(id)?;
                feed::ensure_schema(c)?;
                feed::purge(c, upto)?;
            }
        }
        Ok(())
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
        let retention = self.outbox.as_ref().map_or(0, |o| o.retention_secs);
        out.push_str(&format!(
            ",\"shards\":{},\"retained\":{retained},\"retention_s\":{retention},\"last_csn\":{clock},\"consumers\":[",
            ids.len()
        ));
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

/// The last position a purge may delete: every consumer passed it (`oldest`) and, with a
/// retention, it committed at least `retention_secs` before `now` (a csn is its commit time in
/// µs, see `outbox::clock`).
fn purge_point(oldest: Position, retention_secs: u64, now: f64) -> Position {
    if retention_secs == 0 {
        return oldest;
    }
    let cutoff = (now * 1e6) as i64 - (retention_secs as i64).saturating_mul(1_000_000);
    let aged = Position { csn: cutoff.saturating_sub(1).max(0), tn: i64::MAX };
    oldest.min(aged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_point_respects_consumers_and_retention() {
        let p = |csn, tn| Position { csn, tn };
        let now = 1_000.0; // seconds: csn 1_000_000_000
        assert_eq!(purge_point(p(5, 2), 0, now), p(5, 2)); // no retention: the slowest consumer
        // one hour of retention: nothing newer than now - 3600 s, even if acknowledged
        assert_eq!(purge_point(p(999_000_000, 1), 3600, now), p(0, i64::MAX));
        assert_eq!(purge_point(p(999_000_000, 1), 10, now), p(989_999_999, i64::MAX));
        // the slowest consumer still wins when it is further behind
        assert_eq!(purge_point(p(7, 3), 10, now), p(7, 3));
    }
}
