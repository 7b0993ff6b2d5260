//! Recovery of multi-shard and multi-table commits, run by the table (see `crate::txn` for the
//! protocol and ARCHITECTURE.md §6 for the formats).
//!
//! Entry points: `resolve_in_doubt` (before every write transaction and scan, cheap when the log
//! did not change), `recover` (on connect and for log clean-up), `catch_up_shard` (a writer that
//! just took a shard's lock applies a dead committer's decided transaction first).
//! Invariants: recovery never waits for a live committer (try-locks only; a busy shard is left
//! for its owner), re-applies images only under the shard's write lock after checking the marker
//! and that the log entry still exists, and forgets entries before their markers.

use std::path::Path;

use super::*;

/// What recovery found on one participant shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShardRecovery {
    Applied,
    AlreadyThere,
    /// a live committer holds the shard's write lock
    Busy,
    /// the log entry was finished and forgotten meanwhile
    Forgotten,
}

impl ShardedTable {
    /// Resolves multi-shard transactions left pending by a crashed process (cheap when the log
    /// did not change: one `PRAGMA data_version`). Not called inside our own write transaction.
    pub(crate) fn resolve_in_doubt(&mut self) -> Result<()> {
        if self.in_txn || !self.txlog.changed()? {
            return Ok(());
        }
        self.recover(false)
    }

    /// Recovery (see `txn`): re-applies the images of logged transactions to every participant
    /// shard that lacks the marker. With `include_done`, also checks finished entries (a power
    /// loss may have dropped a shard commit) and then forgets them.
    pub(crate) fn recover(&mut self, include_done: bool) -> Result<()> {
        let entries = self.txlog.entries(include_done)?;
        if entries.is_empty() {
            return Ok(());
        }
        let mut kept = Vec::new();
        let mut unfinished = false;
        for e in &entries {
            if let Some((gtid, coord)) = &e.prepared {
                match self.prepared_is_decided(e, gtid, coord)? {
                    Some(true) => {}
                    Some(false) => {
                        // Never decided and its owner is gone: the transaction did not commit.
                        self.txlog.delete(&[e.txid])?;
                        continue;
                    }
                    None => {
                        unfinished = true; // its owner is still at work
                        continue;
                    }
                }
            }
            let mut busy = false;
            for &s in &e.shards {
                busy |= self.recover_shard(e.txid, ShardId(s))? == ShardRecovery::Busy;
            }
            if busy {
                unfinished = true; // a live committer holds that shard: it finishes itself
                continue;
            }
            if !e.done {
                self.txlog.mark_done(e.txid)?;
            }
            kept.push(e.clone());
        }
        if unfinished {
            // look again at the next opportunity even if the log does not change meanwhile
            self.txlog.invalidate();
        }
        if include_done {
            self.forget(&kept)?;
        }
        Ok(())
    }

    /// Whether the multi-table transaction of a `prepared` record was decided. When no decision
    /// is found, the first participant's write lock is taken first, so a live owner (which holds
    /// it until it commits) is waited for; a marker found there also proves the decision.
    fn prepared_is_decided(&mut self, e: &Entry, gtid: &str, coord: &str) -> Result<Option<bool>> {
        let decided = |t: &mut Self| t.has_decision(gtid, coord);
        if decided(self)? {
            return Ok(Some(true));
        }
        let Some(&first) = e.shards.first() else { return Ok(Some(false)) };
        let c = self.conn(ShardId(first))?;
        if !c.try_begin_immediate()? {
            return Ok(None);
        }
        let marker = (|| -> Result<bool> {
            c.conn.exec(MARKER_DDL)?;
            let mut has = c.conn.prepare("SELECT 1 FROM _shardvt_txn WHERE txid = ?1")?;
            has.bind_i64(1, e.txid)?;
            has.step()
        })();
        let r = match marker {
            Ok(true) => Ok(Some(true)),
            Ok(false) => decided(self).map(Some),
            Err(err) => Err(err),
        };
        let c = self.conn(ShardId(first))?;
        let _ = c.conn.exec("ROLLBACK");
        r
    }

    fn recover_shard(&mut self, txid: i64, id: ShardId) -> Result<ShardRecovery> {
        self.conn(id)?;
        if !self.conns.get_mut(&id).expect("opened above").try_begin_immediate()? {
            return Ok(ShardRecovery::Busy);
        }
        let r = self.apply_redo(txid, id);
        let c = self.conns.get_mut(&id).expect("opened above");
        match r {
            Ok(outcome) => {
                c.conn.exec("COMMIT")?;
                if outcome == ShardRecovery::Applied {
                    crate::ffi::api::log(
                        crate::error::codes::ERROR | (2 << 8),
                        &format!("sharded: recovered multi-shard transaction {txid} on shard {}", id.0),
                    );
                }
                Ok(outcome)
            }
            Err(e) => {
                let _ = c.conn.exec("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Re-applies the images of `txid` to shard `id`, whose write lock the caller holds inside an
    /// open transaction, unless its marker shows they are there or the entry was forgotten.
    fn apply_redo(&mut self, txid: i64, id: ShardId) -> Result<ShardRecovery> {
        let rows = self.txlog.redo_rows(txid, id.0)?;
        let side = self.txlog.side_rows(txid, id.0)?;
        let names: Vec<String> =
            self.cfg.columns.iter().filter(|c| !c.is_rowid_alias).map(|c| quote_ident(&c.name)).collect();
        let mut col_list = String::from("rowid");
        let mut vals = String::from("?1");
        for (i, n) in names.iter().enumerate() {
            col_list.push_str(&format!(", {n}"));
            vals.push_str(&format!(", ?{}", i + 2));
        }
        let upsert = format!("INSERT OR REPLACE INTO {SHARD_TABLE}({col_list}) VALUES ({vals})");
        let delete = self.sql_delete.clone();
        let txlog = &self.txlog;
        let c = self.conns.get_mut(&id).expect("opened by the caller");
        c.conn.exec(MARKER_DDL)?;
        let mut has = c.conn.prepare("SELECT 1 FROM _shardvt_txn WHERE txid = ?1")?;
        has.bind_i64(1, txid)?;
        if has.step()? {
            return Ok(ShardRecovery::AlreadyThere);
        }
        drop(has);
        // Under this shard's lock: an entry that is gone was finished and forgotten (the
        // clean-up deletes entries before markers, and needs this lock for the markers), so a
        // missing marker then means nothing; re-applying old images would undo newer writes.
        if !txlog.entry_exists(txid)? {
            return Ok(ShardRecovery::Forgotten);
        }
        for (rid, img) in &rows {
            match img {
                None => {
                    c.run(&delete, |st| st.bind_i64(1, *rid))?;
                }
                Some(bytes) => {
                    let vals = decode_row(bytes)?;
                    c.run(&upsert, |st| {
                        st.bind_i64(1, *rid)?;
                        for (i, v) in vals.iter().enumerate() {
                            st.bind(i + 2, v)?;
                        }
                        Ok(())
                    })?;
                }
            }
        }
        let by_rid: std::collections::HashMap<i64, &Vec<u8>> =
            rows.iter().filter_map(|(r, i)| i.as_ref().map(|i| (*r, i))).collect();
        let after_of = |rid: i64| -> Result<Vec<u8>> {
            match by_rid.get(&rid) {
                Some(bytes) => Ok(bytes.to_vec()),
                None => Err(Error::catalog("sharded: outbox redo row refers to a missing image in txlog.db")),
            }
        };
        crate::outbox::apply_redo(&c.conn, &side, after_of)?;
        c.run("INSERT INTO _shardvt_txn(txid) VALUES (?1)", |st| st.bind_i64(1, txid))?;
        Ok(ShardRecovery::Applied)
    }

    /// Called when our write transaction has just taken shard `id`'s lock: a committer that
    /// died while we waited for that lock may have left its transaction decided but not applied
    /// here. Apply it first, inside our transaction, so our writes build on it (and never get
    /// overwritten by a later recovery). The rest of the entry is finished by normal recovery.
    pub(super) fn catch_up_shard(&mut self, id: ShardId) -> Result<()> {
        if !self.txlog.changed()? {
            return Ok(());
        }
        self.txlog.invalidate();
        let entries = self.txlog.entries(false)?;
        for e in entries.iter().filter(|e| e.shards.contains(&id.0)) {
            if let Some((gtid, coord)) = &e.prepared {
                if !self.has_decision(gtid, coord)? {
                    continue; // undecided: nothing of it was committed anywhere
                }
            }
            self.apply_redo(e.txid, id)?;
        }
        Ok(())
    }

    fn has_decision(&mut self, gtid: &str, coord: &str) -> Result<bool> {
        if Path::new(coord) == self.txlog_path {
            self.txlog.has_decision(gtid)
        } else if Path::new(coord).exists() {
            TxLog::open_path(Path::new(coord))?.has_decision(gtid)
        } else {
            Ok(false)
        }
    }

    /// Forgets finished log entries: first make the participants' commits durable (a
    /// synchronous=FULL commit fsyncs the whole WAL), then delete the entries, then the markers.
    pub(super) fn forget(&mut self, entries: &[Entry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut shards: Vec<u32> = entries.iter().flat_map(|e| e.shards.iter().copied()).collect();
        shards.sort_unstable();
        shards.dedup();
        // 1. Make the participants' commits durable: fsync their WALs, concurrently (everything
        //    a WAL holds becomes durable; frames already gone from it were checkpointed into a
        //    synced database file). A shard whose WAL this connection has not opened gets a
        //    tiny synchronous=FULL commit instead; busy: try again another time.
        let mut handles = Vec::new();
        for &s in &shards {
            let c = self.conn(ShardId(s))?;
            if let Some(h) = c.conn.wal_handle() {
                handles.push(h);
                continue;
            }
            c.conn.exec("PRAGMA synchronous=FULL")?;
            let r = (|| -> Result<bool> {
                if !c.try_begin_immediate()? {
                    return Ok(false);
                }
                c.conn.exec("INSERT OR REPLACE INTO _shardvt_txn(txid) VALUES (0); COMMIT;")?;
                Ok(true)
            })();
            c.restore_synchronous()?;
            if !r? {
                return Ok(());
            }
        }
        crate::shard::sync_wals_parallel(handles)?;
        // 2. Forget the entries, 3. then their markers (orphan markers are harmless: txids are
        // never reused).
        let txids: Vec<i64> = entries.iter().map(|e| e.txid).collect();
        self.txlog.delete(&txids)?;
        let list: Vec<String> = txids.iter().map(|t| t.to_string()).collect();
        let sql = format!("DELETE FROM _shardvt_txn WHERE txid IN ({}); COMMIT;", list.join(","));
        for &s in &shards {
            let c = self.conn(ShardId(s))?;
            if c.try_begin_immediate()? {
                if let Err(e) = c.conn.exec(&sql) {
                    let _ = c.conn.exec("ROLLBACK");
                    return Err(e);
                }
            }
        }
        Ok(())
    }

}
