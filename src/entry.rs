//! The one place every SQL name of libshardvt is registered (called by `sqlite3_shardvt_init`).
//!
//! | name | kind | flags |
//! |---|---|---|
//! | `sharded` | virtual-table module | writable, savepoints, constraint support |
//! | `shardvt_shards` | table-valued function (eponymous) | read-only |
//! | `sharded_agg` | virtual-table module | read-only; exact cross-shard aggregate query as rows |
//! | `shardvt_version()` | scalar | deterministic, innocuous |
//! | `shardvt_debug()` | scalar | innocuous |
//! | `shardvt_route(table, key)` | scalar | direct-only (opens shard files) |
//! | `shardvt_explain(sql)` | scalar | direct-only (runs the query) |
//! | `shardvt_create_index(table, name, definition [, unique])` | scalar | direct-only (writes files) |
//! | `shardvt_drop_index(table, name)` | scalar | direct-only (writes files) |
//! | `shardvt_outbox_export(table, consumer, max_changes)` | scalar | direct-only (writes outbox.db) |
//! | `shardvt_outbox_ack(table, consumer, cursor)` | scalar | direct-only (writes outbox.db, purges) |
//! | `shardvt_outbox_stats(table)` | scalar | direct-only (opens files) |
//! | `shardvt_outbox_drop_consumer(table, consumer)` | scalar | direct-only (writes outbox.db, purges) |
//! | `shardvt_aggregate(sql)` | scalar | direct-only (runs the query) |
//! | `shardvt_io_stats([path filter])` | scalar | direct-only (process-wide I/O counters) |
//! | `shardvt_fault(spec)` | scalar | direct-only (injects I/O faults process-wide) |
//! | `shardvt_checkpoint_mode([mode])` | scalar | direct-only (changes who checkpoints, process-wide) |
//! | `shardvt_manage_wal([schema])` | scalar | direct-only (hooks the host connection's WAL) |
//! | `shardvt_wal_config([setting[, value]])` | scalar | direct-only (process-wide settings) |
//! | `shardvt_wal_stats([path filter])` | scalar | direct-only (process-wide WAL counters) |
//! | VFS `shardvt` | pass-through VFS used by every connection the extension opens | |
//!
//! README's reference table lists the same names; `tests/python/test_surface.py` compares them
//! with `pragma_function_list` / `pragma_module_list`.

use crate::error::Result;
use crate::ffi::api::HostDb;
use crate::ffi::func::{register_scalar, DETERMINISTIC, DIRECTONLY, INNOCUOUS};
use crate::ffi::vtab::{register_module, ModuleKind};
use crate::functions as f;
use crate::vtab::agg_tvf::{self, AggTable};
use crate::vtab::shards_tvf::ShardsTvf;
use crate::vtab::table::ShardedTable;

pub fn register(db: HostDb) -> Result<()> {
    crate::ffi::vfs::register()?;
    register_module::<ShardedTable>(db, "sharded", ModuleKind::Regular, true)?;
    register_module::<ShardsTvf>(db, "shardvt_shards", ModuleKind::EponymousOnly, false)?;
    register_module::<AggTable>(db, "sharded_agg", ModuleKind::Regular, false)?;
    register_scalar(db, "shardvt_version", 0, DETERMINISTIC | INNOCUOUS, f::shardvt_version)?;
    register_scalar(db, "shardvt_debug", 0, INNOCUOUS, f::shardvt_debug)?;
    register_scalar(db, "shardvt_route", 2, DIRECTONLY, f::shardvt_route)?;
    register_scalar(db, "shardvt_explain", 1, DIRECTONLY, f::shardvt_explain)?;
    register_scalar(db, "shardvt_create_index", 3, DIRECTONLY, f::shardvt_create_index)?;
    register_scalar(db, "shardvt_create_index", 4, DIRECTONLY, f::shardvt_create_index)?;
    register_scalar(db, "shardvt_drop_index", 2, DIRECTONLY, f::shardvt_drop_index)?;
    register_scalar(db, "shardvt_outbox_export", 3, DIRECTONLY, f::outbox::shardvt_outbox_export)?;
    register_scalar(db, "shardvt_outbox_ack", 3, DIRECTONLY, f::outbox::shardvt_outbox_ack)?;
    register_scalar(db, "shardvt_outbox_stats", 1, DIRECTONLY, f::outbox::shardvt_outbox_stats)?;
    register_scalar(db, "shardvt_outbox_drop_consumer", 2, DIRECTONLY, f::outbox::shardvt_outbox_drop_consumer)?;
    register_scalar(db, "shardvt_aggregate", 1, DIRECTONLY, agg_tvf::shardvt_aggregate)?;
    register_scalar(db, "shardvt_io_stats", 0, DIRECTONLY, f::shardvt_io_stats)?;
    register_scalar(db, "shardvt_io_stats", 1, DIRECTONLY, f::shardvt_io_stats)?;
    register_scalar(db, "shardvt_fault", 1, DIRECTONLY, f::shardvt_fault)?;
    register_scalar(db, "shardvt_checkpoint_mode", 0, DIRECTONLY, f::shardvt_checkpoint_mode)?;
    register_scalar(db, "shardvt_checkpoint_mode", 1, DIRECTONLY, f::shardvt_checkpoint_mode)?;
    register_scalar(db, "shardvt_manage_wal", 0, DIRECTONLY, f::shardvt_manage_wal)?;
    register_scalar(db, "shardvt_manage_wal", 1, DIRECTONLY, f::shardvt_manage_wal)?;
    for n in 0..=2 {
        register_scalar(db, "shardvt_wal_config", n, DIRECTONLY, f::shardvt_wal_config)?;
    }
    register_scalar(db, "shardvt_wal_stats", 0, DIRECTONLY, f::shardvt_wal_stats)?;
    register_scalar(db, "shardvt_wal_stats", 1, DIRECTONLY, f::shardvt_wal_stats)?;
    Ok(())
}
