//! SQL functions of the transactional outbox (see `crate::outbox`; registered in `entry.rs`).
//!
//! | function | returns |
//! |---|---|
//! | `shardvt_outbox_export(table, consumer, max_changes)` | JSON array of change envelopes after the consumer's position |
//! | `shardvt_outbox_ack(table, consumer, cursor)` | the consumer's cursor after moving it to `cursor` |
//! | `shardvt_outbox_stats(table)` | JSON: retained changes, retention, clock, per-consumer cursor and lag |
//! | `shardvt_outbox_drop_consumer(table, consumer)` | 1 if the consumer existed (now forgotten), else 0 |
//!
//! All are DIRECTONLY: they open files, and export/ack/drop write (consumer registration,
//! positions, purge).

use crate::error::{Error, Result};
use crate::ffi::api::ValueRef;
use crate::ffi::func::FnContext;
use crate::value::Value;
use crate::vtab::with_table;

fn text(args: &[ValueRef<'_>], i: usize, fname: &str, what: &str) -> Result<String> {
    match args.get(i) {
        Some(v) if !v.is_null() => Ok(v.text_string()),
        _ => Err(Error::config(format!("{fname}: argument {} ({what}) must not be NULL", i + 1))),
    }
}

pub fn shardvt_outbox_export(ctx: &FnContext, args: &[ValueRef<'_>]) -> Result<Value> {
    const F: &str = "shardvt_outbox_export";
    let table = text(args, 0, F, "table")?;
    let consumer = text(args, 1, F, "consumer")?;
    let max = match args.get(2).map(|v| v.to_value()) {
        Some(Value::Integer(n)) => n,
        _ => return Err(Error::config(format!("{F}: argument 3 (max_changes) must be an integer"))),
    };
    with_table(ctx.db(), &table, |t| t.outbox_export(&consumer, max)).map(|s| Value::text(&s))
}

pub fn shardvt_outbox_ack(ctx: &FnContext, args: &[ValueRef<'_>]) -> Result<Value> {
    const F: &str = "shardvt_outbox_ack";
    let table = text(args, 0, F, "table")?;
    let consumer = text(args, 1, F, "consumer")?;
    let cursor = text(args, 2, F, "cursor")?;
    with_table(ctx.db(), &table, |t| t.outbox_ack(&consumer, &cursor)).map(|s| Value::text(&s))
}

pub fn shardvt_outbox_stats(ctx: &FnContext, args: &[ValueRef<'_>]) -> Result<Value> {
    let table = text(args, 0, "shardvt_outbox_stats", "table")?;
    with_table(ctx.db(), &table, |t| t.outbox_stats()).map(|s| Value::text(&s))
}

pub fn shardvt_outbox_drop_consumer(ctx: &FnContext, args: &[ValueRef<'_>]) -> Result<Value> {
    const F: &str = "shardvt_outbox_drop_consumer";
    let table = text(args, 0, F, "table")?;
    let consumer = text(args, 1, F, "consumer")?;
    with_table(ctx.db(), &table, |t| t.outbox_drop_consumer(&consumer)).map(Value::Integer)
}
