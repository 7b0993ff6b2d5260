//! `sharded_agg` (module) and `shardvt_aggregate(sql)` (scalar): exact cross-shard aggregation.
//!
//! ```sql
//! CREATE VIRTUAL TABLE temp.stats USING sharded_agg(
//!   'SELECT kind, count(*) AS n, avg(ts) AS avg_ts FROM events WHERE ts > 5 GROUP BY kind');
//! SELECT * FROM stats WHERE n > 10;                  -- recomputed on every scan
//! SELECT shardvt_aggregate('SELECT count(*) AS n FROM events');   -- '[{"n":42}]'
//! ```
//!
//! The query language, the rewrite and what is refused are in `crate::agg` (pure). This file
//! runs a plan: (1) the host prepares the query, so names, functions and syntax are checked by
//! SQLite itself with its own messages (nothing runs); (2) the sharded table is found with
//! `with_table`, pending multi-shard commits are resolved as before any scan; (3) every partial
//! query runs on every shard (on worker threads when the host is thread-safe), each read in
//! full and inserted into a private in-memory scratch database (`Connection::open(":memory:")`,
//! dropped afterwards); (4) the scratch database runs the final query. Every partial query of
//! one statement reads the same snapshot of each shard: outside a write transaction through
//! read-only connections held in a read transaction, the snapshots taken as a consistent cut
//! across the shards (`shard::cut`, `scan::snapshot_set`); inside one through the table's own
//! shard connections, so the transaction sees its own writes.
//!
//! `sharded_agg`: columns are the query's result-column names (the alias, else the column
//! name, else the expression text; duplicates get `:1`, `:2` like view columns); it is
//! read-only, takes no constraints (SQLite filters its rows), and its rowid is the row number.
//! Parse-level refusals happen at CREATE; when the sharded table exists at CREATE the whole
//! rewrite is checked too, else at the first scan.
//!
//! `shardvt_aggregate(sql)` returns `[{"col": value, ...}, ...]`: integers and reals as JSON
//! numbers (reals round-trip; ±Inf as ±9e999), text as strings, NULL as null, blobs as
//! upper-case hex strings. It is DIRECTONLY (it runs queries).

use std::collections::HashSet;

use crate::agg::{self, AggPlan, AggQuery, ColumnInfo};
use crate::error::{Error, Result};
use crate::ffi::api::{Connection, HostDb, ValueRef, OPEN_CREATE, OPEN_READWRITE};
use crate::ffi::func::FnContext;
use crate::ffi::vtab::{ColumnContext, IndexInfo, VTab, VTabCursor};
use crate::value::Value;

use super::with_table;

/// Combined rows of one aggregate query.
pub struct AggResult {
    pub names: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// Aggregate and window functions known to the host (lower case), plus a few well-known ones in
/// case `pragma_function_list` is unavailable.
fn host_aggregates(db: HostDb) -> HashSet<String> {
    let mut set: HashSet<String> = [
        "json_group_array",
        "json_group_object",
        "jsonb_group_array",
        "jsonb_group_object",
        "string_agg",
        "row_number",
        "rank",
        "dense_rank",
        "percent_rank",
        "cume_dist",
        "ntile",
        "lag",
        "lead",
        "first_value",
        "last_value",
        "nth_value",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Ok(mut st) = db.prepare("SELECT DISTINCT name FROM pragma_function_list WHERE type IN ('a', 'w')") {
        while let Ok(true) = st.step() {
            set.insert(st.column_value(0).to_text().iter().map(|b| b.to_ascii_lowercase() as char).collect());
        }
    }
    set
}

fn columns_of(t: &super::table::ShardedTable) -> Vec<ColumnInfo> {
    t.cfg
        .columns
        .iter()
        .map(|c| ColumnInfo { name: c.name.clone(), decltype: c.decltype.clone(), collation: c.collation.clone() })
        .collect()
}

/// Parses and plans `sql` against its sharded table (nothing is read).
pub fn plan_query(db: HostDb, sql: &str) -> Result<(AggQuery, AggPlan)> {
    let q = agg::parse(sql)?;
    db.prepare(sql).map_err(|e| e.context("sharded_agg"))?;
    let hosts = host_aggregates(db);
    let plan = with_table(db, &q.table, |t| agg::plan(&q, &columns_of(t), &hosts))?;
    Ok((q, plan))
}

/// Runs an aggregate query across the shards of its table and returns the combined rows.
pub fn run(db: HostDb, sql: &str) -> Result<AggResult> {
    let q = agg::parse(sql)?;
    db.prepare(sql).map_err(|e| e.context("sharded_agg"))?;
    let hosts = host_aggregates(db);
    let (plan, scratch) = with_table(db, &q.table, |t| {
        let plan = agg::plan(&q, &columns_of(t), &hosts)?;
        t.resolve_in_doubt()?;
        let scratch = Connection::open(":memory:", OPEN_READWRITE | OPEN_CREATE)?;
        for d in &plan.scratch_ddl {
            scratch.exec(d)?;
        }
        scratch.exec("BEGIN")?;
        let ids = t.all_shards()?;
        let threads = t.parallel_agg_threads(&ids);
        if !t.in_write_txn() {
            // Outside a write transaction every partial query reads the same snapshot of each
            // shard, and the snapshots form a consistent cut (`shard::cut`): one read-only
            // connection per shard, in a read transaction, for the whole query.
            let paths = ids.iter().map(|&id| t.shard_path(id)).collect::<Result<Vec<_>>>()?;
            let cut = t.cut_for_read(ids.len());
            let mut conns = crate::shard::scan::snapshot_set(&t.reader_pool, &paths, cut.as_deref())
                .map_err(|e| e.context("sharded_agg"))?;
            let mut failed = None;
            for part in &plan.partials {
                let r = if threads > 1 {
                    // each shard's partial on a worker thread, combined here
                    let (per_shard, back) = crate::shard::scan::collect_in(conns, &part.shard_sql, threads);
                    conns = back;
                    insert_rows(&scratch, part, per_shard)
                } else {
                    insert_streamed(&scratch, part, &conns)
                };
                if let Err(e) = r {
                    failed = Some(e);
                    break;
                }
            }
            crate::shard::scan::end_snapshots(&t.reader_pool, &paths, conns);
            if let Some(e) = failed {
                return Err(e);
            }
            return Ok((plan, scratch));
        }
        // Inside a write transaction: through the shards' own connections (its writes are
        // visible only there), shard by shard. A shard the transaction has not written gets a
        // read transaction for the duration, so that every partial query reads one snapshot of
        // it (a written shard's connection is already inside its write transaction).
        let mut opened: Vec<crate::routing::ShardId> = Vec::new();
        let mut r = Ok(());
        for &id in &ids {
            let sc = t.conn(id)?;
            if !sc.conn.in_transaction() {
                r = sc.conn.exec("BEGIN").and_then(|_| sc.conn.exec("SELECT count(*) FROM sqlite_schema"));
                opened.push(id);
                if r.is_err() {
                    break;
                }
            }
        }
        if r.is_ok() {
            r = (|| {
                for part in &plan.partials {
                    let mut ins = scratch.prepare(&part.insert_sql())?;
                    for &id in &ids {
                        stream_partial(&t.conn(id)?.conn, part, &mut ins)?;
                    }
                }
                Ok(())
            })();
        }
        for id in opened {
            if let Ok(sc) = t.conn(id) {
                if sc.conn.in_transaction() {
                    let _ = sc.conn.exec("COMMIT");
                }
            }
        }
        r?;
        Ok((plan, scratch))
    })?;
    let mut rows = Vec::new();
    {
        let mut st = scratch.prepare(&plan.final_sql)?;
        let n = st.column_count();
        while st.step()? {
            rows.push((0..n).map(|i| st.column_value(i)).collect());
        }
    }
    Ok(AggResult { names: plan.names, rows })
}

/// Inserts every shard's rows of one partial query (collected by workers) into the scratch table.
fn insert_rows(scratch: &Connection, part: &crate::agg::Partial, per_shard: Vec<Result<Vec<Vec<Value>>>>) -> Result<()> {
    let mut ins = scratch.prepare(&part.insert_sql())?;
    for rows in per_shard {
        for row in rows.map_err(|e| e.context("sharded_agg"))? {
            for (i, v) in row.iter().enumerate().take(part.ncols) {
                ins.bind(i + 1, v)?;
            }
            ins.step()?;
            ins.reset();
        }
    }
    Ok(())
}

/// Runs one partial query on each snapshot connection in turn, streaming its rows into the
/// scratch table.
fn insert_streamed(scratch: &Connection, part: &crate::agg::Partial, conns: &[Connection]) -> Result<()> {
    let mut ins = scratch.prepare(&part.insert_sql())?;
    for c in conns {
        stream_partial(c, part, &mut ins)?;
    }
    Ok(())
}

/// Runs one partial query on one shard connection, inserting each row with `ins`.
fn stream_partial(c: &Connection, part: &crate::agg::Partial, ins: &mut crate::ffi::api::Statement) -> Result<()> {
    let mut st = c.prepare(&part.shard_sql).map_err(|e| e.context("sharded_agg"))?;
    while st.step().map_err(|e| e.context("sharded_agg"))? {
        for i in 0..part.ncols {
            ins.bind_ref(i + 1, st.column_ref(i))?;
        }
        ins.step()?;
        ins.reset();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// sharded_agg

pub struct AggTable {
    db: HostDb,
    sql: String,
    ncols: usize,
}

pub struct AggCursor {
    rows: Vec<Vec<Value>>,
    pos: usize,
}

/// The one argument of `USING sharded_agg('...')`, unquoted.
fn query_argument(argv: &[String]) -> Result<String> {
    let usage = "sharded_agg: give the query as one quoted string, e.g. \
                 CREATE VIRTUAL TABLE temp.stats USING sharded_agg('SELECT kind, count(*) FROM events GROUP BY kind')";
    if argv.len() != 4 {
        return Err(Error::config(usage));
    }
    let a = argv[3].trim();
    if a.len() >= 2 && a.starts_with('\'') && a.ends_with('\'') {
        Ok(a[1..a.len() - 1].replace("''", "'"))
    } else {
        Err(Error::config(usage))
    }
}

impl VTab for AggTable {
    fn direct_only() -> bool {
        true // it runs queries on the shards
    }

    type Cursor = AggCursor;

    fn connect(db: HostDb, argv: &[String], create: bool) -> Result<(Self, String)> {
        let sql = query_argument(argv)?;
        let q = agg::parse(&sql)?;
        let names = if create {
            // The table usually exists already: check the whole rewrite now.
            match plan_query(db, &sql) {
                Ok((_, p)) => p.names,
                Err(e) if e.message.contains("no such table") => agg::parse::unique_names(&q),
                Err(e) => return Err(e),
            }
        } else {
            agg::parse::unique_names(&q)
        };
        let cols: Vec<String> = names.iter().map(|n| crate::config::quote_ident(n)).collect();
        let schema = format!("CREATE TABLE x({})", cols.join(", "));
        Ok((AggTable { db, sql, ncols: names.len() }, schema))
    }

    fn best_index(&mut self, info: &mut IndexInfo<'_>) -> Result<()> {
        // Every scan recomputes everything; SQLite applies WHERE to the rows.
        info.set_estimated_cost(1e6);
        info.set_estimated_rows(100);
        Ok(())
    }

    fn open(&mut self) -> Result<AggCursor> {
        Ok(AggCursor { rows: vec![], pos: 0 })
    }
}

impl VTabCursor for AggCursor {
    type Table = AggTable;

    fn filter(&mut self, t: &mut AggTable, _n: i32, _s: Option<&str>, _args: &[ValueRef<'_>]) -> Result<()> {
        let r = run(t.db, &t.sql)?;
        if r.names.len() != t.ncols {
            return Err(Error::internal("sharded_agg: result columns changed since CREATE"));
        }
        self.rows = r.rows;
        self.pos = 0;
        Ok(())
    }

    fn next(&mut self, _t: &mut AggTable) -> Result<()> {
        self.pos += 1;
        Ok(())
    }

    fn eof(&self) -> bool {
        self.pos >= self.rows.len()
    }

    fn column(&mut self, _t: &mut AggTable, ctx: &mut ColumnContext, i: usize) -> Result<()> {
        match self.rows.get(self.pos).and_then(|r| r.get(i)) {
            Some(v) => ctx.set_value(v),
            None => ctx.set_null(),
        }
        Ok(())
    }

    fn rowid(&mut self, _t: &mut AggTable) -> Result<i64> {
        Ok(self.pos as i64 + 1)
    }
}

// ---------------------------------------------------------------------------------------------
// shardvt_aggregate

fn json_string(out: &mut String, bytes: &[u8]) {
    crate::json::push_string(out, &String::from_utf8_lossy(bytes));
}

fn json_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Integer(i) => out.push_str(&i.to_string()),
        Value::Real(f) if f.is_nan() => out.push_str("null"),
        Value::Real(f) if f.is_infinite() => out.push_str(if *f > 0.0 { "9e999" } else { "-9e999" }),
        Value::Real(f) => out.push_str(&format!("{f:?}")),
        Value::Text(t) => json_string(out, t),
        Value::Blob(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
            json_string(out, hex.as_bytes());
        }
    }
}

/// The rows as a JSON array of objects.
pub fn to_json(r: &AggResult) -> String {
    let mut out = String::from("[");
    for (i, row) in r.rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        for (j, v) in row.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            json_string(&mut out, r.names[j].as_bytes());
            out.push(':');
            json_value(&mut out, v);
        }
        out.push('}');
    }
    out.push(']');
    out
}

pub fn shardvt_aggregate(ctx: &FnContext, args: &[ValueRef<'_>]) -> Result<Value> {
    let sql = match args.first() {
        Some(v) if !v.is_null() => v.text_string(),
        _ => return Err(Error::config("shardvt_aggregate: argument 1 (sql) must not be NULL")),
    };
    Ok(Value::text(&to_json(&run(ctx.db(), &sql)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes() {
        let r = AggResult {
            names: vec!["k\"".into(), "n".into(), "r".into(), "b".into(), "z".into()],
            rows: vec![
                vec![Value::text("a\n"), Value::Integer(-3), Value::Real(0.1), Value::Blob(vec![0, 0xab]), Value::Null],
                vec![Value::text("é"), Value::Integer(i64::MIN), Value::Real(1e20), Value::Blob(vec![]), Value::Real(f64::INFINITY)],
            ],
        };
        assert_eq!(
            to_json(&r),
            r#"[{"k\"":"a\n","n":-3,"r":0.1,"b":"00AB","z":null},{"k\"":"é","n":-9223372036854775808,"r":1e20,"b":"","z":9e999}]"#
        );
        assert_eq!(to_json(&AggResult { names: vec![], rows: vec![] }), "[]");
    }

    #[test]
    fn argument_is_one_quoted_string() {
        let argv = |a: &str| vec!["sharded_agg".to_string(), "temp".into(), "s".into(), a.to_string()];
        assert_eq!(query_argument(&argv("'SELECT ''x'''")).unwrap(), "SELECT 'x'");
        assert!(query_argument(&argv("SELECT 1")).is_err());
        assert!(query_argument(&argv("'a'")[..3]).is_err());
    }
}
