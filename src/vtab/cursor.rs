//! The `sharded` cursor: one SQL statement per visited shard, merged into one ordered stream.
//!
//! xFilter decodes the plan (idxStr, see `planner`), turns the constraint values into
//! (a) key terms, which prune the shard set (`routing::prune`), and (b) a WHERE clause run on
//! every visited shard. A constraint is put into the shard SQL only when the shard evaluates it
//! exactly as SQLite would (see `pushable`); SQLite re-checks every row anyway.
//!
//! Each shard's rows come sorted by the merge key: the consumed ORDER BY, or the rowid, so a scan
//! without ORDER BY returns rows in rowid order like a native table. `LIMIT n OFFSET m` becomes
//! `LIMIT n+m` on every shard when every WHERE term was pushed (SQLite still applies both).
//!
//! Column values are copied from the shard statement straight into SQLite's result (no Rust
//! copy); only the merge key is read into Rust values.
//!
//! Connections: inside a write transaction a shard is read through its own connection (the
//! reads must see the transaction's writes); otherwise through its pinned read connection
//! (`shard::pin`), whose read transaction is reused by later statements while the shard is
//! unchanged. Parallel scans read on worker connections (`shard::scan`).
//!
//! Snapshot age: each open shard statement holds a read snapshot of its shard, which keeps the
//! shard's WAL from being checkpointed past it. Every 1024 rows the cursor checks
//! `wal::snapshot_too_old`: once its snapshot is older than `max_snapshot_ms` (default 60 s,
//! `shardvt_wal_config`) AND a shard it still reads has a WAL of 4000+ frames, the scan fails
//! with "snapshot too old" (like PostgreSQL's old_snapshot_threshold) instead of letting the
//! WAL grow without bound.

use crate::config::quote_ident;
use crate::error::{codes, Error, Result};
use crate::ffi::api::{Statement, ValueRef};
use crate::ffi::vtab::{ColumnContext, VTabCursor};
use crate::merge::{pick_min, KeySpec};
use crate::planner::{op, Plan};
use crate::routing::prune::KeyTerm;
use crate::routing::ShardId;
use crate::shard::pin::Claim;
use crate::shard::scan::{self, Stream};
use crate::shard::SHARD_TABLE;
use crate::value::{Affinity, Value};

use std::rc::Rc;

use super::explain;
use super::table::{ScanKind, ShardedTable};

/// Statements visiting at most this many shards read through pinned connections.
const MAX_PINNED_SHARDS: usize = 16;

/// What xFilter derives from a plan (idxStr) and the table's columns alone: cached with the
/// decoded plan (`ShardedTable::plan_cache`), so a repeated statement only adds its WHERE terms.
pub(crate) struct Shape {
    plan: Plan,
    /// `SELECT rowid, <used columns> FROM data`
    select: String,
    /// ` ORDER BY <merge key>, rowid`
    order: String,
    /// vtab column → result column
    col_map: Vec<Option<usize>>,
    rowid_alias: Option<usize>,
    spec: Vec<KeySpec>,
    key_cols: Vec<usize>,
    rowid_order: bool,
}

impl Shape {
    fn new(plan: Plan, cfg: &crate::config::TableConfig) -> Shape {
        // Select list: rowid first, then the columns SQLite will read.
        let used = |i: usize| if i < 63 { plan.col_used & (1u64 << i) != 0 } else { plan.col_used & (1u64 << 63) != 0 };
        let mut select = vec!["rowid".to_string()];
        let mut col_map = vec![None; cfg.columns.len()];
        for (i, c) in cfg.columns.iter().enumerate() {
            if c.is_rowid_alias {
                continue;
            }
            if used(i) || plan.order.iter().any(|o| o.column == i as i32) {
                col_map[i] = Some(select.len());
                select.push(quote_ident(&c.name));
            }
        }
        // Merge key and ORDER BY.
        let mut spec = Vec::new();
        let mut key_cols = Vec::new();
        let mut order_sql = Vec::new();
        let rowid_order = plan.order.is_empty();
        if rowid_order {
            spec.push(KeySpec { desc: false, collation: "BINARY".into() });
            key_cols.push(0);
            order_sql.push("rowid".to_string());
        } else {
            for o in &plan.order {
                let (rc, expr) = if o.column < 0 || cfg.columns[o.column as usize].is_rowid_alias {
                    (0, "rowid".to_string())
                } else {
                    let i = o.column as usize;
                    (col_map[i].unwrap_or(0), format!("{} COLLATE {}", quote_ident(&cfg.columns[i].name), o.collation))
                };
                key_cols.push(rc);
                spec.push(KeySpec { desc: o.desc, collation: o.collation.clone() });
                order_sql.push(format!("{expr}{}", if o.desc { " DESC" } else { "" }));
            }
            if !plan.order.iter().any(|o| o.column < 0 || cfg.columns[o.column as usize].is_rowid_alias) {
                // Ties by rowid, in the direction of the last term: an index on the last term
                // then delivers the order as it is stored (no sort in the shard).
                let desc = plan.order.last().map(|o| o.desc).unwrap_or(false);
                order_sql.push(if desc { "rowid DESC".to_string() } else { "rowid".to_string() });
            }
        }
        Shape {
            select: format!("SELECT {} FROM {SHARD_TABLE}", select.join(", ")),
            order: format!(" ORDER BY {}", order_sql.join(", ")),
            col_map,
            rowid_alias: cfg.rowid_alias(),
            spec,
            key_cols,
            rowid_order,
            plan,
        }
    }
}

/// Where a shard's rows come from: a statement stepped on this thread, or a worker's stream.
enum Head {
    Stmt { sql: Rc<str>, stmt: Statement },
    Chan(Stream),
}

struct Source {
    shard: ShardId,
    head: Head,
    /// merge key (ORDER BY consumed); empty in rowid order
    key: Vec<Value>,
    /// current rowid (the merge key in rowid order)
    rid: i64,
    /// the claim on the pinned read connection the statement runs on (None: the shard's own
    /// connection, or a worker's stream); declared after `head`, so a dropped source
    /// finalizes its statement before the claim ends
    pin: Option<Claim>,
}

/// Gives a finished shard statement back to the connection it came from (`pin`: the pinned
/// read connection, whose claim then ends; None: the shard's own connection).
fn give_back(t: &mut ShardedTable, shard: ShardId, pin: Option<Claim>, sql: &str, stmt: Statement) {
    match pin {
        Some(claim) => claim.finish(|c| c.give_bound(sql, stmt)),
        None => {
            if let Ok(c) = t.conn(shard) {
                c.give_bound(sql, stmt);
            }
        }
    }
}

impl Source {
    fn step(&mut self) -> Result<bool> {
        match &mut self.head {
            Head::Stmt { stmt, .. } => stmt.step(),
            Head::Chan(s) => s.step(),
        }
    }
    fn value_at(&self, j: usize) -> Value {
        match &self.head {
            Head::Stmt { stmt, .. } => stmt.column_value(j),
            Head::Chan(s) => s.cell(j).to_value(),
        }
    }
    fn rowid_now(&self) -> i64 {
        match &self.head {
            Head::Stmt { stmt, .. } => stmt.column_i64(0),
            Head::Chan(s) => s.int(0),
        }
    }
    fn set_column(&self, ctx: &mut ColumnContext, j: usize) {
        match &self.head {
            Head::Stmt { stmt, .. } => ctx.set_from_statement(stmt, j),
            Head::Chan(s) => ctx.set_cell(s.cell(j)),
        }
    }
}

pub struct ShardedCursor {
    sources: Vec<Source>,
    current: Option<usize>,
    spec: Vec<KeySpec>,
    /// result-column indexes of the merge key
    key_cols: Vec<usize>,
    /// vtab column → result column
    col_map: Vec<Option<usize>>,
    rowid_alias: Option<usize>,
    /// merge by rowid (no consumed ORDER BY): keys are plain integers
    rowid_order: bool,
    /// when xFilter opened the shard snapshots, and rows returned since (snapshot-age checks)
    opened: Option<std::time::Instant>,
    rows: u32,
}

/// Would the shard evaluate `col <op> v` exactly as SQLite does on the host?
/// Numeric columns: always (both sides get numeric affinity). TEXT columns: only for TEXT/BLOB/NULL
/// values. Untyped columns: only BLOB/NULL (other values may be compared after conversion of the
/// stored value on the host, depending on where the value came from).
pub fn pushable(v: &Value, aff: Affinity) -> bool {
    match aff {
        Affinity::Integer | Affinity::Real | Affinity::Numeric => true,
        Affinity::Text => matches!(v, Value::Text(_) | Value::Blob(_) | Value::Null),
        Affinity::Blob => matches!(v, Value::Blob(_) | Value::Null),
    }
}

/// Could an index on the term's column serve it (the parallel-scan decision in xFilter)? A
/// LIKE/GLOB pattern with a literal prefix may become an index range.
fn seekable(o: u8, is_in: bool, arg: Option<&ValueRef<'_>>) -> bool {
    match o {
        op::EQ | op::IS | op::GT | op::GE | op::LT | op::LE | op::ISNULL => true,
        op::LIKE | op::GLOB => arg
            .map(|a| match a.to_value() {
                Value::Text(p) => p.first().is_some_and(|c| !matches!(c, b'%' | b'_' | b'*' | b'?' | b'[')),
                _ => true,
            })
            .unwrap_or(true),
        _ => is_in,
    }
}

fn sql_op(o: u8) -> &'static str {
    match o {
        op::EQ => "=",
        op::GT => ">",
        op::GE => ">=",
        op::LT => "<",
        op::LE => "<=",
        op::NE => "<>",
        op::IS => "IS",
        op::ISNOT => "IS NOT",
        op::LIKE => "LIKE",
        op::GLOB => "GLOB",
        _ => "=",
    }
}

impl ShardedCursor {
    pub fn new() -> Self {
        ShardedCursor {
            sources: vec![],
            current: None,
            spec: vec![],
            key_cols: vec![],
            col_map: vec![],
            rowid_alias: None,
            rowid_order: true,
            opened: None,
            rows: 0,
        }
    }

    /// "snapshot too old" (see the file header), checked every 1024 rows.
    fn check_snapshot_age(&self, t: &ShardedTable) -> Result<()> {
        let Some(opened) = self.opened else { return Ok(()) };
        let age = opened.elapsed().as_millis() as u64;
        for s in &self.sources {
            let path = t.shard_path(s.shard)?;
            let path = path.to_string_lossy();
            if let Some(wal) = crate::wal::snapshot_too_old(&path, age) {
                return Err(Error::sqlite(
                    codes::ERROR,
                    format!(
                        "sharded: snapshot too old: this scan of {} has held its read snapshot of {} for {} ms while the \
                         shard's WAL grew to {} bytes that cannot be checkpointed past it (limit: shardvt_wal_config('max_snapshot_ms'), now {} ms; 0 turns the limit off)",
                        t.name,
                        std::path::Path::new(&*path).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
                        age,
                        wal,
                        crate::wal::max_snapshot_ms()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn release(&mut self, t: &mut ShardedTable) {
        for s in self.sources.drain(..) {
            if let Head::Stmt { sql, stmt } = s.head {
                give_back(t, s.shard, s.pin, &sql, stmt);
            } // a stream's worker stops when its receiver is dropped
        }
        self.current = None;
    }

    /// Starts the scan workers (`shard::scan::start`) and waits for each shard's first batch
    /// (by then its snapshot is taken).
    fn open_parallel(&mut self, t: &mut ShardedTable, shards: &[ShardId], sql: &Rc<str>, binds: &[Value], workers: usize, kind: ScanKind) -> Result<()> {
        let paths = shards.iter().map(|&id| t.shard_path(id)).collect::<Result<Vec<_>>>()?;
        let streams = scan::start(t.scan_pool(kind), paths, sql, binds, workers);
        for (&id, stream) in shards.iter().zip(streams) {
            let mut src = Source { shard: id, head: Head::Chan(stream), key: Vec::new(), rid: 0, pin: None };
            if src.step()? {
                self.sources.push(src);
                let n = self.sources.len() - 1;
                self.refresh_key(n);
            }
        }
        Ok(())
    }

    /// Runs the statement on every shard on this thread, up to its first row.
    fn open_sequential(&mut self, t: &mut ShardedTable, shards: &[ShardId], sql: &Rc<str>, all_binds: &[Value]) -> Result<()> {
        // a statement visiting many shards gains little from reused snapshots and would open
        // a second connection (three file descriptors) per shard: it reads without pins
        let use_pins = shards.len() <= MAX_PINNED_SHARDS;
        for &id in shards {
            // outside a write transaction: the shard's pinned read connection (`shard::pin`)
            let (pin, mut st) = match if use_pins { t.pinned(id)? } else { None } {
                Some(p) => {
                    let (claim, st) = p.enter_with(|c| c.take(sql))?;
                    (Some(claim), st)
                }
                None => (None, t.conn(id)?.take(sql)?),
            };
            let has = st.bind_memo(all_binds).and_then(|_| st.step());
            match has {
                Ok(true) => {
                    let head = Head::Stmt { sql: Rc::clone(sql), stmt: st };
                    self.sources.push(Source { shard: id, head, key: Vec::new(), rid: 0, pin });
                    let n = self.sources.len() - 1;
                    self.refresh_key(n);
                }
                Ok(false) => give_back(t, id, pin, sql, st),
                Err(e) => {
                    let e = match &pin {
                        Some(claim) => claim.with(|c| c.annotate(e)),
                        None => t.conn(id).map(|c| c.annotate(e.clone())).unwrap_or(e),
                    };
                    give_back(t, id, pin, sql, st);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn pick(&mut self) {
        self.current = match self.sources.len() {
            0 => None,
            1 => Some(0),
            _ if self.rowid_order => {
                self.sources.iter().enumerate().min_by_key(|(_, s)| s.rid).map(|(i, _)| i)
            }
            _ => pick_min(self.sources.iter().map(|s| s.key.as_slice()), &self.spec),
        };
    }

    fn refresh_key(&mut self, i: usize) {
        let s = &mut self.sources[i];
        s.rid = s.rowid_now();
        if !self.rowid_order {
            let mut key = std::mem::take(&mut s.key);
            key.clear();
            key.extend(self.key_cols.iter().map(|&c| s.value_at(c)));
            s.key = key;
        }
    }
}

impl Default for ShardedCursor {
    fn default() -> Self {
        Self::new()
    }
}

impl VTabCursor for ShardedCursor {
    type Table = ShardedTable;

    fn filter(&mut self, t: &mut ShardedTable, _idx_num: i32, idx_str: Option<&str>, args: &[ValueRef<'_>]) -> Result<()> {
        self.release(t);
        self.opened = Some(std::time::Instant::now());
        self.rows = 0;
        t.resolve_in_doubt()?;
        let idx = idx_str.unwrap_or("1;u=ffffffffffffffff");
        let shape = match t.plan_cache.get(idx) {
            Some(p) => p.clone(),
            None => {
                let p = Rc::new(Shape::new(Plan::decode(idx)?, &t.cfg));
                if t.plan_cache.len() > 256 {
                    t.plan_cache.clear();
                }
                t.plan_cache.insert(idx.to_string(), p.clone());
                p
            }
        };
        let plan = &shape.plan;
        let cfg = t.cfg.clone();
        let key_col = cfg.key_column as i32;
        let key_coll = t.key_collation().to_string();
        let mut conds: Vec<String> = Vec::new();
        let mut binds: Vec<Value> = Vec::new();
        let mut all_pushed = true;
        let mut key_terms: Vec<KeyTerm> = Vec::new();
        for term in &plan.terms {
            let (col_sql, aff) = if term.column < 0 {
                ("rowid".to_string(), Affinity::Integer)
            } else {
                let c = &cfg.columns[term.column as usize];
                if c.is_rowid_alias {
                    ("rowid".to_string(), Affinity::Integer)
                } else {
                    (quote_ident(&c.name), c.affinity)
                }
            };
            let on_key = term.column == key_col && term.collation == key_coll;
            let coll = if col_sql == "rowid" { String::new() } else { format!(" COLLATE {}", term.collation) };
            match term.op {
                op::ISNULL => {
                    conds.push(format!("{col_sql} IS NULL"));
                    if on_key {
                        key_terms.push(KeyTerm::IsNull);
                    }
                }
                op::ISNOTNULL => conds.push(format!("{col_sql} IS NOT NULL")),
                _ => {
                    let arg = args[term.argv as usize - 1];
                    if term.is_in {
                        let vals = arg.in_values()?;
                        if vals.iter().all(|v| pushable(v, aff)) {
                            let marks = vec!["?"; vals.len()].join(",");
                            conds.push(format!("{col_sql}{coll} IN ({marks})"));
                            binds.extend(vals.iter().cloned());
                        } else {
                            all_pushed = false;
                        }
                        if on_key {
                            key_terms.push(KeyTerm::AnyOf(vals));
                        }
                        continue;
                    }
                    let v = arg.to_value();
                    if term.op == op::LIKE || term.op == op::GLOB {
                        conds.push(format!("{col_sql} {} ?", sql_op(term.op)));
                        binds.push(v.clone());
                    } else if pushable(&v, aff) {
                        conds.push(format!("{col_sql} {} ?{coll}", sql_op(term.op)));
                        binds.push(v.clone());
                    } else {
                        all_pushed = false;
                    }
                    if on_key {
                        match (term.op, &v) {
                            (op::IS, Value::Null) => key_terms.push(KeyTerm::IsNull),
                            (op::EQ | op::IS, _) => key_terms.push(KeyTerm::AnyOf(vec![v])),
                            (op::GT, _) => key_terms.push(KeyTerm::Gt(v)),
                            (op::GE, _) => key_terms.push(KeyTerm::Ge(v)),
                            (op::LT, _) => key_terms.push(KeyTerm::Lt(v)),
                            (op::LE, _) => key_terms.push(KeyTerm::Le(v)),
                            (op::LIKE, Value::Text(p)) => key_terms.push(KeyTerm::Like(p.clone())),
                            (op::GLOB, Value::Text(p)) => key_terms.push(KeyTerm::Glob(p.clone())),
                            _ => {}
                        }
                    }
                }
            }
        }
        let shards = t.prune(&key_terms)?;

        self.col_map.clone_from(&shape.col_map);
        self.rowid_alias = shape.rowid_alias;
        self.spec.clone_from(&shape.spec);
        self.key_cols.clone_from(&shape.key_cols);
        self.rowid_order = shape.rowid_order;
        let mut sql = String::with_capacity(shape.select.len() + shape.order.len() + 64);
        sql.push_str(&shape.select);
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        sql.push_str(&shape.order);
        let mut limit: Option<i64> = None;
        if let (Some(l), true) = (plan.limit_argv, all_pushed) {
            let lv = args[l as usize - 1].as_i64();
            let ov = plan.offset_argv.map(|f| args[f as usize - 1].as_i64().max(0)).unwrap_or(0);
            if lv >= 0 {
                limit = Some(lv.saturating_add(ov));
                sql.push_str(" LIMIT ?");
            }
        }
        // Parallel when every visited shard must be read through and either its own filter
        // drops rows (a pushed condition, none of which an index can serve: the workers then do
        // the scanning and few rows cross threads), or there is no condition at all (every row
        // crosses: the workers read and pack the rows while this thread hands them to SQLite).
        // An indexed condition or a pushed LIMIT is cheap here.
        let kind = if limit.is_some() || shards.len() < 2 {
            ScanKind::Other
        } else if conds.is_empty() {
            ScanKind::Full
        } else {
            let leads = t.index_leading_columns();
            let seeks = plan.terms.iter().any(|term| {
                let indexed = term.column < 0 || leads.get(term.column as usize).copied().unwrap_or(true);
                indexed && seekable(term.op, term.is_in, args.get((term.argv as usize).wrapping_sub(1)))
            });
            if seeks {
                ScanKind::Other
            } else {
                ScanKind::Filtered
            }
        };
        let workers = t.parallel_scan(&shards, kind).then(|| t.scan_workers(shards.len(), kind));
        explain::record(&t.name, &shards, t.shard_count(), &sql, !plan.order.is_empty(), limit, workers);

        let mut all_binds = binds.clone();
        all_binds.extend(limit.map(Value::Integer));
        let sql: Rc<str> = sql.into();
        // A statement reading several shards outside a write transaction takes its snapshots
        // as a consistent cut (`shard::cut`): no multi-shard commit half in and half out.
        let cut = t.cut_for_read(shards.len());
        let mut retries = 0u32;
        loop {
            let gen = cut.as_ref().and_then(|c| {
                let g = c.quiet();
                if g.is_none() {
                    crate::ffi::api::log(
                        28, // SQLITE_WARNING
                        &format!("sharded: {}: a multi-shard commit has been in progress for over a second; this statement reads without a consistent cut", t.name),
                    );
                }
                g
            });
            if let Some(w) = workers {
                self.open_parallel(t, &shards, &sql, &binds, w, kind)?;
            } else {
                self.open_sequential(t, &shards, &sql, &all_binds)?;
            }
            match (&cut, gen) {
                (Some(c), Some(g)) if !c.unchanged(g) && retries < 10_000 => {
                    // a commit window overlapped the snapshots: take them again
                    self.release(t);
                    retries += 1;
                }
                _ => break,
            }
        }
        self.pick();
        Ok(())
    }

    fn next(&mut self, t: &mut ShardedTable) -> Result<()> {
        let Some(i) = self.current else { return Ok(()) };
        self.rows = self.rows.wrapping_add(1);
        if self.rows.is_multiple_of(1024) {
            self.check_snapshot_age(t)?;
        }
        let more = self.sources[i].step();
        match more {
            Ok(true) => self.refresh_key(i),
            Ok(false) => {
                let s = self.sources.remove(i);
                if let Head::Stmt { sql, stmt } = s.head {
                    give_back(t, s.shard, s.pin, &sql, stmt);
                }
            }
            Err(e) => {
                let shard = self.sources[i].shard;
                return Err(t.conn(shard).map(|c| c.annotate(e.clone())).unwrap_or(e));
            }
        }
        self.pick();
        Ok(())
    }

    fn eof(&self) -> bool {
        self.current.is_none()
    }

    fn column(&mut self, _t: &mut ShardedTable, ctx: &mut ColumnContext, i: usize) -> Result<()> {
        let Some(cur) = self.current else {
            ctx.set_null();
            return Ok(());
        };
        let s = &self.sources[cur];
        if Some(i) == self.rowid_alias {
            ctx.set_i64(s.rid);
        } else if let Some(Some(j)) = self.col_map.get(i) {
            s.set_column(ctx, *j);
        } else {
            ctx.set_null();
        }
        Ok(())
    }

    fn rowid(&mut self, t: &mut ShardedTable) -> Result<i64> {
        let Some(cur) = self.current else { return Ok(0) };
        let s = &self.sources[cur];
        t.remember(s.rid, s.shard);
        Ok(s.rid)
    }

    fn close(mut self, t: &mut ShardedTable) {
        self.release(t);
    }
}
