//! The catalog: `<dir>/catalog.db`, one per sharded table (schema in `sql/catalog.sql`).
//!
//! It records everything needed to find the rows again from any process: the format version, the
//! table's name, schema and options, the shard files, the bucket → shard map (hash) or the
//! prefix → shard list (prefix), the indexes to build on every shard, and the rowid high-water
//! mark from which connections reserve blocks of auto-assigned rowids.
//!
//! Invariants:
//! - `create` is the only code path that makes a directory or a catalog; `open` (xConnect) never
//!   creates anything, so a hostile schema naming some other `dir` can only reach a folder that
//!   already holds a catalog of a table with the same name and schema.
//! - Every change is its own `BEGIN IMMEDIATE` transaction on the catalog; other connections
//!   notice it through `PRAGMA data_version` ([`Catalog::changed`]) and reload.
//! - Unknown format versions are refused with an error naming both versions.

use std::path::{Path, PathBuf};

use crate::config::{Strategy, TableConfig};
use crate::error::{Error, Result};
use crate::ffi::api::{Connection, OPEN_CREATE, OPEN_READWRITE};
use crate::routing::ShardId;
use crate::value::Value;

use super::BUSY_TIMEOUT_MS;

pub const FORMAT_VERSION: i64 = 1;
pub const CATALOG_FILE: &str = "catalog.db";
const SCHEMA: &str = include_str!("../../sql/catalog.sql");

#[derive(Debug, Clone, PartialEq)]
pub struct ShardEntry {
    pub id: ShardId,
    pub file: String,
    /// Prefix strategy: Some(Some(p)) for prefix p, Some(None) for the NULL shard; hash: None.
    pub prefix: Option<Option<String>>,
    /// (device, inode) of the file when it was created (None: not recorded).
    pub identity: Option<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    pub name: String,
    pub definition: String,
    pub unique: bool,
}

pub struct Catalog {
    /// cached `PRAGMA data_version` (declared before `conn`: statements drop first)
    dv_stmt: Option<crate::ffi::api::Statement>,
    conn: Connection,
    pub dir: PathBuf,
    pub table_name: String,
    pub shards: Vec<ShardEntry>,
    /// bucket → shard (hash strategy)
    pub buckets: Vec<ShardId>,
    pub indexes: Vec<IndexEntry>,
    data_version: i64,
    /// lock-free shortcut in front of `PRAGMA data_version` (see `shard::watch`)
    watch: super::watch::Watch,
}

fn meta_get(conn: &Connection, key: &str) -> Result<Option<Value>> {
    let mut st = conn.prepare("SELECT value FROM meta WHERE key = ?1")?;
    st.bind(1, &Value::text(key))?;
    if st.step()? {
        Ok(Some(st.column_value(0)))
    } else {
        Ok(None)
    }
}

fn meta_set(conn: &Connection, key: &str, v: &Value) -> Result<()> {
    let mut st = conn.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)")?;
    st.bind(1, &Value::text(key))?;
    st.bind(2, v)?;
    st.step()?;
    Ok(())
}

fn text_of(v: Option<Value>) -> String {
    match v {
        Some(v) => String::from_utf8_lossy(&v.to_text()).into_owned(),
        None => String::new(),
    }
}

/// What the catalog remembers of the options (compared on every connect). ` outbox=on` is
/// appended only when on, so catalogs made before the option existed still match.
fn options_fingerprint(cfg: &TableConfig) -> String {
    let base = match &cfg.strategy {
        Strategy::Hash { shards, buckets } => format!("hash shards={shards} buckets={buckets}"),
        Strategy::Prefix { sep, depth, len } => {
            format!("prefix sep={:?} depth={depth} len={:?}", sep, len)
        }
    };
    if cfg.outbox {
        format!("{base} outbox=on")
    } else {
        base
    }
}

fn open_catalog_conn(path: &Path, create: bool) -> Result<Connection> {
    let flags = OPEN_READWRITE | if create { OPEN_CREATE } else { 0 };
    let ctx = |e: Error| super::file_error(e, "catalog", path);
    let conn = Connection::open(&path.to_string_lossy(), flags).map_err(ctx)?;
    conn.busy_timeout(BUSY_TIMEOUT_MS);
    // FULL: a rowid block must be durable before any row uses an id from it (else a power
    // loss could hand those ids out again while rows holding them survive).
    conn.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;").map_err(ctx)?;
    Ok(conn)
}

impl Catalog {
    /// CREATE VIRTUAL TABLE: makes `dir` (its parent must exist) and a new catalog in it.
    pub fn create(dir: &Path, table_name: &str, cfg: &TableConfig) -> Result<Catalog> {
        if !dir.exists() {
            std::fs::create_dir(dir).map_err(|e| {
                Error::config(format!(
                    "sharded: cannot create shard directory {}: {e} (create its parent folder or choose another dir)",
                    dir.display()
                ))
            })?;
        } else if !dir.is_dir() {
            return Err(Error::config(format!("sharded: dir {} exists and is not a directory", dir.display())));
        }
        let path = dir.join(CATALOG_FILE);
        if path.exists() {
            let existing = Connection::open(&path.to_string_lossy(), OPEN_READWRITE)
                .ok()
                .and_then(|c| meta_get(&c, "table_name").ok().flatten())
                .map(|v| text_of(Some(v)))
                .unwrap_or_else(|| "?".into());
            return Err(Error::catalog(format!(
                "sharded: {} already holds the catalog of sharded table \"{existing}\"; choose another dir, \
                 or DROP that table first",
                dir.display()
            )));
        }
        let conn = open_catalog_conn(&path, true).map_err(|e| {
            Error::config(format!("sharded: cannot create catalog in {}: {} (is the folder writable?)", dir.display(), e.message))
        })?;
        conn.exec("BEGIN IMMEDIATE")?;
        let r = (|| -> Result<()> {
            conn.exec(SCHEMA)?;
            meta_set(&conn, "format_version", &Value::Integer(FORMAT_VERSION))?;
            meta_set(&conn, "table_name", &Value::text(table_name))?;
            meta_set(&conn, "schema", &Value::text(&cfg.schema_body()))?;
            meta_set(&conn, "shard_key", &Value::text(&cfg.key().name))?;
            meta_set(&conn, "options", &Value::text(&options_fingerprint(cfg)))?;
            meta_set(&conn, "next_rowid", &Value::Integer(1))?;
            if let Strategy::Hash { shards, buckets } = cfg.strategy {
                let mut ins = conn.prepare("INSERT INTO shards(shard, file) VALUES (?1, ?2)")?;
                for s in 0..shards {
                    ins.bind(1, &Value::Integer(s as i64))?;
                    ins.bind(2, &Value::text(&format!("shard-{s:04}.db")))?;
                    ins.step()?;
                    ins.reset();
                }
                let mut b = conn.prepare("INSERT INTO buckets(bucket, shard) VALUES (?1, ?2)")?;
                for k in 0..buckets {
                    b.bind(1, &Value::Integer(k as i64))?;
                    b.bind(2, &Value::Integer((k % shards) as i64))?;
                    b.step()?;
                    b.reset();
                }
            }
            Ok(())
        })();
        match r {
            Ok(()) => conn.exec("COMMIT")?,
            Err(e) => {
                let _ = conn.exec("ROLLBACK");
                return Err(e);
            }
        }
        Catalog::loaded(conn, dir, table_name.to_string())
    }

    /// xConnect: opens an existing catalog and checks it describes this table.
    pub fn open(dir: &Path, table_name: &str, cfg: &TableConfig) -> Result<Catalog> {
        let path = dir.join(CATALOG_FILE);
        if !path.exists() {
            return Err(Error::catalog(format!(
                "sharded: no catalog for table \"{table_name}\" in {} (the shard folder was moved or deleted; \
                 restore it, or DROP TABLE {table_name} to forget the table)",
                dir.display()
            )));
        }
        let conn = open_catalog_conn(&path, false)?;
        let version = meta_get(&conn, "format_version")
            .map_err(|e| Error::catalog(format!("sharded: {} is not a sharded-table catalog: {}", path.display(), e.message)))?;
        match version {
            Some(Value::Integer(FORMAT_VERSION)) => {}
            Some(Value::Integer(v)) => {
                return Err(Error::catalog(format!(
                    "sharded: catalog {} has format version {v}, this libshardvt reads version {FORMAT_VERSION} \
                     (use a libshardvt that supports it)",
                    path.display()
                )))
            }
            _ => return Err(Error::catalog(format!("sharded: {} is not a sharded-table catalog", path.display()))),
        }
        let stored_name = text_of(meta_get(&conn, "table_name")?);
        if !stored_name.eq_ignore_ascii_case(table_name) {
            return Err(Error::catalog(format!(
                "sharded: the catalog in {} belongs to table \"{stored_name}\", not \"{table_name}\" (give this table its own dir)",
                dir.display()
            )));
        }
        let schema = text_of(meta_get(&conn, "schema")?);
        if schema != cfg.schema_body() {
            return Err(Error::catalog(format!(
                "sharded: the catalog in {} was created with columns ({schema}), but this table declares ({})",
                dir.display(),
                cfg.schema_body()
            )));
        }
        let opts = text_of(meta_get(&conn, "options")?);
        if opts != options_fingerprint(cfg) {
            return Err(Error::catalog(format!(
                "sharded: the catalog in {} was created with options ({opts}), but this table declares ({})",
                dir.display(),
                options_fingerprint(cfg)
            )));
        }
        Catalog::loaded(conn, dir, stored_name)
    }

    fn loaded(conn: Connection, dir: &Path, table_name: String) -> Result<Catalog> {
        let watch = super::watch::Watch::default();
        let mut c = Catalog {
            watch,
            dv_stmt: None,
            conn,
            dir: dir.to_path_buf(),
            table_name,
            shards: vec![],
            buckets: vec![],
            indexes: vec![],
            data_version: -1,
        };
        c.reload()?;
        Ok(c)
    }

    fn current_data_version(&mut self) -> Result<i64> {
        self.conn.data_version(&mut self.dv_stmt)
    }

    /// True (and the cached lists reloaded) when another connection changed the catalog.
    pub fn refresh(&mut self) -> Result<bool> {
        let hdr = self.watch.header(&self.conn);
        if self.watch.unchanged(&hdr) {
            return Ok(false); // nothing committed to the catalog since the last real check
        }
        if self.current_data_version()? != self.data_version {
            self.reload()?;
            self.watch.remember(hdr);
            return Ok(true);
        }
        self.watch.remember(hdr);
        Ok(false)
    }

    pub fn reload(&mut self) -> Result<()> {
        self.watch.forget();
        self.data_version = self.current_data_version()?;
        let mut shards = Vec::new();
        let mut st = self.conn.prepare("SELECT shard, file, prefix, is_null, dev, ino FROM shards ORDER BY shard")?;
        while st.step()? {
            let id = ShardId(st.column_i64(0) as u32);
            let file = text_of(Some(st.column_value(1)));
            let prefix = match (st.column_value(2), st.column_i64(3)) {
                (_, 1) => Some(None),
                (Value::Null, _) => None,
                (v, _) => Some(Some(text_of(Some(v)))),
            };
            let identity = match (st.column_value(4), st.column_value(5)) {
                (Value::Integer(d), Value::Integer(i)) => Some((d as u64, i as u64)),
                _ => None,
            };
            shards.push(ShardEntry { id, file, prefix, identity });
        }
        drop(st);
        let mut buckets = Vec::new();
        let mut st = self.conn.prepare("SELECT shard FROM buckets ORDER BY bucket")?;
        while st.step()? {
            buckets.push(ShardId(st.column_i64(0) as u32));
        }
        drop(st);
        let mut indexes = Vec::new();
        let mut st = self.conn.prepare("SELECT name, definition, is_unique FROM indexes ORDER BY name")?;
        while st.step()? {
            indexes.push(IndexEntry {
                name: text_of(Some(st.column_value(0))),
                definition: text_of(Some(st.column_value(1))),
                unique: st.column_i64(2) != 0,
            });
        }
        drop(st);
        self.shards = shards;
        self.buckets = buckets;
        self.indexes = indexes;
        Ok(())
    }

    fn in_write_txn<T>(&mut self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let path = self.dir.join(CATALOG_FILE);
        let v = self.conn.write_txn(f).map_err(|e| match e.code() & 0xff {
            8 | 10 | 13 | 14 => super::file_error(e, "catalog", &path),
            _ => e,
        })?;
        self.reload()?;
        Ok(v)
    }

    /// Records the (device, inode) of a shard file just created.
    pub fn record_identity(&mut self, id: ShardId, identity: (u64, u64)) -> Result<()> {
        self.in_write_txn(|c| {
            let mut st = c.prepare("UPDATE shards SET dev = ?1, ino = ?2 WHERE shard = ?3")?;
            st.bind_i64(1, identity.0 as i64)?;
            st.bind_i64(2, identity.1 as i64)?;
            st.bind_i64(3, id.0 as i64)?;
            st.step().map(|_| ())
        })
    }

    /// Registers the shard for a new prefix (or returns the one another process just added).
    pub fn add_prefix_shard(&mut self, prefix: Option<&str>, file: &str, identity: (u64, u64)) -> Result<ShardEntry> {
        let prefix_owned = prefix.map(|s| s.to_string());
        self.in_write_txn(|c| {
            let mut find = c.prepare("SELECT shard FROM shards WHERE file = ?1")?;
            find.bind(1, &Value::text(file))?;
            if find.step()? {
                return Ok(());
            }
            drop(find);
            let mut ins = c.prepare(
                "INSERT INTO shards(shard, file, prefix, is_null, dev, ino) \
                 VALUES ((SELECT coalesce(max(shard), -1) + 1 FROM shards), ?1, ?2, ?3, ?4, ?5)",
            )?;
            ins.bind_i64(4, identity.0 as i64)?;
            ins.bind_i64(5, identity.1 as i64)?;
            ins.bind(1, &Value::text(file))?;
            ins.bind(2, &prefix_owned.as_deref().map(Value::text).unwrap_or(Value::Null))?;
            ins.bind(3, &Value::Integer(prefix_owned.is_none() as i64))?;
            ins.step()?;
            Ok(())
        })?;
        self.shards
            .iter()
            .find(|s| s.file == file)
            .cloned()
            .ok_or_else(|| Error::internal("sharded: prefix shard vanished after registration"))
    }

    /// Reserves `count` rowids at or above `min_start`; returns the half-open range.
    /// `intrusion`: the caller wrote an explicit rowid `min_start - 1`; if that lies below the
    /// high-water mark it may be inside another connection's block, so the `rowid_epoch` is
    /// bumped and every connection drops its block at its next transaction.
    pub fn reserve_rowids(&mut self, min_start: i64, count: i64, intrusion: bool) -> Result<(i64, i64)> {
        self.in_write_txn(|c| {
            let next = match meta_get(c, "next_rowid")? {
                Some(Value::Integer(n)) => n,
                _ => 1,
            };
            if intrusion && min_start <= next {
                let epoch = match meta_get(c, "rowid_epoch")? {
                    Some(Value::Integer(n)) => n,
                    _ => 0,
                };
                meta_set(c, "rowid_epoch", &Value::Integer(epoch + 1))?;
            }
            let start = next.max(min_start);
            let end = start.saturating_add(count);
            meta_set(c, "next_rowid", &Value::Integer(end))?;
            Ok((start, end))
        })
    }

    /// Changes whenever an explicit rowid may have landed inside someone's reserved block.
    pub fn rowid_epoch(&self) -> Result<i64> {
        Ok(match meta_get(&self.conn, "rowid_epoch")? {
            Some(Value::Integer(n)) => n,
            _ => 0,
        })
    }

    /// Gives back the unused tail [next, end) of a reserved block when it is still the top.
    pub fn return_rowids(&mut self, next: i64, end: i64) -> Result<()> {
        self.in_write_txn(|c| {
            let mut st = c.prepare("UPDATE meta SET value = ?1 WHERE key = 'next_rowid' AND value = ?2")?;
            st.bind_i64(1, next)?;
            st.bind_i64(2, end)?;
            st.step().map(|_| ())
        })
    }

    pub fn add_index(&mut self, e: &IndexEntry) -> Result<()> {
        let e = e.clone();
        self.in_write_txn(|c| {
            let mut st = c.prepare("INSERT INTO indexes(name, definition, is_unique) VALUES (?1, ?2, ?3)")?;
            st.bind(1, &Value::text(&e.name))?;
            st.bind(2, &Value::text(&e.definition))?;
            st.bind(3, &Value::Integer(e.unique as i64))?;
            st.step().map(|_| ())
        })
    }

    pub fn drop_index(&mut self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.in_write_txn(|c| {
            let mut st = c.prepare("DELETE FROM indexes WHERE name = ?1")?;
            st.bind(1, &Value::text(&name))?;
            st.step().map(|_| ())
        })
    }

    pub fn set_table_name(&mut self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.in_write_txn(|c| meta_set(c, "table_name", &Value::text(&name)))?;
        self.table_name = name.to_string();
        Ok(())
    }

    pub fn shard_path(&self, e: &ShardEntry) -> PathBuf {
        self.dir.join(&e.file)
    }
}
