//! The `sharded` virtual table: orchestration of config, catalog, routing and shard connections.
//!
//! Callback order (SQLite's): xCreate/xConnect → xBestIndex* → xOpen → xFilter → xNext/xColumn/
//! xRowid … → xClose; writes: xBegin → xUpdate* (with xSavepoint/xRelease/xRollbackTo around
//! statements and SAVEPOINTs) → xSync → xCommit | xRollback.
//!
//! Writes (`update`):
//! - INSERT routes the key (after column affinity) to one shard. The rowid is the INTEGER PRIMARY
//!   KEY / explicit rowid, else the next id of this connection's reserved block (blocks come from
//!   the catalog's high-water mark, so ids never collide across connections or processes). An
//!   explicit rowid is checked against every shard: rowids are unique table-wide.
//! - UPDATE finds the row's shard (the shard the scan produced it from, else a rowid probe of each
//!   shard), re-routes the new key, and either updates in place or *moves* the row: insert into
//!   the new shard first, then delete from the old one, so a failure never loses the row. The
//!   rowid is kept, as on a native table.
//! - DELETE removes by rowid from the row's shard.
//! - Conflict clauses: the statement's ON CONFLICT mode (sqlite3_vtab_on_conflict) becomes
//!   `OR REPLACE` / `OR IGNORE` on the shard; ABORT, FAIL and ROLLBACK run as ABORT on the shard
//!   and return SQLITE_CONSTRAINT, after which SQLite applies the mode to the statement using our
//!   savepoint hooks (constraint support is declared with SQLITE_VTAB_CONSTRAINT_SUPPORT).
//!
//! Transactions: a shard joins the host's transaction on its first write (`BEGIN IMMEDIATE`) and
//! opens the savepoints currently open on the host, so `ROLLBACK TO` undoes exactly the writes
//! made after the savepoint on every shard. xSync writes the redo record of a transaction that
//! touched two or more shards (or several sharded tables: `txn::group`) — its commit point —
//! after syncing the participants' WALs; xCommit then commits each touched shard in shard order.
//! A transaction on one shard writes no record. Recovery lives in `table/recovery.rs`; the
//! protocol and formats in `crate::txn` and ARCHITECTURE.md §6.
//!
//! Reads run on the same shard connections, so a transaction reads its own writes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::config::{self, quote_ident, Strategy, TableConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::ffi::api::{HostDb, Statement, ValueRef};
use crate::ffi::vtab::{IndexInfo, VTab};
use crate::outbox::{Capture, Op, Record};
use crate::planner::{self, ConstraintIn};
use crate::routing::hash::bucket_of;
use crate::routing::prefix::{prefix_file_name, prefix_of, PrefixRule};
use crate::routing::prune::{prefix_may_hold, routable_value, KeyTerm};
use crate::routing::ShardId;
use crate::shard::catalog::{Catalog, IndexEntry};
use crate::shard::conn::{index_sql, ShardConn};
use crate::shard::SHARD_TABLE;
use crate::txn::group;
use crate::txn::log::{Entry, TxLog};
use crate::txn::{decode_row, encode_row, MARKER_DDL};
use crate::value::{apply_affinity, Affinity, Value};

use super::cursor::ShardedCursor;
use super::registry;

mod outbox_hooks;
mod recovery;

/// Scans smaller than this (total shard file bytes) stay sequential: threads cost more there.
pub const PARALLEL_MIN_BYTES: u64 = 8 << 20;
/// A scan visiting more shards than this is threaded only with `SHARDVT_PARALLEL=1` (one worker
/// thread per shard: many shards would mean many threads per statement).
pub const MAX_AUTO_SCAN_THREADS: usize = 16;

/// What a scan of several shards asks of them (decided in the cursor's xFilter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanKind {
    /// every shard is read through and filters its own rows (a pushed condition no index
    /// serves): the workers scan, few rows cross to the host thread
    Filtered,
    /// no condition and no LIMIT: every row of every shard crosses to the host thread
    Full,
    /// an index serves a condition, or a LIMIT was pushed: cheap on this thread
    Other,
}

/// Cores of this machine (read once).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}
/// Auto-assigned rowids are reserved from the catalog in blocks of this many.
pub const ROWID_BLOCK: i64 = 1024;
/// Bound on the rowid → shard memo kept from scans (cleared when exceeded).
const ROWID_MEMO_MAX: usize = 1 << 20;

// SQLite's ON CONFLICT modes (sqlite3.h).
const ON_CONFLICT_IGNORE: i32 = 2;
const ON_CONFLICT_REPLACE: i32 = 5;

pub struct ShardedTable {
    pub(crate) host: HostDb,
    pub(crate) schema: String,
    pub(crate) name: String,
    pub(crate) cfg: std::rc::Rc<TableConfig>,
    /// decoded plans by idxStr (xFilter runs once per lookup: no re-parsing)
    pub(crate) plan_cache: HashMap<String, std::rc::Rc<super::cursor::Shape>>,
    pub(crate) catalog: Catalog,
    /// Whether `dir` was derived from the table name (then RENAME moves the folder).
    default_dir: bool,
    conns: BTreeMap<ShardId, ShardConn>,
    /// read connections with pinned snapshots, for reads outside a write transaction
    /// (`shard::pin`)
    /// pinned read connections (`shard::pin`), looked up per shard per statement: keyed by
    /// the shard id's integer with an identity hash
    pins: HashMap<ShardId, std::sync::Arc<crate::shard::pin::Pinned>, std::hash::BuildHasherDefault<crate::routing::IdHasher>>,
    in_txn: bool,
    sp_depth: u32,
    pub(crate) rowid_memo: HashMap<i64, ShardId>,
    block: (i64, i64),
    /// catalog `rowid_epoch` when `block` was last validated
    rowid_epoch: i64,
    pub(crate) collations: Vec<String>,
    prefix_rule: Option<PrefixRule>,
    self_addr: usize,
    sql_insert: [String; 3],
    sql_update: [String; 3],
    sql_delete: String,
    sql_insert_subset: HashMap<(usize, Vec<bool>), String>,
    has_defaults: bool,
    txlog: TxLog,
    /// rowids written per shard in the current transaction (for redo images)
    touched: BTreeMap<ShardId, Vec<i64>>,
    /// set between xSync and xCommit/xRollback of a multi-shard transaction
    pending_txid: Option<i64>,
    /// the folder's commit table for consistent cuts (`shard::cut`), opened on first use;
    /// Some(None): it could not be opened (statements then read without the guarantee)
    cut: Option<Option<std::rc::Rc<crate::shard::cut::Cut>>>,
    /// path of txlog.db (for multi-table transactions, see txn::group)
    txlog_path: PathBuf,
    /// joined the host transaction's group of writing tables
    joined: bool,
    /// uniqueness rules that need a look at other shards (see config::cross_shard_unique_groups)
    unique_groups: Vec<config::UniqueGroup>,
    /// idle read-only connections for parallel scans (see shard::scan)
    pub(crate) reader_pool: crate::shard::scan::ReaderPool,
    /// read-only connections without a file mapping, for full scans (`ReaderPool::unmapped`)
    pub(crate) stream_pool: crate::shard::scan::ReaderPool,
    /// outbox=on: change capture and the outbox store (see `outbox_hooks`, `crate::outbox`)
    outbox: Option<Capture>,
}

/// Multi-shard commits between two clean-ups of the log.
const LOG_GC_EVERY: i64 = 256;

fn mode_index(on_conflict: i32) -> usize {
    match on_conflict {
        ON_CONFLICT_REPLACE => 1,
        ON_CONFLICT_IGNORE => 2,
        _ => 0,
    }
}

/// Resolves the shard directory: explicit `dir` (relative to the database file's folder) or the
/// default `<db file stem>.<table>.shards` beside the database file.
pub fn resolve_dir(host: HostDb, schema: &str, table: &str, dir: Option<&str>) -> Result<(PathBuf, bool)> {
    let dbfile = host.filename(schema).filter(|f| !f.is_empty());
    let base: Option<PathBuf> = dbfile.as_ref().map(|f| Path::new(f).parent().map(|p| p.to_path_buf()).unwrap_or_default());
    match dir {
        Some(d) => {
            let p = Path::new(d);
            if p.is_absolute() {
                Ok((p.to_path_buf(), false))
            } else {
                match base {
                    Some(b) => Ok((b.join(p), false)),
                    None => Err(Error::config(format!(
                        "sharded: database \"{schema}\" is in memory or temporary, so dir='{d}' has no folder to be \
                         relative to; give an absolute dir"
                    ))),
                }
            }
        }
        None => match dbfile {
            Some(f) => {
                let fp = Path::new(&f);
                let stem = fp.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "db".into());
                Ok((base.unwrap_or_default().join(format!("{stem}.{table}.shards")), true))
            }
            None => Err(Error::config(format!(
                "sharded: database \"{schema}\" is in memory or temporary; give the table a folder for its shards \
                 with dir='/path/to/folder'"
            ))),
        },
    }
}

impl ShardedTable {
    fn make_sql(cfg: &TableConfig) -> ([String; 3], [String; 3], String) {
        let cols: Vec<&config::ColumnDef> = cfg.columns.iter().filter(|c| !c.is_rowid_alias).collect();
        let names: Vec<String> = cols.iter().map(|c| quote_ident(&c.name)).collect();
        let marks: Vec<String> = (0..cols.len()).map(|i| format!("?{}", i + 2)).collect();
        let mut insert: [String; 3] = Default::default();
        let mut update: [String; 3] = Default::default();
        for (i, m) in ["ABORT", "REPLACE", "IGNORE"].iter().enumerate() {
            let mut col_list = String::from("rowid");
            let mut val_list = String::from("?1");
            for (n, q) in names.iter().zip(&marks) {
                col_list.push_str(", ");
                col_list.push_str(n);
                val_list.push_str(", ");
                val_list.push_str(q);
            }
            insert[i] = format!("INSERT OR {m} INTO {SHARD_TABLE}({col_list}) VALUES ({val_list})");
            let mut sets = String::from("rowid = ?1");
            for (n, q) in names.iter().zip(&marks) {
                sets.push_str(&format!(", {n} = {q}"));
            }
            update[i] = format!("UPDATE OR {m} {SHARD_TABLE} SET {sets} WHERE rowid = ?{}", cols.len() + 2);
        }
        (insert, update, format!("DELETE FROM {SHARD_TABLE} WHERE rowid = ?1"))
    }

    pub fn key_affinity(&self) -> Affinity {
        self.cfg.key().affinity
    }

    pub fn key_collation(&self) -> &str {
        &self.collations[self.cfg.key_column]
    }

    pub fn shard_count(&self) -> usize {
        self.catalog.shards.len()
    }

    /// Opens (lazily) the connection of shard `id`.
    pub(crate) fn conn(&mut self, id: ShardId) -> Result<&mut ShardConn> {
        if !self.conns.contains_key(&id) {
            let c = self.open_shard(id)?;
            self.conns.insert(id, c);
        }
        Ok(self.conns.get_mut(&id).unwrap())
    }

    /// The pinned-snapshot read connection of shard `id` (opened lazily), or None when reads
    /// must use the shard's own connection: inside a write transaction (they must see its
    /// writes), or with pinning off.
    /// The folder's commit table (`shard::cut`), opened on first use; None if it cannot be
    /// opened (logged once) or `SHARDVT_CUT=0` is set.
    pub(crate) fn cut(&mut self) -> Option<std::rc::Rc<crate::shard::cut::Cut>> {
        if self.cut.is_none() {
            let opened = if crate::shard::cut::enabled() {
                match crate::shard::cut::Cut::open(&self.catalog.dir) {
                    Ok(c) => Some(std::rc::Rc::new(c)),
                    Err(e) => {
                        crate::ffi::api::log(
                            e.code(),
                            &format!("sharded: {}: statements read shards without a consistent cut: {}", self.name, e.message),
                        );
                        None
                    }
                }
            } else {
                None
            };
            self.cut = Some(opened);
        }
        self.cut.clone().flatten()
    }

    /// Inside a write transaction of this table (its reads must go through the shards' own
    /// connections to see its writes).
    pub(crate) fn in_write_txn(&self) -> bool {
        self.in_txn
    }

    /// The commit table, for a statement about to read `nshards` shards: only when it reads
    /// two or more outside a write transaction (inside one, reads see the transaction's own
    /// writes through the shards' write connections, as SQLite's own transaction would).
    pub(crate) fn cut_for_read(&mut self, nshards: usize) -> Option<std::rc::Rc<crate::shard::cut::Cut>> {
        if nshards < 2 || self.in_txn {
            return None;
        }
        self.cut()
    }

    pub(crate) fn pinned(&mut self, id: ShardId) -> Result<Option<&std::sync::Arc<crate::shard::pin::Pinned>>> {
        if self.in_txn || !crate::shard::pin::enabled() {
            return Ok(None);
        }
        if self.pins.contains_key(&id) {
            return Ok(self.pins.get(&id));
        }
        // the shard's own connection first: a shard that was read can then be written even if
        // its folder turned read-only since (opening a connection there can fail)
        self.conn(id)?;
        let conn = self.open_shard(id)?;
        // Pinned connections only read: they map the shard file (`shard::pin`, MAPPED READS)
        conn.conn.exec(&format!("PRAGMA mmap_size={}", crate::shard::pin::PIN_MMAP_BYTES))?;
        let p = crate::shard::pin::Pinned::new(conn);
        Ok(Some(self.pins.entry(id).or_insert(p)))
    }

    /// Closes the pinned read connections (before the table's files are moved or removed).
    fn close_pins(&mut self) {
        for (_, p) in self.pins.drain() {
            crate::shard::pin::Pinned::close(p);
        }
    }

    /// A new connection to shard `id` (the catalog reloaded if it does not list the shard yet).
    fn open_shard(&mut self, id: ShardId) -> Result<ShardConn> {
        let entry = match self.catalog.shards.iter().find(|s| s.id == id) {
            Some(e) => e.clone(),
            None => {
                self.catalog.reload()?;
                self.catalog
                    .shards
                    .iter()
                    .find(|s| s.id == id)
                    .cloned()
                    .ok_or_else(|| Error::shard(format!("sharded: shard {} is not in the catalog", id.0)))?
            }
        };
        ShardConn::open(id, &self.catalog.shard_path(&entry), entry.identity)
    }

    /// The connection of shard `id`, joined to the current write transaction.
    fn write_conn(&mut self, id: ShardId) -> Result<&mut ShardConn> {
        let depth = self.sp_depth;
        let in_txn = self.in_txn;
        if in_txn && !self.joined {
            group::join(self.host, self.self_addr, self.txlog_path.clone());
            self.joined = true;
        }
        let held: Vec<u32> = self.conns.iter().filter(|(_, c)| c.txn_levels.is_some()).map(|(i, _)| i.0).collect();
        // Deadlock freedom: a transaction waits the busy timeout for a shard's lock only if that
        // shard's number is above every shard it already holds (waits in ascending order cannot
        // form a cycle). A lower-numbered shard is waited for only briefly (brief holders such as
        // an export or a recovery), then the statement fails with SQLITE_BUSY, as SQLite itself
        // does when waiting could deadlock; the application retries.
        let wait = held.iter().all(|&h| h < id.0);
        let c = self.conn(id)?;
        if in_txn {
            let fresh = c.txn_levels.is_none();
            c.ensure_txn(depth, wait).map_err(|e| {
                if e.code() & 0xff == crate::error::codes::BUSY && fresh {
                    let path = c.conn.path().to_string();
                    let why = if wait {
                        "stayed locked by another writer for the busy timeout".to_string()
                    } else {
                        format!(
                            "is locked by another writer while this transaction holds higher-numbered shards {held:?}; \
                             waiting longer could deadlock"
                        )
                    };
                    Error {
                        message: format!("sharded: shard {} ({path}) {why}; roll back and retry the transaction", id.0),
                        ..e
                    }
                } else {
                    e
                }
            })?;
            if fresh {
                self.catch_up_shard(id)?;
            }
        }
        Ok(self.conns.get_mut(&id).expect("opened above"))
    }

    /// All shard ids (reloading the catalog if another connection changed it).
    pub(crate) fn all_shards(&mut self) -> Result<Vec<ShardId>> {
        self.refresh_catalog()?;
        Ok(self.catalog.shards.iter().map(|s| s.id).collect())
    }

    /// Reloads the catalog if another connection changed it (one `PRAGMA data_version`), and
    /// everything derived from it. True when it changed.
    pub(crate) fn refresh_catalog(&mut self) -> Result<bool> {
        let changed = self.catalog.refresh()?;
        if changed {
            self.refresh_unique_groups();
        }
        Ok(changed)
    }

    /// Per column: true when some index of the shards starts with it (the shard-key index,
    /// UNIQUE / PRIMARY KEY constraints, indexes made by `shardvt_create_index`). Expression
    /// indexes and anything not understood count every column (the caller then stays safe).
    pub(crate) fn index_leading_columns(&self) -> Vec<bool> {
        let n = self.cfg.columns.len();
        let mut leads = vec![false; n];
        leads[self.cfg.key_column] = true;
        let first_of = |list: &str| -> Option<usize> {
            let first = list.split(',').next()?;
            let name = config::unquote(config::tokens(first).first()?);
            self.cfg.columns.iter().position(|c| c.name.eq_ignore_ascii_case(&name))
        };
        for (i, c) in self.cfg.columns.iter().enumerate() {
            let up = c.definition.to_ascii_uppercase();
            if c.is_rowid_alias || up.contains("UNIQUE") || up.contains("PRIMARY") {
                leads[i] = true;
            }
        }
        for tc in &self.cfg.table_constraints {
            let up = tc.trim_start().to_ascii_uppercase();
            if up.starts_with("UNIQUE") || up.starts_with("PRIMARY") || up.starts_with("CONSTRAINT") {
                match (tc.find('('), first_of(tc.split_once('(').map(|x| x.1).unwrap_or(""))) {
                    (Some(_), Some(i)) => leads[i] = true,
                    _ => return vec![true; n],
                }
            }
        }
        for ix in &self.catalog.indexes {
            match first_of(&ix.definition) {
                Some(i) => leads[i] = true,
                None => return vec![true; n],
            }
        }
        leads
    }

    fn refresh_unique_groups(&mut self) {
        let defs: Vec<String> =
            self.catalog.indexes.iter().filter(|i| i.unique).map(|i| i.definition.clone()).collect();
        self.unique_groups = config::cross_shard_unique_groups(&self.cfg, &defs);
    }

    fn unique_error(&self, g: &config::UniqueGroup) -> Error {
        let cols: Vec<String> = g.columns.iter().map(|&i| format!("{}.{}", self.name, self.cfg.columns[i].name)).collect();
        Error::constraint(format!("UNIQUE constraint failed: {}", cols.join(", ")))
    }

    /// Enforces uniqueness rules that span shards for a row about to be written to `target`
    /// (`exclude`: the row's own current rowid). Ok(false): the row is to be ignored.
    fn check_unique(&mut self, target: ShardId, exclude: i64, args: &[ValueRef<'_>], on_conflict: i32) -> Result<bool> {
        if self.unique_groups.is_empty() {
            return Ok(true);
        }
        let groups = self.unique_groups.clone();
        let ids = self.all_shards()?;
        for g in &groups {
            if g.columns.iter().any(|&c| args[2 + c].is_null()) {
                continue; // NULLs are distinct in UNIQUE
            }
            let conds: Vec<String> = g
                .columns
                .iter()
                .enumerate()
                .map(|(n, &c)| format!("{} = ?{}", quote_ident(&self.cfg.columns[c].name), n + 1))
                .collect();
            let sql = format!(
                "SELECT rowid FROM {SHARD_TABLE} WHERE {} AND rowid <> ?{} LIMIT 1",
                conds.join(" AND "),
                g.columns.len() + 1
            );
            for &id in &ids {
                if id == target {
                    continue; // the shard's own UNIQUE index decides there
                }
                let c = self.conn(id)?;
                let mut st = c.take(&sql)?;
                let mut r = Ok(());
                for (n, &col) in g.columns.iter().enumerate() {
                    r = r.and_then(|_| st.bind_ref(n + 1, args[2 + col]));
                }
                let found = r.and_then(|_| st.bind_i64(g.columns.len() + 1, exclude)).and_then(|_| st.step());
                let other = match found {
                    Ok(true) => Some(st.column_i64(0)),
                    Ok(false) => None,
                    Err(e) => {
                        c.give(&sql, st);
                        return Err(e);
                    }
                };
                c.give(&sql, st);
                if let Some(other) = other {
                    match on_conflict {
                        ON_CONFLICT_REPLACE => {
                            self.delete_in(id, other, Record::Change)?;
                            self.rowid_memo.remove(&other);
                        }
                        ON_CONFLICT_IGNORE => return Ok(false),
                        _ => return Err(self.unique_error(g)),
                    }
                }
            }
        }
        Ok(true)
    }

    /// The shard a stored key value (affinity already applied) routes to. Creates prefix shards
    /// on first use when `create` is set.
    pub(crate) fn route_stored(&mut self, key: &Value, create: bool) -> Result<Option<ShardId>> {
        let coll = self.key_collation().to_string();
        match &self.cfg.strategy {
            Strategy::Hash { buckets, .. } => {
                let b = bucket_of(key, &coll, *buckets);
                let sid = *self
                    .catalog
                    .buckets
                    .get(b.0 as usize)
                    .ok_or_else(|| Error::catalog(format!("sharded: bucket {} missing from the catalog", b.0)))?;
                Ok(Some(sid))
            }
            Strategy::Prefix { .. } => {
                let rule = self.prefix_rule.clone().unwrap();
                let p = prefix_of(key, &rule, &coll);
                let find = |cat: &Catalog| cat.shards.iter().find(|s| s.prefix.as_ref() == Some(&p)).map(|s| s.id);
                if let Some(id) = find(&self.catalog) {
                    return Ok(Some(id));
                }
                self.refresh_catalog()?;
                if let Some(id) = find(&self.catalog) {
                    return Ok(Some(id));
                }
                if !create {
                    return Ok(None);
                }
                let file = prefix_file_name(p.as_deref());
                // Create the file first, then register it: a crash in between leaves an orphan
                // file that the next creation of this prefix reuses.
                let path = self.catalog.dir.join(&file);
                let schema = self.cfg.schema_body();
                let indexes: Vec<IndexEntry> = self
                    .catalog
                    .indexes
                    .iter()
                    .filter(|i| !self.cfg.duplicates_key_index(&i.definition, i.unique))
                    .cloned()
                    .collect();
                let key_index = self.cfg.key_index_sql();
                let created = ShardConn::create(ShardId(u32::MAX), &path, &schema, key_index.as_deref(), &indexes)?;
                if self.cfg.outbox {
                    crate::outbox::create_tables(&created)?;
                }
                drop(created);
                let (dev, ino, _) = crate::shard::file_identity(&path)
                    .map_err(|e| Error::shard(format!("sharded: cannot stat {}: {e}", path.display())))?;
                let e = self.catalog.add_prefix_shard(p.as_deref(), &file, (dev, ino))?;
                Ok(Some(e.id))
            }
        }
    }

    /// Shards that may hold rows whose key satisfies all `terms` (None: all shards).
    pub(crate) fn prune(&mut self, terms: &[KeyTerm]) -> Result<Vec<ShardId>> {
        let aff = self.key_affinity();
        let coll = self.key_collation().to_string();
        let all = self.all_shards()?;
        match &self.cfg.strategy {
            Strategy::Hash { .. } => {
                let mut set: Option<Vec<ShardId>> = None;
                for t in terms {
                    let vals: Vec<Value> = match t {
                        KeyTerm::AnyOf(vs) => {
                            let r: Option<Vec<Value>> = vs.iter().map(|v| routable_value(v, aff)).collect();
                            match r {
                                Some(v) => v.into_iter().filter(|v| !v.is_null()).collect(),
                                None => continue,
                            }
                        }
                        KeyTerm::IsNull => vec![Value::Null],
                        _ => continue,
                    };
                    let mut ids = Vec::new();
                    for v in vals {
                        if let Some(id) = self.route_stored(&v, false)? {
                            if !ids.contains(&id) {
                                ids.push(id);
                            }
                        }
                    }
                    set = Some(match set {
                        None => ids,
                        Some(prev) => prev.into_iter().filter(|i| ids.contains(i)).collect(),
                    });
                }
                let mut out = set.unwrap_or(all);
                out.sort();
                Ok(out)
            }
            Strategy::Prefix { .. } => {
                let rule = self.prefix_rule.clone().unwrap();
                let entries = self.catalog.shards.clone();
                Ok(entries
                    .iter()
                    .filter(|e| {
                        let p = e.prefix.clone().unwrap_or(None);
                        terms.iter().all(|t| prefix_may_hold(p.as_deref(), t, &rule, aff, &coll))
                    })
                    .map(|e| e.id)
                    .collect())
            }
        }
    }

    pub(crate) fn shard_path(&self, id: ShardId) -> Result<PathBuf> {
        self.catalog
            .shards
            .iter()
            .find(|s| s.id == id)
            .map(|e| self.catalog.shard_path(e))
            .ok_or_else(|| Error::shard(format!("sharded: shard {} is not in the catalog", id.0)))
    }

    /// Worker threads for `sharded_agg`'s per-shard partial queries: the machine's cores (at
    /// most 8), or 1 (sequential, on this table's own connections) inside a write transaction
    /// (its uncommitted rows must be seen), with a single-threaded host library, for one shard,
    /// or with SHARDVT_PARALLEL=0.
    pub(crate) fn parallel_agg_threads(&self, shards: &[ShardId]) -> usize {
        if shards.len() < 2 || self.in_txn || !crate::ffi::api::host_threadsafe() {
            return 1;
        }
        if std::env::var("SHARDVT_PARALLEL").map(|v| v.trim() == "0").unwrap_or(false) {
            return 1;
        }
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8)
    }

    /// Worker threads of a parallel scan of `shards` shards. A [`ScanKind::Filtered`] scan
    /// sends few rows to this thread, which mostly waits: one worker per core. Otherwise every
    /// row crosses to this thread, which needs a core of its own: one worker fewer (at least
    /// one). At most one per shard; `SHARDVT_SCAN_WORKERS` overrides.
    pub(crate) fn scan_workers(&self, shards: usize, kind: ScanKind) -> usize {
        static FORCED: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
        let forced = *FORCED.get_or_init(|| std::env::var("SHARDVT_SCAN_WORKERS").ok().and_then(|v| v.trim().parse().ok()));
        let n = forced.unwrap_or(if kind == ScanKind::Filtered { cores() } else { cores().saturating_sub(1) });
        n.clamp(1, shards.max(1))
    }

    /// The worker connections of a parallel scan: mapped files for a filtered scan (its workers
    /// do the reading; mapping saves a copy per page), pread for the others, whose host thread
    /// is the bottleneck and whose mapped pages would all count in the process's RSS.
    pub(crate) fn scan_pool(&self, kind: ScanKind) -> &crate::shard::scan::ReaderPool {
        if kind == ScanKind::Filtered {
            &self.reader_pool
        } else {
            &self.stream_pool
        }
    }

    /// Whether a scan of `shards` runs on worker threads: a [`ScanKind::Filtered`] scan, or a
    /// [`ScanKind::Full`] one on a machine of 2+ cores, over at most [`MAX_AUTO_SCAN_THREADS`]
    /// shards; or any scan with `SHARDVT_PARALLEL=1` (never with `=0`). Always: several shards,
    /// no write transaction of ours (a transaction must read its own uncommitted writes, which
    /// only its connections see), a thread-safe host, and at least `SHARDVT_PARALLEL_MIN_BYTES`
    /// (default [`PARALLEL_MIN_BYTES`]) of shard files.
    pub(crate) fn parallel_scan(&self, shards: &[ShardId], kind: ScanKind) -> bool {
        if shards.len() < 2 || self.in_txn || !crate::ffi::api::host_threadsafe() {
            return false;
        }
        // read once per process (this runs on every xFilter)
        static FORCED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let forced = FORCED.get_or_init(|| std::env::var("SHARDVT_PARALLEL").map(|v| v.trim().to_string()).unwrap_or_default());
        let auto = match kind {
            ScanKind::Filtered => true,
            ScanKind::Full => cores() >= 2,
            ScanKind::Other => false,
        };
        if forced == "0" || (forced != "1" && (!auto || shards.len() > MAX_AUTO_SCAN_THREADS)) {
            return false;
        }
        let min = std::env::var("SHARDVT_PARALLEL_MIN_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(PARALLEL_MIN_BYTES);
        let mut bytes = 0u64;
        for id in shards {
            if let Ok(p) = self.shard_path(*id) {
                for suffix in ["", "-wal"] {
                    let f = PathBuf::from(format!("{}{suffix}", p.display()));
                    bytes += std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
                }
            }
            if bytes >= min {
                return true;
            }
        }
        false
    }

    /// Which shard holds `rowid` now (memo from scans, verified; else a probe of every shard).
    fn locate(&mut self, rowid: i64) -> Result<Option<ShardId>> {
        if let Some(&id) = self.rowid_memo.get(&rowid) {
            if self.conn(id)?.has_rowid(rowid)? {
                return Ok(Some(id));
            }
        }
        for id in self.all_shards()? {
            if self.conn(id)?.has_rowid(rowid)? {
                self.rowid_memo.insert(rowid, id);
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    fn touch(&mut self, id: ShardId, rowid: i64) {
        self.touched.entry(id).or_default().push(rowid);
    }

    /// Runs the DELETE template on shard `id` for `rowid` inside the transaction.
    fn delete_in(&mut self, id: ShardId, rowid: i64, rec: Record) -> Result<()> {
        let sql = self.sql_delete.clone();
        let before = self.outbox_before(id, rowid, rec)?;
        self.write_conn(id)?.run(&sql, |st| st.bind_i64(1, rowid)).map_err(|e| self.table_error(e))?;
        self.touch(id, rowid);
        self.outbox_record(id, Op::Delete, rowid, before)
    }

    pub(crate) fn remember(&mut self, rowid: i64, id: ShardId) {
        if self.rowid_memo.len() >= ROWID_MEMO_MAX {
            self.rowid_memo.clear();
        }
        self.rowid_memo.insert(rowid, id);
    }

    /// Drops our rowid block when another connection wrote an explicit rowid that may lie inside
    /// it (catalog `rowid_epoch` changed). Checked once per write transaction, not per row.
    fn check_rowid_epoch(&mut self) -> Result<()> {
        if self.refresh_catalog()? {
            let epoch = self.catalog.rowid_epoch()?;
            if epoch != self.rowid_epoch {
                self.rowid_epoch = epoch;
                self.block = (0, 0);
            }
        }
        Ok(())
    }

    fn next_auto_rowid(&mut self) -> Result<i64> {
        if self.block.0 >= self.block.1 {
            self.block = self.catalog.reserve_rowids(1, ROWID_BLOCK, false)?;
        }
        if self.block.0 == i64::MAX {
            // As SQLite does once the largest rowid is taken: try random unused positive rowids.
            let mut seed = (self.block.1 as u64) ^ (std::process::id() as u64) ^ (self as *const _ as u64);
            for _ in 0..100 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let cand = (seed >> 1) as i64;
                if cand > 0 && self.locate(cand)?.is_none() {
                    return Ok(cand);
                }
            }
            return Err(Error::sqlite(13, "database or disk is full".into()));
        }
        let r = self.block.0;
        self.block.0 += 1;
        Ok(r)
    }

    /// Keeps auto-assigned rowids clear of an explicit rowid `r` just written.
    fn note_explicit_rowid(&mut self, r: i64) -> Result<()> {
        if r >= self.block.0 && r < self.block.1 {
            self.block.0 = r.saturating_add(1);
            return Ok(());
        }
        // Outside our block: raise the high-water mark above r (this also tells every other
        // connection, through the catalog's data_version, to drop its block).
        let min = r.saturating_add(1).max(1);
        self.block = self.catalog.reserve_rowids(min, ROWID_BLOCK, true)?;
        if r < self.block.0 && r >= 1 {
            // r lies below the mark: only the notification was needed; keep the new block.
        }
        Ok(())
    }

    fn table_error(&self, e: Error) -> Error {
        let from = format!("{SHARD_TABLE}.");
        let to = format!("{}.", self.name);
        let msg = e.message.replace(&from, &to);
        if e.is_constraint() {
            Error { kind: ErrorKind::Constraint, message: msg }
        } else {
            Error { kind: e.kind, message: msg }
        }
    }

    fn rowid_conflict(&self) -> Error {
        let col = self.cfg.rowid_alias().map(|i| self.cfg.columns[i].name.clone()).unwrap_or_else(|| "rowid".into());
        Error::constraint(format!("UNIQUE constraint failed: {}.{col}", self.name))
    }

    fn insert_into(&mut self, id: ShardId, mode: usize, rowid: i64, args: &[ValueRef<'_>], mask: Option<&[bool]>, rec: Record) -> Result<bool> {
        self.write_conn(id)?;
        let sql = match mask {
            None => self.sql_insert[mode].clone(),
            Some(m) => self.insert_sql_for(mode, m),
        };
        let cfg = self.cfg.clone();
        let changed = self.write_captured(id, mode, |conn| conn.run(&sql, |st| bind_row(&cfg.columns, mask, st, rowid, args).map(|_| ())))?;
        self.touch(id, rowid);
        if changed > 0 && rec == Record::Change && self.outbox.is_some() {
            // the after image from the inserted values when certain (no DEFAULT filled in)
            let after = match (mask, self.outbox.as_ref()) {
                (None, Some(ob)) => ob.image_of_values(
                    cfg.columns.iter().enumerate().filter(|(_, c)| !c.is_rowid_alias).map(|(i, c)| (args[2 + i].to_value(), c.affinity)),
                ),
                _ => None,
            };
            self.outbox_record_with(id, Op::Create, rowid, None, after)?;
        }
        Ok(changed > 0)
    }

    /// INSERT text naming only the supplied columns, so the shard applies the others' DEFAULTs.
    fn insert_sql_for(&mut self, mode: usize, mask: &[bool]) -> String {
        let key = (mode, mask.to_vec());
        if let Some(s) = self.sql_insert_subset.get(&key) {
            return s.clone();
        }
        let mut cols = String::from("rowid");
        let mut vals = String::from("?1");
        let mut n = 2;
        for (i, c) in self.cfg.columns.iter().enumerate() {
            if c.is_rowid_alias || !mask[i] {
                continue;
            }
            cols.push_str(&format!(", {}", quote_ident(&c.name)));
            vals.push_str(&format!(", ?{n}"));
            n += 1;
        }
        let m = ["ABORT", "REPLACE", "IGNORE"][mode];
        let sql = format!("INSERT OR {m} INTO {SHARD_TABLE}({cols}) VALUES ({vals})");
        self.sql_insert_subset.insert(key, sql.clone());
        sql
    }

    /// Which columns the running INSERT names (None: all). Only tables with DEFAULTs ask: a
    /// virtual table receives NULL for an omitted column, so the statement text tells us which
    /// columns were omitted and must take their DEFAULT.
    fn supplied_columns(&self) -> Option<Vec<bool>> {
        if !self.has_defaults {
            return None;
        }
        for sql in self.host.running_write_sql() {
            if let Some(r) = config::insert_columns(&sql, &self.name) {
                let list = r?;
                return Some(
                    self.cfg.columns.iter().map(|c| list.iter().any(|n| n.eq_ignore_ascii_case(&c.name))).collect(),
                );
            }
        }
        None
    }

    fn key_of_args(&self, args: &[ValueRef<'_>]) -> Value {
        let v = args[2 + self.cfg.key_column].to_value();
        apply_affinity(&v, self.key_affinity())
    }

    /// Resolves the rowid of an INSERT: explicit rowid argument, else INTEGER PRIMARY KEY value.
    fn explicit_rowid(&self, args: &[ValueRef<'_>]) -> Result<Option<i64>> {
        let mut v = args[1].to_value();
        if v.is_null() {
            if let Some(i) = self.cfg.rowid_alias() {
                v = args[2 + i].to_value();
            }
        }
        match apply_affinity(&v, Affinity::Integer) {
            Value::Null => Ok(None),
            Value::Integer(i) => Ok(Some(i)),
            _ => Err(Error::mismatch()),
        }
    }

    fn do_insert(&mut self, args: &[ValueRef<'_>], on_conflict: i32) -> Result<i64> {
        let key = self.key_of_args(args);
        let target = self.route_stored(&key, true)?.expect("route with create");
        let mode = mode_index(on_conflict);
        let rowid = match self.explicit_rowid(args)? {
            Some(r) => {
                // rowids are unique table-wide: check every other shard.
                for id in self.all_shards()? {
                    if id != target && self.conn(id)?.has_rowid(r)? {
                        match on_conflict {
                            ON_CONFLICT_REPLACE => self.delete_in(id, r, Record::Change)?,
                            ON_CONFLICT_IGNORE => return Err(Error::ignored()),
                            _ => return Err(self.rowid_conflict()),
                        }
                    }
                }
                self.note_explicit_rowid(r)?;
                (r, false)
            }
            None => (self.next_auto_rowid()?, true),
        };
        let (rowid, auto) = rowid;
        let giveback = |t: &mut Self| {
            if auto && t.block.0 == rowid + 1 {
                t.block.0 = rowid; // a failed insert does not use up its id
            }
        };
        match self.check_unique(target, rowid, args, on_conflict) {
            Ok(true) => {}
            Ok(false) => {
                giveback(self);
                return Err(Error::ignored());
            }
            Err(e) => {
                giveback(self);
                return Err(e);
            }
        }
        let mask = self.supplied_columns();
        match self.insert_into(target, mode, rowid, args, mask.as_deref(), Record::Change) {
            Ok(true) => {
                self.remember(rowid, target);
                Ok(rowid)
            }
            Ok(false) => {
                giveback(self);
                Err(Error::ignored())
            }
            Err(e) => {
                giveback(self);
                Err(self.table_error(e))
            }
        }
    }

    fn do_delete(&mut self, rowid: i64) -> Result<()> {
        if let Some(id) = self.locate(rowid)? {
            self.delete_in(id, rowid, Record::Change)?;
            self.rowid_memo.remove(&rowid);
        }
        Ok(())
    }

    fn do_update(&mut self, old: i64, args: &[ValueRef<'_>], on_conflict: i32) -> Result<i64> {
        // SQLite hands a virtual table its INTEGER PRIMARY KEY as an ordinary column: the new
        // rowid is the rowid argument when SET rowid changed it, else the alias column's value.
        let as_rowid = |v: Value| match apply_affinity(&v, Affinity::Integer) {
            Value::Integer(i) => Ok(i),
            _ => Err(Error::mismatch()),
        };
        let mut new = as_rowid(args[1].to_value())?;
        if new == old {
            if let Some(i) = self.cfg.rowid_alias() {
                new = as_rowid(args[2 + i].to_value())?;
            }
        }
        let Some(source) = self.locate(old)? else {
            // The row vanished (deleted by an earlier row of this statement): nothing to do.
            return Ok(new);
        };
        let key = self.key_of_args(args);
        let target = self.route_stored(&key, true)?.expect("route with create");
        let mode = mode_index(on_conflict);
        if new != old {
            for id in self.all_shards()? {
                if id != source && id != target && self.conn(id)?.has_rowid(new)? {
                    match on_conflict {
                        ON_CONFLICT_REPLACE => self.delete_in(id, new, Record::Change)?,
                        ON_CONFLICT_IGNORE => return Err(Error::ignored()),
                        _ => return Err(self.rowid_conflict()),
                    }
                }
            }
            if source != target && self.conn(target)?.has_rowid(new)? {
                match on_conflict {
                    ON_CONFLICT_REPLACE => {}
                    ON_CONFLICT_IGNORE => return Err(Error::ignored()),
                    _ => return Err(self.rowid_conflict()),
                }
            }
        }
        if !self.check_unique(target, old, args, on_conflict)? {
            return Err(Error::ignored());
        }
        if source == target {
            self.write_conn(source)?;
            let before = self.outbox_before(source, old, Record::Change)?;
            let cfg = self.cfg.clone();
            let sql = self.sql_update[mode].clone();
            let r = self.write_captured(source, mode, |conn| {
                conn.run(&sql, |st| {
                    let n = bind_row(&cfg.columns, None, st, new, args)?;
                    st.bind_i64(n, old)
                })
            });
            if r.map_err(|e| self.table_error(e))? == 0 && mode == 2 {
                return Err(Error::ignored());
            }
            self.touch(source, old);
            self.touch(source, new);
            self.outbox_record(source, Op::Update, new, before)?;
        } else {
            // Move: insert into the new shard first, then delete from the old one. The outbox
            // records the pair as one update, in the new shard.
            let before = self.outbox_before(source, old, Record::Change)?;
            let inserted =
                self.insert_into(target, mode, new, args, None, Record::PartOfMove).map_err(|e| self.table_error(e))?;
            if !inserted {
                return Err(Error::ignored()); // OR IGNORE: the row stays where it was
            }
            if let Err(e) = self.delete_in(source, old, Record::PartOfMove) {
                // undo the insert so the row is not duplicated
                let sql = self.sql_delete.clone();
                let _ = self.write_conn(target)?.run(&sql, |st| st.bind_i64(1, new));
                return Err(e);
            }
            self.outbox_record(target, Op::Update, new, before)?;
        }
        self.rowid_memo.remove(&old);
        self.remember(new, target);
        if new != old {
            self.note_explicit_rowid(new)?;
        }
        Ok(new)
    }

    /// CREATE INDEX on every shard, recorded in the catalog for shards created later.
    pub fn create_index(&mut self, name: &str, definition: &str, unique: bool) -> Result<()> {
        if name.is_empty() || definition.trim().is_empty() {
            return Err(Error::config("shardvt_create_index: name and definition must not be empty"));
        }
        self.refresh_catalog()?;
        if self.catalog.indexes.iter().any(|i| i.name.eq_ignore_ascii_case(name)) {
            return Err(Error::config(format!(
                "shardvt_create_index: index {name} already exists on {} (drop it first with shardvt_drop_index('{}', '{name}'))",
                self.name, self.name
            )));
        }
        let e = IndexEntry { name: name.to_string(), definition: definition.to_string(), unique };
        if self.cfg.duplicates_key_index(definition, unique) {
            // the shard-key index already is this index (see TableConfig::duplicates_key_index)
            self.catalog.add_index(&e)?;
            return Ok(());
        }
        let sql = index_sql(&e).replacen(" IF NOT EXISTS", "", 1);
        let ids = self.all_shards()?;
        let mut done = Vec::new();
        for id in ids {
            let r = self.conn(id)?.conn.exec(&sql);
            if let Err(err) = r {
                for d in done {
                    let _ = self.conn(d)?.conn.exec(&format!("DROP INDEX IF EXISTS {}", quote_ident(name)));
                }
                return Err(self.table_error(err).context(&format!("shardvt_create_index({name})")));
            }
            done.push(id);
        }
        if unique {
            if let Err(err) = self.check_no_cross_shard_duplicates(definition) {
                for d in done {
                    let _ = self.conn(d)?.conn.exec(&format!("DROP INDEX IF EXISTS {}", quote_ident(name)));
                }
                return Err(err.context(&format!("shardvt_create_index({name})")));
            }
        }
        self.catalog.add_index(&e)?;
        self.refresh_unique_groups();
        Ok(())
    }

    /// For a new UNIQUE index on plain columns without the shard key: no two shards may already
    /// hold equal non-NULL values (each shard's own index has checked its rows).
    fn check_no_cross_shard_duplicates(&mut self, definition: &str) -> Result<()> {
        let Some(cols) = config::plain_column_list(definition, &self.cfg.columns) else { return Ok(()) };
        if cols.contains(&self.cfg.key_column) {
            return Ok(());
        }
        let names: Vec<String> = cols.iter().map(|&c| quote_ident(&self.cfg.columns[c].name)).collect();
        let not_null: Vec<String> = names.iter().map(|n| format!("{n} IS NOT NULL")).collect();
        let sql = format!("SELECT {} FROM {SHARD_TABLE} WHERE {}", names.join(", "), not_null.join(" AND "));
        let colls: Vec<String> = cols.iter().map(|&c| self.collations[c].clone()).collect();
        let mut seen: HashMap<Vec<u8>, ShardId> = HashMap::new();
        for id in self.all_shards()? {
            let c = self.conn(id)?;
            let mut st = c.conn.prepare(&sql)?;
            while st.step()? {
                let mut k = Vec::new();
                for (i, coll) in colls.iter().enumerate() {
                    let b = crate::routing::hash::key_bytes(&st.column_value(i), coll);
                    k.extend_from_slice(&(b.len() as u32).to_be_bytes());
                    k.extend_from_slice(&b);
                }
                if let Some(prev) = seen.insert(k, id) {
                    if prev != id {
                        let cols: Vec<String> =
                            cols.iter().map(|&c| format!("{}.{}", self.name, self.cfg.columns[c].name)).collect();
                        return Err(Error::constraint(format!("UNIQUE constraint failed: {}", cols.join(", "))));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn drop_index(&mut self, name: &str) -> Result<()> {
        self.refresh_catalog()?;
        let Some(e) = self.catalog.indexes.iter().find(|i| i.name.eq_ignore_ascii_case(name)).cloned() else {
            return Err(Error::config(format!(
                "shardvt_drop_index: no such index: {name} on {} (only indexes made by shardvt_create_index can be dropped)",
                self.name
            )));
        };
        for id in self.all_shards()? {
            self.conn(id)?.conn.exec(&format!("DROP INDEX IF EXISTS {}", quote_ident(&e.name)))?;
        }
        self.catalog.drop_index(&e.name)?;
        self.refresh_unique_groups();
        Ok(())
    }

    /// Row count of one shard.
    pub fn shard_rows(&mut self, id: ShardId) -> Result<i64> {
        let sql = format!("SELECT count(*) FROM {SHARD_TABLE}");
        let c = self.conn(id)?;
        let mut st = c.take(&sql)?;
        let r = st.step().map(|_| st.column_i64(0));
        c.give(&sql, st);
        r
    }

    /// The shard a key value would route to (applying the key column's affinity).
    pub fn route_value(&mut self, v: &Value) -> Result<Option<ShardId>> {
        let key = apply_affinity(v, self.key_affinity());
        self.route_stored(&key, false)
    }
}

/// Binds rowid and the non-alias columns of `args[2..]` for the insert/update templates;
/// returns the next free parameter number.
fn bind_row(cols: &[config::ColumnDef], mask: Option<&[bool]>, st: &mut Statement, rowid: i64, args: &[ValueRef<'_>]) -> Result<usize> {
    st.bind_i64(1, rowid)?;
    let mut n = 2;
    for (i, c) in cols.iter().enumerate() {
        if c.is_rowid_alias || mask.map(|m| !m[i]).unwrap_or(false) {
            continue;
        }
        st.bind_ref(n, args[2 + i])?;
        n += 1;
    }
    Ok(n)
}

impl VTab for ShardedTable {
    type Cursor = ShardedCursor;

    fn connect(db: HostDb, argv: &[String], create: bool) -> Result<(Self, String)> {
        if argv.len() < 3 {
            return Err(Error::misuse("sharded: malformed module arguments"));
        }
        let schema = argv[1].clone();
        let name = argv[2].clone();
        let args: Vec<&str> = argv[3..].iter().map(|s| s.as_str()).collect();
        let cfg = config::parse(&args)?;
        let (dir, default_dir) = resolve_dir(db, &schema, &name, cfg.dir.as_deref())?;
        let creates_files = create && !cfg.attach;
        let catalog = if creates_files {
            let mut cat = Catalog::create(&dir, &name, &cfg)?;
            for e in cat.shards.clone().iter() {
                let created =
                    ShardConn::create(e.id, &cat.shard_path(e), &cfg.schema_body(), cfg.key_index_sql().as_deref(), &[])
                        .map_err(|e| e.context("sharded: CREATE VIRTUAL TABLE"))?;
                if cfg.outbox {
                    crate::outbox::create_tables(&created)?;
                }
                drop(created);
                let path = cat.shard_path(e);
                let (dev, ino, _) = crate::shard::file_identity(&path)
                    .map_err(|err| Error::shard(format!("sharded: cannot stat {}: {err}", path.display())))?;
                cat.record_identity(e.id, (dev, ino))?;
            }
            cat
        } else {
            Catalog::open(&dir, &name, &cfg)?
        };
        let txlog = if creates_files { TxLog::create(&catalog.dir)? } else { TxLog::open(&catalog.dir)? };
        let txlog_path_of_dir = catalog.dir.join(crate::txn::TXLOG_FILE);
        let declared = format!("CREATE TABLE x({})", cfg.schema_body());
        let collations = cfg.columns.iter().map(|c| c.collation.clone()).collect();
        let prefix_rule = match &cfg.strategy {
            Strategy::Prefix { sep, depth, len } => Some(PrefixRule { sep: sep.clone(), depth: *depth, len: *len }),
            _ => None,
        };
        let (sql_insert, sql_update, sql_delete) = Self::make_sql(&cfg);
        let has_defaults = cfg
            .columns
            .iter()
            .any(|c| config::tokens(&c.definition).iter().any(|t| t.eq_ignore_ascii_case("DEFAULT")));
        if create && cfg.outbox {
            crate::outbox::store::Store::remove_stale(&catalog.dir); // left by an interrupted DROP
        }
        let outbox = if cfg.outbox { Some(Capture::new(&cfg)) } else { None };
        let t = ShardedTable {
            host: db,
            schema,
            name,
            cfg: std::rc::Rc::new(cfg),
            plan_cache: HashMap::new(),
            catalog,
            default_dir,
            conns: BTreeMap::new(),
            pins: HashMap::default(),
            cut: None,
            in_txn: false,
            sp_depth: 0,
            rowid_memo: HashMap::new(),
            block: (0, 0),
            rowid_epoch: 0,
            collations,
            prefix_rule,
            self_addr: 0,
            sql_insert,
            sql_update,
            sql_delete,
            sql_insert_subset: HashMap::new(),
            has_defaults,
            txlog,
            touched: BTreeMap::new(),
            pending_txid: None,
            txlog_path: txlog_path_of_dir,
            joined: false,
            unique_groups: Vec::new(),
            reader_pool: Default::default(),
            stream_pool: crate::shard::scan::ReaderPool::unmapped(),
            outbox,
        };
        let mut t = t;
        t.rowid_epoch = t.catalog.rowid_epoch()?;
        t.refresh_unique_groups();
        if !creates_files {
            // Finish or re-apply any multi-shard transaction a crash interrupted.
            t.recover(true).map_err(|e| e.context("sharded: recovering interrupted multi-shard commits"))?;
        }
        Ok((t, declared))
    }

    fn wants_constraint_support() -> bool {
        true
    }

    fn set_host_ptr(&mut self, addr: usize) {
        self.self_addr = addr;
        registry::register(self.host, &self.schema, &self.name, addr);
    }

    fn best_index(&mut self, info: &mut IndexInfo<'_>) -> Result<()> {
        let cons: Vec<ConstraintIn> = info
            .constraints()
            .into_iter()
            .map(|c| ConstraintIn {
                column: c.column,
                op: c.op,
                usable: c.usable,
                collation: c.collation,
                can_handle_in: c.can_handle_in,
            })
            .collect();
        let choice = planner::best_index(
            &cons,
            &info.order_by(),
            info.col_used(),
            &self.collations,
            self.cfg.key_column,
            self.catalog.shards.len(),
        );
        for (i, a) in &choice.argv {
            info.set_argv_index(*i, *a as i32, false);
        }
        for i in &choice.handle_in {
            info.handle_in(*i);
        }
        info.set_idx_str(&choice.plan.encode());
        info.set_order_by_consumed(choice.order_consumed);
        info.set_estimated_cost(choice.cost);
        info.set_estimated_rows(choice.rows);
        Ok(())
    }

    fn open(&mut self) -> Result<ShardedCursor> {
        Ok(ShardedCursor::new())
    }

    fn destroy(&mut self) -> Result<()> {
        registry::unregister(self.host, &self.schema, &self.name);
        if self.cfg.attach {
            return Ok(()); // attached to files another table owns: leave them
        }
        self.conns.clear();
        self.close_pins();
        let dir = self.catalog.dir.clone();
        let files: Vec<String> = self.catalog.shards.iter().map(|s| s.file.clone()).collect();
        let mut names: Vec<String> = Vec::new();
        // Nothing may write to these files after this point (see Drop).
        self.block = (0, 0);
        self.reader_pool.clear();
        self.stream_pool.clear();
        self.cut = Some(None); // unmap commits.shm, and never map it again (the file goes below)
        let meta_files = [
            crate::shard::catalog::CATALOG_FILE.to_string(),
            crate::txn::TXLOG_FILE.to_string(),
            crate::outbox::OUTBOX_FILE.to_string(),
            crate::shard::cut::CUT_FILE.to_string(),
        ];
        for f in files.iter().chain(meta_files.iter()) {
            names.push(f.clone());
            names.push(format!("{f}-wal"));
            names.push(format!("{f}-shm"));
        }
        for n in names {
            let p = dir.join(&n);
            if p.exists() {
                std::fs::remove_file(&p).map_err(|e| {
                    Error::sqlite(10, format!("sharded: DROP TABLE could not remove {}: {e}", p.display()))
                })?;
            }
        }
        // Orphan prefix files (created but never registered) and the folder itself, if empty.
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("p-") && (n.ends_with(".db") || n.ends_with(".db-wal") || n.ends_with(".db-shm")) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&dir);
        Ok(())
    }

    fn update(&mut self, args: &[ValueRef<'_>]) -> Result<i64> {
        if !self.in_txn {
            // SQLite always calls xBegin first; be safe if a host does not.
            self.begin()?;
        }
        let on_conflict = self.host.vtab_on_conflict();
        if args.len() == 1 {
            let rowid = args[0].as_i64();
            self.do_delete(rowid)?;
            return Ok(rowid);
        }
        if args[0].is_null() {
            return self.do_insert(args, on_conflict);
        }
        let old = args[0].as_i64();
        self.do_update(old, args, on_conflict)
    }

    fn begin(&mut self) -> Result<()> {
        self.resolve_in_doubt()?;
        self.check_rowid_epoch()?;
        self.in_txn = true;
        self.sp_depth = 0;
        self.touched.clear();
        self.pending_txid = None;
        self.outbox_end_txn();
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.outbox_seal()?; // outbox: the commit's csn into its outbox rows, before any image is read
        let participants: Vec<ShardId> =
            self.conns.iter().filter(|(_, c)| c.txn_levels.is_some()).map(|(id, _)| *id).collect();
        let group = if self.joined { group::get(self.host) } else { None };
        let prepared: Option<(String, String)> = match &group {
            Some(g) if g.writers.len() > 1 => Some((
                g.gtid.clone(),
                group::coordinator(g).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
            )),
            _ => None,
        };
        if participants.len() < 2 && prepared.is_none() {
            return Ok(()); // one shard: its own COMMIT is atomic; no log, no extra fsync
        }
        // Final images of every touched row, read inside the shards' open transactions.
        let mut images: Vec<(u32, i64, Option<Vec<u8>>)> = Vec::new();
        let cols: Vec<String> =
            self.cfg.columns.iter().filter(|c| !c.is_rowid_alias).map(|c| quote_ident(&c.name)).collect();
        let select = format!(
            "SELECT {} FROM {SHARD_TABLE} WHERE rowid = ?1",
            if cols.is_empty() { "NULL".to_string() } else { cols.join(", ") }
        );
        let cols_sql = if cols.is_empty() { "NULL".to_string() } else { cols.join(", ") };
        let range = format!("SELECT rowid, {cols_sql} FROM {SHARD_TABLE} WHERE rowid BETWEEN ?1 AND ?2 ORDER BY rowid");
        let touched = std::mem::take(&mut self.touched);
        let n_shards = self.catalog.shards.len().max(1) as i128;
        for (id, mut rowids) in touched {
            rowids.sort_unstable();
            rowids.dedup();
            let c = self.conn(id)?;
            let (lo, hi) = (rowids[0], rowids[rowids.len() - 1]);
            // Dense rowids (bulk inserts; rowids spread over the shards, hence the factor): one
            // range scan instead of a lookup per row.
            let spread = 4 * rowids.len() as i128 * n_shards;
            if rowids.len() > 64 && (hi as i128 - lo as i128) < spread {
                let mut st = c.take(&range)?;
                st.bind_i64(1, lo)?;
                st.bind_i64(2, hi)?;
                let mut next = 0;
                while st.step()? {
                    let r = st.column_i64(0);
                    while next < rowids.len() && rowids[next] < r {
                        images.push((id.0, rowids[next], None)); // touched, no longer there
                        next += 1;
                    }
                    if next < rowids.len() && rowids[next] == r {
                        let vals: Vec<Value> = (0..cols.len()).map(|i| st.column_value(i + 1)).collect();
                        images.push((id.0, r, Some(encode_row(&vals))));
                        next += 1;
                    }
                }
                for &r in &rowids[next..] {
                    images.push((id.0, r, None));
                }
                c.give(&range, st);
                continue;
            }
            let mut st = c.take(&select)?;
            for r in rowids {
                st.bind_i64(1, r)?;
                let img = if st.step()? {
                    let vals: Vec<Value> = (0..cols.len()).map(|i| st.column_value(i)).collect();
                    Some(encode_row(&vals))
                } else {
                    None
                };
                st.reset();
                images.push((id.0, r, img));
            }
            c.give(&select, st);
        }
        self.outbox_stage_redo(&images)?; // outbox rows go into the redo record too
        // The images carry every earlier commit of these shards, some possibly only NORMAL-synced
        // (single-shard commits, ours or other processes'). Make them durable before the record
        // that contains their effects, or a power loss could re-apply half of such a commit.
        // One fsync per participant, concurrently.
        let mut handles = Vec::new();
        for id in &participants {
            if let Some(h) = self.conn(*id)?.conn.wal_handle() {
                handles.push(h);
            }
        }
        crate::shard::sync_wals_parallel(handles)?;
        let shard_nums: Vec<u32> = participants.iter().map(|s| s.0).collect();
        let txid =
            self.txlog.write_record(&shard_nums, &images, prepared.as_ref().map(|(g, c)| (g.as_str(), c.as_str())))?;
        self.pending_txid = Some(txid);
        for id in participants {
            let c = self.conn(id)?;
            c.conn.exec(MARKER_DDL)?;
            c.run("INSERT INTO _shardvt_txn(txid) VALUES (?1)", |st| st.bind_i64(1, txid))?;
        }
        if let Some((gtid, coord)) = prepared {
            // The last table of the group to reach xSync writes the decision: the commit point
            // of the whole host transaction. Failing here fails COMMIT; SQLite rolls back all.
            if group::synced(self.host) {
                if Path::new(&coord) == self.txlog_path {
                    self.txlog.write_decision(&gtid)?;
                } else {
                    TxLog::open_path(Path::new(&coord))?.write_decision(&gtid)?;
                }
            }
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        let mut first_err = None;
        // A logged (multi-shard) commit becomes visible one shard at a time: readers must not
        // take their snapshots in between (`shard::cut`). The window ends when `window` drops,
        // after every participant committed (or failed and was recovered).
        let window = if self.pending_txid.is_some() { self.cut().map(|c| c.window()) } else { None };
        let ids: Vec<ShardId> = self.conns.keys().copied().collect();
        let mut committed = Vec::new();
        for id in ids {
            let c = self.conns.get_mut(&id).unwrap();
            let wrote = c.txn_levels.is_some();
            if let Err(e) = c.commit() {
                crate::ffi::api::log(e.code(), &format!("sharded: commit of shard {} failed: {}", id.0, e.message));
                let _ = c.rollback();
                first_err.get_or_insert(e);
            } else if wrote {
                committed.push(id);
            }
        }
        let logged = self.pending_txid.is_some(); // its synced redo record already makes it durable
        if first_err.is_none() && !logged && crate::wal::durability() == crate::wal::Durability::Parallel {
            // durable_commit=1: the touched shards' WALs, fsynced in parallel (the host waits)
            let handles = committed.iter().filter_map(|id| self.conns.get(id).and_then(|c| c.conn.wal_handle())).collect();
            if let Err(e) = crate::shard::sync_wals_parallel(handles) {
                crate::ffi::api::log(e.code(), &format!("sharded: COMMIT of {} is done but not yet durable: {}", self.name, e.message));
                first_err = Some(e);
            }
        }
        self.in_txn = false;
        self.sp_depth = 0;
        self.touched.clear();
        self.outbox_end_txn();
        if self.joined {
            group::leave(self.host, self.self_addr);
            self.joined = false;
        }
        if let Some(txid) = self.pending_txid.take() {
            if first_err.is_some() {
                // The decision is durable: re-apply the images to the shard that failed.
                let _ = self.recover(false);
                drop(window);
            } else {
                drop(window);
                self.txlog.mark_done(txid)?;
                if txid % LOG_GC_EVERY == 0 {
                    let _ = self.recover(true);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn rollback(&mut self) -> Result<()> {
        if let Some(txid) = self.pending_txid.take() {
            // Forget the decision before releasing the shard locks, so nobody can apply it.
            self.txlog.delete(&[txid])?;
        }
        let mut first_err = None;
        for c in self.conns.values_mut() {
            if let Err(e) = c.rollback() {
                first_err.get_or_insert(e);
            }
        }
        self.in_txn = false;
        self.sp_depth = 0;
        self.rowid_memo.clear();
        self.touched.clear();
        self.outbox_end_txn();
        if self.joined {
            group::leave(self.host, self.self_addr);
            self.joined = false;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn savepoint(&mut self, n: i32) -> Result<()> {
        
        self.outbox_savepoint(n)?; // before the shards open theirs: staged changes belong outside
        let depth = n as u32 + 1;
        self.sp_depth = depth;
        for c in self.conns.values_mut() {
            c.open_savepoints(depth)?;
        }
        Ok(())
    }

    fn release(&mut self, n: i32) -> Result<()> {
        
        self.outbox_release(n);
        for c in self.conns.values_mut() {
            c.release(n)?;
        }
        self.sp_depth = self.sp_depth.min(n.max(0) as u32);
        Ok(())
    }

    fn rollback_to(&mut self, n: i32) -> Result<()> {
        self.outbox_rollback_to(n);
        for c in self.conns.values_mut() {
            c.rollback_to(n)?;
        }
        self.sp_depth = (n + 1).max(0) as u32;
        self.rowid_memo.clear();
        Ok(())
    }

    fn rename(&mut self, new_name: &str) -> Result<()> {
        if self.cfg.attach {
            return Err(Error::config(
                "sharded: a table made with attach=on cannot be renamed (its catalog names the owning table)",
            ));
        }
        if self.in_txn && self.conns.values().any(|c| c.txn_levels.is_some()) {
            return Err(Error::config("sharded: commit pending writes before ALTER TABLE ... RENAME"));
        }
        if self.default_dir {
            let (new_dir, _) = resolve_dir(self.host, &self.schema, new_name, None)?;
            if new_dir.exists() {
                return Err(Error::config(format!(
                    "sharded: cannot rename: {} already exists",
                    new_dir.display()
                )));
            }
            self.catalog.set_table_name(new_name)?;
            self.conns.clear();
            self.close_pins();
            self.reader_pool.clear();
            self.stream_pool.clear();
            let old_dir = self.catalog.dir.clone();
            let cfg = (*self.cfg).clone();
            // Close the catalog before moving its folder, then reopen it at the new place.
            let placeholder = std::mem::replace(&mut self.catalog, Catalog::open(&old_dir, new_name, &cfg)?);
            drop(placeholder);
            self.outbox_close_store();
            std::fs::rename(&old_dir, &new_dir).map_err(|e| {
                Error::config(format!("sharded: cannot move {} to {}: {e}", old_dir.display(), new_dir.display()))
            })?;
            self.catalog = Catalog::open(&new_dir, new_name, &cfg)?;
        } else {
            self.catalog.set_table_name(new_name)?;
        }
        registry::unregister(self.host, &self.schema, &self.name);
        self.name = new_name.to_string();
        registry::register(self.host, &self.schema, &self.name, self.self_addr);
        Ok(())
    }
}

impl Drop for ShardedTable {
    fn drop(&mut self) {
        registry::unregister_addr(self.self_addr);
        self.close_pins();
        // Hand back the unused part of our rowid block if nobody reserved after us.
        if self.block.0 < self.block.1 {
            let _ = self.catalog.return_rowids(self.block.0, self.block.1);
        }
    }
}
