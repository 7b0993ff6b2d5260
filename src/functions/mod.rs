//! Scalar SQL functions over sharded tables (registered in `entry.rs`).
//!
//! | function | returns |
//! |---|---|
//! | `shardvt_version()` | library version text |
//! | `shardvt_debug()` | JSON: version, host SQLite, thread safety, floor, formats, features |
//! | `shardvt_route(table, key)` | shard id the key routes to (NULL: prefix shard not created yet) |
//! | `shardvt_explain(sql)` | one line per shard scan the read-only query performs |
//! | `shardvt_create_index(table, name, definition [, unique])` | 'ok'; index on every shard |
//! | `shardvt_drop_index(table, name)` | 'ok' |
//! | `shardvt_io_stats([path filter])` | JSON I/O statistics of the `shardvt` VFS |
//! | `shardvt_fault(spec)` | 'ok'; sets the VFS fault plan (tests, benchmarks) |
//! | `shardvt_checkpoint_mode([mode])` | the process's checkpoint mode after setting it (`crate::wal`) |
//! | `shardvt_manage_wal([schema])` | 1 after putting the host connection's own WAL database under the checkpoint manager, 0 if it already was |
//! | `shardvt_wal_config([setting[, value]])` | process-wide manager settings: JSON of all, one value, or set one |
//! | `shardvt_wal_stats([path filter])` | JSON WAL and checkpoint statistics per managed shard file |

pub mod outbox;

use crate::error::{Error, Result};
use crate::ffi::api::{host_threadsafe, host_version_string, ValueRef, MIN_SQLITE_VERSION};
use crate::ffi::func::FnContext;
use crate::shard::catalog::FORMAT_VERSION;
use crate::value::Value;
use crate::vtab::{explain, with_table};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

fn text_arg(args: &[ValueRef<'_>], i: usize, fname: &str, what: &str) -> Result<String> {
    match args.get(i) {
        Some(v) if !v.is_null() => Ok(v.text_string()),
        _ => Err(Error::config(format!("{fname}: argument {} ({what}) must not be NULL", i + 1))),
    }
}

pub fn shardvt_version(_: &FnContext, _: &[ValueRef<'_>]) -> Result<Value> {
    Ok(Value::text(&format!("libshardvt {VERSION}")))
}

pub fn shardvt_debug(_: &FnContext, _: &[ValueRef<'_>]) -> Result<Value> {
    Ok(Value::text(&format!(
        "{{\"version\":\"{VERSION}\",\"host_sqlite\":\"{}\",\"host_threadsafe\":{},\"min_sqlite\":\"3.{}.0\",\
         \"catalog_format\":{FORMAT_VERSION},\"hash\":\"xxh64-seed0-v1\",\"features\":[\"hash\",\"prefix\",\
         \"vtab_in\",\"limit_pushdown\",\"orderby_merge\",\"savepoints\",\"shard_key_moves\"],\"build\":\"{}\"}}",
        host_version_string(),
        host_threadsafe(),
        (MIN_SQLITE_VERSION / 1000) % 1000,
        if cfg!(debug_assertions) { "debug" } else { "release" }
    )))
}

pub fn shardvt_route(ctx: &FnContext, args: &[ValueRef<'_>]) -> Result<Value> {
    let table = text_arg(args, 0, "shardvt_route", "table")?;
    let key = args[1].to_value();
    with_table(ctx.db(), &table, |t| Ok(t.route_value(&key)?.map(|s| Value::Integer(s.0 as i64)).unwrap_or(Value::Null)))
}

pub fn shardvt_explain(ctx: &FnContext, args: &[ValueRef<'_>]) -> Result<Value> {
    let sql = text_arg(args, 0, "shardvt_explain", "sql")?;
    let mut st = ctx.db().prepare(&sql)?;
    if !st.readonly() {
        return Err(Error::config("shardvt_explain: only read-only statements can be explained (it runs the query)"));
    }
    explain::start();
    let mut r = Ok(());
    loop {
        match st.step() {
            Ok(true) => continue,
            Ok(false) => break,
            Err(e) => {
                r = Err(e);
                break;
            }
        }
    }
    let lines = explain::finish();
    r?;
    if lines.is_empty() {
        return Ok(Value::text("no sharded table scanned"));
    }
    Ok(Value::text(&lines.join("\n")))
}

pub fn shardvt_io_stats(_: &FnContext, args: &[ValueRef<'_>]) -> Result<Value> {
    let filter = args.first().filter(|v| !v.is_null()).map(|v| v.text_string());
    Ok(Value::text(&crate::vfs::stats_json(filter.as_deref())))
}

pub fn shardvt_fault(_: &FnContext, args: &[ValueRef<'_>]) -> Result<Value> {
    let spec = text_arg(args, 0, "shardvt_fault", "spec")?;
    let plan = crate::vfs::FaultPlan::parse(&spec)?;
    crate::vfs::set_fault_plan(plan);
    Ok(Value::text("ok"))
}

pub fn shardvt_create_index(ctx: &FnContext, args: &[ValueRef<'_>]) -> Result<Value> {
    let table = text_arg(args, 0, "shardvt_create_index", "table")?;
    let name = text_arg(args, 1, "shardvt_create_index", "index name")?;
    let def = text_arg(args, 2, "shardvt_create_index", "definition")?;
    let unique = args.get(3).map(|v| v.as_i64() != 0).unwrap_or(false);
    with_table(ctx.db(), &table, |t| t.create_index(&name, &def, unique))?;
    Ok(Value::text("ok"))
}

pub fn shardvt_drop_index(ctx: &FnContext, args: &[ValueRef<'_>]) -> Result<Value> {
    let table = text_arg(args, 0, "shardvt_drop_index", "table")?;
    let name = text_arg(args, 1, "shardvt_drop_index", "index name")?;
    with_table(ctx.db(), &table, |t| t.drop_index(&name))?;
    Ok(Value::text("ok"))
}

pub fn shardvt_checkpoint_mode(_: &FnContext, args: &[ValueRef<'_>]) -> Result<Value> {
    if let Some(v) = args.first() {
        if v.is_null() {
            return Err(Error::config("shardvt_checkpoint_mode: argument 1 (mode) must not be NULL"));
        }
        crate::wal::set_mode(&v.text_string())?;
    }
    Ok(Value::text(crate::wal::mode().name()))
}

pub fn shardvt_manage_wal(ctx: &FnContext, args: &[ValueRef<'_>]) -> Result<Value> {
    const F: &str = "shardvt_manage_wal";
    let schema = match args.first() {
        None => "main".to_string(),
        Some(v) if v.is_null() => return Err(Error::config(format!("{F}: argument 1 (schema) must not be NULL"))),
        Some(v) => v.text_string(),
    };
    let db = ctx.db();
    let path = match db.filename(&schema) {
        None => return Err(Error::config(format!("{F}: no such database: {schema}"))),
        Some(p) if p.is_empty() => {
            return Err(Error::config(format!(
                "{F}: database {schema} is in memory or temporary; only a database file in WAL mode can be managed"
            )))
        }
        Some(p) => p,
    };
    let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
    let mut st = db.prepare(&format!("PRAGMA {quoted}.journal_mode"))?;
    let jm = if st.step()? { st.column_value(0).to_text() } else { Vec::new() };
    drop(st);
    if !jm.eq_ignore_ascii_case(b"wal") {
        return Err(Error::config(format!(
            "{F}: database {schema} is not in WAL mode (journal_mode={}); run PRAGMA {schema}.journal_mode=WAL first",
            String::from_utf8_lossy(&jm)
        )));
    }
    let canon = std::fs::canonicalize(&path).map(|p| p.to_string_lossy().into_owned()).unwrap_or(path);
    crate::wal::manage_host(db, &schema, &canon).map(|fresh| Value::Integer(fresh as i64))
}

pub fn shardvt_wal_config(_: &FnContext, args: &[ValueRef<'_>]) -> Result<Value> {
    const F: &str = "shardvt_wal_config";
    let name = match args.first() {
        None => None,
        Some(v) if v.is_null() => return Err(Error::config(format!("{F}: argument 1 (setting) must not be NULL"))),
        Some(v) => Some(v.text_string()),
    };
    let value = match args.get(1).map(|v| v.to_value()) {
        None => None,
        Some(Value::Integer(i)) => Some(i),
        Some(_) => return Err(Error::config(format!("{F}: argument 2 (value) must be an integer"))),
    };
    let out = crate::wal::config(name.as_deref(), value)?;
    Ok(match name {
        None => Value::text(&out),
        Some(_) => Value::Integer(out.parse().unwrap_or(0)),
    })
}

pub fn shardvt_wal_stats(_: &FnContext, args: &[ValueRef<'_>]) -> Result<Value> {
    let filter = args.first().filter(|v| !v.is_null()).map(|v| v.text_string());
    Ok(Value::text(&crate::wal::stats_json(filter.as_deref())))
}
