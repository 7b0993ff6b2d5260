//! One shard file's connection: open/create, prepared-statement cache, transaction depth.
//!
//! Opening: shard files are plain SQLite databases in WAL mode with `synchronous=NORMAL` and a
//! busy timeout. `create` makes the file and its `data` table from the user's column definitions
//! (so SQLite enforces affinity and per-row constraints) plus every catalog index; `open` never
//! creates a file: a missing shard is an error that names the file.
//!
//! Statement cache: `take(sql)` hands out a cached statement (or prepares one) and `give` returns
//! it reset and unbound. A statement is owned by exactly one user at a time, so several cursors
//! on one shard never share a statement.
//!
//! Transactions: `txn_levels` is None outside a write transaction; Some(n) means `BEGIN` was run
//! and savepoints `s0..s{n-1}` are open (mirroring SQLite's vtab savepoint numbers).
//! Field order matters: the cache is dropped (statements finalized) before the connection.

use std::collections::HashMap;
use std::path::Path;

use crate::config::quote_ident;
use crate::error::{Error, Result};
use crate::ffi::api::{Connection, Statement, OPEN_CREATE, OPEN_READWRITE};
use crate::routing::ShardId;

use super::catalog::IndexEntry;
use super::{BUSY_TIMEOUT_MS, SHARD_TABLE};

pub struct ShardConn {
    cache: HashMap<String, Vec<Statement>>,
    pub conn: Connection,
    pub id: ShardId,
    pub txn_levels: Option<u32>,
}

const CACHE_PER_SQL: usize = 4;

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
    pub fn create(id: ShardId, path: &Path, schema_body: &str, indexes: &[IndexEntry]) -> Result<ShardConn> {
        let conn = Connection::open(&path.to_string_lossy(), OPEN_READWRITE | OPEN_CREATE)
            .map_err(|e| Error::shard(format!("sharded: cannot create shard file {}: {}", path.display(), e.message)))?;
        Self::configure(&conn)?;
        conn.exec("PRAGMA journal_mode=WAL")?;
        conn.exec(&format!("CREATE TABLE IF NOT EXISTS {SHARD_TABLE}({schema_body})"))?;
        for ix in indexes {
            conn.exec(&index_sql(ix))?;
        }
        Ok(ShardConn { cache: HashMap::new(), conn, id, txn_levels: None })
    }

    /// Opens an existing shard file.
    pub fn open(id: ShardId, path: &Path) -> Result<ShardConn> {
        if !path.exists() {
            return Err(Error::shard(format!(
                "sharded: shard file {} is missing (the catalog lists it); restore it from a backup",
                path.display()
            )));
        }
        let conn = Connection::open(&path.to_string_lossy(), OPEN_READWRITE)
            .map_err(|e| Error::shard(format!("sharded: cannot open shard file {}: {}", path.display(), e.message)))?;
        Self::configure(&conn)?;
        // Touch the schema so a corrupt or foreign file fails here with a clear message.
        let mut st = conn
            .prepare(&format!("SELECT 1 FROM {SHARD_TABLE} LIMIT 0"))
            .map_err(|e| Error::shard(format!("sharded: shard file {} is unreadable or not a shard: {}", path.display(), e.message)))?;
        st.step()?;
        drop(st);
        Ok(ShardConn { cache: HashMap::new(), conn, id, txn_levels: None })
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
        st.reset();
        st.clear_bindings();
        let v = self.cache.entry(sql.to_string()).or_default();
        if v.len() < CACHE_PER_SQL {
            v.push(st);
        }
    }

    /// Runs a cached statement with the given binder to completion; returns changes().
    pub fn run(&mut self, sql: &str, bind: impl FnOnce(&mut Statement) -> Result<()>) -> Result<i64> {
        let mut st = self.take(sql)?;
        let r = bind(&mut st).and_then(|_| st.step());
        self.give(sql, st);
        r?;
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

    /// Starts the shard's write transaction and opens savepoints up to `depth`.
    pub fn ensure_txn(&mut self, depth: u32) -> Result<()> {
        if self.txn_levels.is_none() {
            self.conn.exec("BEGIN IMMEDIATE")?;
            self.txn_levels = Some(0);
        }
        self.open_savepoints(depth)
    }

    pub fn open_savepoints(&mut self, depth: u32) -> Result<()> {
        if let Some(mut n) = self.txn_levels {
            while n < depth {
                self.conn.exec(&format!("SAVEPOINT s{n}"))?;
                n += 1;
                self.txn_levels = Some(n);
            }
        }
        Ok(())
    }

    pub fn release(&mut self, level: u32) -> Result<()> {
        if let Some(n) = self.txn_levels {
            if n > level {
                self.conn.exec(&format!("RELEASE s{level}"))?;
                self.txn_levels = Some(level);
            }
        }
        Ok(())
    }

    pub fn rollback_to(&mut self, level: u32) -> Result<()> {
        if let Some(n) = self.txn_levels {
            if n > level {
                self.conn.exec(&format!("ROLLBACK TO s{level}"))?;
                self.txn_levels = Some(level + 1);
            }
        }
        Ok(())
    }

    pub fn commit(&mut self) -> Result<()> {
        if self.txn_levels.take().is_some() {
            self.conn.exec("COMMIT")?;
        }
        Ok(())
    }

    pub fn rollback(&mut self) -> Result<()> {
        if self.txn_levels.take().is_some() && self.conn.in_transaction() {
            self.conn.exec("ROLLBACK")?;
        }
        Ok(())
    }
}
