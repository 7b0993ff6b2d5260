//! One shard file's connection: open/create, prepared-statement cache, transaction depth.
//!
//! Opening: shard files are plain SQLite databases in WAL mode with `synchronous=NORMAL` and a
//! busy timeout; every shard connection is handed to the checkpoint manager (`crate::wal::manage`,
//! which replaces SQLite's inline auto-checkpoint with its WAL hook). `create` makes the file and
//! its `data` table from the user's column definitions
//! (so SQLite enforces affinity and per-row constraints) plus every catalog index; `open` never
//! creates a file: a missing shard is an error that names the file.
//!
//! Statement cache: `take(sql)` hands out a cached statement (or prepares one) and `give` returns
//! it reset and unbound. A statement is owned by exactly one user at a time, so several cursors
//! on one shard never share a statement.
//!
//! Transactions: `txn_levels` is None outside a write transaction; Some(k) means `BEGIN` was run
//! and savepoints `s1..=s{k}` are open: `s{n+1}` is SQLite's vtab savepoint level n (see
//! `ensure_txn`). The transaction start has no savepoint of its own (an open savepoint makes
//! SQLite copy every page it changes into a sub-journal): ROLLBACK TO the start (level -1) rolls
//! the shard's transaction back whole, and the shard joins again on its next write.
//! Field order matters: the cache is dropped (statements finalized) before the connection.

use std::collections::HashMap;
use std::path::Path;

use crate::config::quote_ident;
use crate::error::{Error, Result};
use crate::ffi::api::{Connection, Statement, OPEN_CREATE, OPEN_READWRITE};
use crate::routing::ShardId;

use super::catalog::IndexEntry;
use super::{BUSY_TIMEOUT_MS, SHARD_TABLE};

/// The statement cache's hasher: SQL texts are hashed on every `take`/`give` (twice per shard
/// per statement), where SipHash's setup and byte loop showed in profiles. This hashes 8 bytes
/// per step (multiply-rotate, as rustc's FxHasher); the keys are our own SQL, not attacker input.
#[derive(Default, Clone, Copy)]
pub struct SqlHasher(u64);

impl std::hash::Hasher for SqlHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(K);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type SqlMap<V> = HashMap<String, V, std::hash::BuildHasherDefault<SqlHasher>>;

pub struct ShardConn {
    cache: SqlMap<Vec<Statement>>,
    pub conn: Connection,
    pub id: ShardId,
    pub txn_levels: Option<u32>,
    /// the connection runs `synchronous=FULL` (`wal::Durability::Full`), else NORMAL
    sync_full: bool,
}

const CACHE_PER_SQL: usize = 4;
/// How long a shard taken out of ascending order may be waited for (milliseconds).
pub const OUT_OF_ORDER_WAIT_MS: i32 = 20;

pub fn index_sql(e: &IndexEntry) -> String {
    format!(
        "CREATE {}INDEX IF NOT EXISTS {} ON {SHARD_TABLE}({})",
        if e.unique { "UNIQUE " } else { "" },
        quote_ident(&e.name),
        e.definition
    )
}

impl ShardConn {
    fn configure(conn: &Connection) -> Result<()> {
        conn.busy_timeout(BUSY_TIMEOUT_MS);
        conn.exec("PRAGMA synchronous=NORMAL")?;
        Ok(())
    }

    /// Creates (or completes) a shard file: WAL mode, the data table, the indexes.
    pub fn create(id: ShardId, path: &Path, schema_body: &str, key_index: Option<&str>, indexes: &[IndexEntry]) -> Result<ShardConn> {
        let mut conn = Connection::open(&path.to_string_lossy(), OPEN_READWRITE | OPEN_CREATE)
            .map_err(|e| Error::shard(format!("sharded: cannot create shard file {}: {}", path.display(), e.message)))?;
        Self::configure(&conn)?;
        conn.exec("PRAGMA journal_mode=WAL")?;
        crate::wal::manage(&mut conn); // checkpoints: see crate::wal
        conn.exec(&format!("CREATE TABLE IF NOT EXISTS {SHARD_TABLE}({schema_body})"))?;
        conn.exec(crate::txn::MARKER_DDL)?;
        if let Some(k) = key_index {
            conn.exec(k)?;
        }
        for ix in indexes {
            conn.exec(&index_sql(ix))?;
        }
        Ok(ShardConn { cache: SqlMap::default(), conn, id, txn_levels: None, sync_full: false })
    }

    /// Opens an existing shard file, refusing one that is not the file the catalog recorded
    /// (replaced: other device/inode) or that has extra hard links (two names for one shard would
    /// let two processes keep two WAL files for it).
    pub fn open(id: ShardId, path: &Path, expected: Option<(u64, u64)>) -> Result<ShardConn> {
        if !path.exists() {
            return Err(Error::shard(format!(
                "sharded: shard file {} is missing (the catalog lists it); restore it from a backup",
                path.display()
            )));
        }
        if let Ok((dev, ino, nlink)) = super::file_identity(path) {
            if nlink > 1 {
                return Err(Error::shard(format!(
                    "sharded: shard file {} has {nlink} hard links; remove the extra links (a shard must have one name)",
                    path.display()
                )));
            }
            if let Some((d, i)) = expected {
                if (d, i) != (dev, ino) {
                    return Err(Error::shard(format!(
                        "sharded: shard file {} was replaced (it is not the file this table created); \
                         restore the original file, or copy the new one's rows in through the table",
                        path.display()
                    )));
                }
            }
        }
        let ctx = |e: Error| super::file_error(e, "shard file", path);
        let mut conn = Connection::open(&path.to_string_lossy(), OPEN_READWRITE).map_err(ctx)?;
        Self::configure(&conn).map_err(ctx)?;
        crate::wal::manage(&mut conn); // checkpoints: see crate::wal
        // Touch the schema so a corrupt or foreign file fails here with a clear message.
        let mut st = conn.prepare(&format!("SELECT 1 FROM {SHARD_TABLE} LIMIT 0")).map_err(ctx)?;
        st.step().map_err(ctx)?;
        drop(st);
        Ok(ShardConn { cache: SqlMap::default(), conn, id, txn_levels: None, sync_full: false })
    }

    /// Adds the shard file's path to errors about the file itself (I/O, full, corrupt,
    /// read-only, cannot open), so the user knows which of many files failed.
    pub fn annotate(&self, e: Error) -> Error {
        match e.code() & 0xff {
            8 | 10 | 11 | 13 | 14 | 26 => super::file_error(e, "shard file", Path::new(self.conn.path())),
            _ => e,
        }
    }

    fn exec(&self, sql: &str) -> Result<()> {
        self.conn.exec(sql).map_err(|e| self.annotate(e))
    }

    pub fn take(&mut self, sql: &str) -> Result<Statement> {
        if let Some(v) = self.cache.get_mut(sql) {
            if let Some(st) = v.pop() {
                return Ok(st);
            }
        }
        self.conn.prepare(sql)
    }

    pub fn give(&mut self, sql: &str, mut st: Statement) {
        st.clear_bindings();
        self.give_bound(sql, st)
    }

    /// Caches a statement bound with `Statement::bind_memo`, keeping its bindings (clearing
    /// them would make SQLite re-prepare it; its next user binds with `bind_memo` again).
    pub fn give_bound(&mut self, sql: &str, mut st: Statement) {
        st.reset();
        match self.cache.get_mut(sql) {
            Some(v) => {
                if v.len() < CACHE_PER_SQL {
                    v.push(st);
                }
            }
            None => {
                self.cache.insert(sql.to_string(), vec![st]);
            }
        }
    }

    /// Runs a cached statement with the given binder to completion; returns changes().
    pub fn run(&mut self, sql: &str, bind: impl FnOnce(&mut Statement) -> Result<()>) -> Result<i64> {
        let mut st = self.take(sql)?;
        let r = bind(&mut st).and_then(|_| st.step());
        self.give(sql, st);
        r.map_err(|e| self.annotate(e))?;
        Ok(self.conn.changes())
    }

    /// Does a row with this rowid exist here?
    pub fn has_rowid(&mut self, rowid: i64) -> Result<bool> {
        let sql = format!("SELECT 1 FROM {SHARD_TABLE} WHERE rowid = ?1");
        let mut st = self.take(&sql)?;
        let r = st.bind_i64(1, rowid).and_then(|_| st.step());
        self.give(&sql, st);
        r
    }

    /// `BEGIN IMMEDIATE` without waiting: Ok(false) when another connection holds the write lock.
    /// Recovery uses it so that it never waits for a live committer while its own host statement
    /// holds locks that committer may need (that would deadlock until the busy timeout).
    pub fn try_begin_immediate(&self) -> Result<bool> {
        self.conn.busy_timeout(0);
        let r = self.conn.exec("BEGIN IMMEDIATE");
        self.conn.busy_timeout(BUSY_TIMEOUT_MS);
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.code() & 0xff == 5 => Ok(false),
            Err(e) => Err(self.annotate(e)),
        }
    }

    /// Starts the shard's write transaction and opens savepoints up to `depth`.
    ///
    /// Savepoint names: SQLite's level n is shard savepoint `s{n+1}`; `txn_levels = Some(k)`
    /// means s1..=s{k} are open (Some(0): none).
    /// With `wait` false, a shard locked by another writer is waited for only
    /// [`OUT_OF_ORDER_WAIT_MS`] (brief holders: an outbox export, recovery, a checkpoint), then
    /// fails with SQLITE_BUSY instead of waiting the full busy timeout (see
    /// `ShardedTable::write_conn`: lock order).
    /// Puts back the `synchronous` level this connection runs at (after a temporary change).
    pub fn restore_synchronous(&self) -> Result<()> {
        self.conn.exec(if self.sync_full { "PRAGMA synchronous=FULL" } else { "PRAGMA synchronous=NORMAL" })
    }

    pub fn ensure_txn(&mut self, depth: u32, wait: bool) -> Result<()> {
        if self.txn_levels.is_none() {
            let full = crate::wal::durability() == crate::wal::Durability::Full;
            if full != self.sync_full {
                self.exec(if full { "PRAGMA synchronous=FULL" } else { "PRAGMA synchronous=NORMAL" })?;
                self.sync_full = full;
            }
            crate::wal::before_write(self.conn.path()); // waits out this process's WAL truncate
            if !wait {
                self.conn.busy_timeout(OUT_OF_ORDER_WAIT_MS);
            }
            let r = self.exec("BEGIN IMMEDIATE");
            if !wait {
                self.conn.busy_timeout(BUSY_TIMEOUT_MS);
            }
            r?;
            self.txn_levels = Some(0);
        }
        self.open_savepoints(depth)
    }

    /// Makes SQLite levels 0..depth-1 open (shard savepoints s1..=s{depth}).
    pub fn open_savepoints(&mut self, depth: u32) -> Result<()> {
        if let Some(mut n) = self.txn_levels {
            while n < depth {
                n += 1;
                self.exec(&format!("SAVEPOINT s{n}"))?;
                self.txn_levels = Some(n);
            }
        }
        Ok(())
    }

    /// SQLite's xRelease(level): releases levels >= `level`.
    pub fn release(&mut self, level: i32) -> Result<()> {
        if let Some(n) = self.txn_levels {
            if level >= 0 && n as i64 > level as i64 {
                self.exec(&format!("RELEASE s{}", level + 1))?;
                self.txn_levels = Some(level as u32);
            }
        }
        Ok(())
    }

    /// SQLite's xRollbackTo(level): undoes everything after savepoint `level` was opened;
    /// level -1 is the start of the transaction.
    pub fn rollback_to(&mut self, level: i32) -> Result<()> {
        if let Some(n) = self.txn_levels {
            if level < 0 {
                // the transaction start: nothing of it stays on this shard, so the shard leaves
                // the transaction (its next write joins again, as a shard first written now would)
                self.rollback()?;
            } else if n as i64 > level as i64 {
                let target = (level + 1) as u32;
                self.exec(&format!("ROLLBACK TO s{target}"))?;
                self.txn_levels = Some(target);
            }
        }
        Ok(())
    }

    pub fn commit(&mut self) -> Result<()> {
        if self.txn_levels.take().is_some() {
            self.exec("COMMIT")?;
        }
        Ok(())
    }

    pub fn rollback(&mut self) -> Result<()> {
        if self.txn_levels.take().is_some() && self.conn.in_transaction() {
            self.exec("ROLLBACK")?;
        }
        Ok(())
    }
}
