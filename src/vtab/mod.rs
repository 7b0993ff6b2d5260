//! Virtual tables: `sharded` (the table), `shardvt_shards` (its shard map as rows), `sharded_agg`
//! (an exact cross-shard aggregate query as rows; the rewrite lives in `crate::agg`).
//! Orchestration only: the logic lives in `config`, `routing`, `planner`, `merge` and `shard`.

pub mod agg_tvf;
pub mod cursor;
pub mod explain;
pub mod registry;
pub mod shards_tvf;
pub mod table;

use crate::error::{Error, Result};
use crate::ffi::api::HostDb;
use crate::ffi::with_table_at;
use table::ShardedTable;

/// Runs `f` on the connected sharded table named `name` ("t" or "schema.t") of connection `db`,
/// connecting it first if this connection has not used it yet.
pub fn with_table<R>(db: HostDb, name: &str, f: impl FnOnce(&mut ShardedTable) -> Result<R>) -> Result<R> {
    let (schema, table) = match name.split_once('.') {
        Some((s, t)) => (Some(s.to_string()), t.to_string()),
        None => (None, name.to_string()),
    };
    let find = || registry::lookup(db, schema.as_deref(), &table);
    let addr = match find() {
        Some(a) => a,
        None => {
            // Preparing a statement that names the table makes SQLite connect it.
            let q = match &schema {
                Some(s) => format!("SELECT 1 FROM {}.{} LIMIT 0", crate::config::quote_ident(s), crate::config::quote_ident(&table)),
                None => format!("SELECT 1 FROM {} LIMIT 0", crate::config::quote_ident(&table)),
            };
            db.prepare(&q).map_err(|e| Error::config(format!("{} (expected the name of a sharded table)", e.message)))?;
            find().ok_or_else(|| Error::config(format!("{name} is not a sharded table")))?
        }
    };
    with_table_at(addr, f)
}
