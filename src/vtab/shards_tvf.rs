//! `shardvt_shards(table)`: the shard map of a sharded table as rows (eponymous, read-only).
//!
//! Columns: `shard` (id), `path` (file path), `rows` (current row count), `buckets` (hash: the
//! comma-separated buckets mapped to the shard), `prefix` (prefix strategy: the prefix; NULL for
//! the NULL-key shard), and the hidden argument `tbl`. Rows come in shard order.

use crate::error::{Error, Result};
use crate::ffi::api::{HostDb, ValueRef};
use crate::ffi::vtab::{ColumnContext, IndexInfo, VTab, VTabCursor};
use crate::planner::op;
use crate::value::Value;

use super::with_table;

pub struct ShardsTvf {
    db: HostDb,
}

pub struct ShardsCursor {
    rows: Vec<Vec<Value>>,
    pos: usize,
}

const TBL_COLUMN: i32 = 5;

impl VTab for ShardsTvf {
    type Cursor = ShardsCursor;

    fn connect(db: HostDb, _argv: &[String], _create: bool) -> Result<(Self, String)> {
        Ok((
            ShardsTvf { db },
            "CREATE TABLE x(shard INTEGER, path TEXT, rows INTEGER, buckets TEXT, prefix TEXT, tbl HIDDEN)".into(),
        ))
    }

    fn best_index(&mut self, info: &mut IndexInfo<'_>) -> Result<()> {
        let cons = info.constraints();
        let mut found = false;
        for (i, c) in cons.iter().enumerate() {
            if c.column == TBL_COLUMN && c.op == op::EQ {
                if !c.usable {
                    continue;
                }
                info.set_argv_index(i, 1, true);
                found = true;
            }
        }
        info.set_idx_num(found as i32);
        info.set_estimated_cost(if found { 10.0 } else { 1e12 });
        Ok(())
    }

    fn open(&mut self) -> Result<ShardsCursor> {
        Ok(ShardsCursor { rows: vec![], pos: 0 })
    }
}

impl VTabCursor for ShardsCursor {
    type Table = ShardsTvf;

    fn filter(&mut self, t: &mut ShardsTvf, idx_num: i32, _s: Option<&str>, args: &[ValueRef<'_>]) -> Result<()> {
        if idx_num == 0 || args.is_empty() {
            return Err(Error::config("shardvt_shards: give the table name, e.g. SELECT * FROM shardvt_shards('events')"));
        }
        let name = args[0].text_string();
        self.rows = with_table(t.db, &name, |st| {
            let ids = st.all_shards()?;
            let mut rows = Vec::new();
            for id in ids {
                let entry = st.catalog.shards.iter().find(|e| e.id == id).cloned().unwrap();
                let path = st.catalog.shard_path(&entry).to_string_lossy().into_owned();
                let count = st.shard_rows(id)?;
                let buckets: Vec<String> = st
                    .catalog
                    .buckets
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| **s == id)
                    .map(|(b, _)| b.to_string())
                    .collect();
                let buckets = if buckets.is_empty() { Value::Null } else { Value::text(&buckets.join(",")) };
                let prefix = match &entry.prefix {
                    Some(Some(p)) => Value::text(p),
                    _ => Value::Null,
                };
                rows.push(vec![Value::Integer(id.0 as i64), Value::text(&path), Value::Integer(count), buckets, prefix]);
            }
            Ok(rows)
        })?;
        self.pos = 0;
        Ok(())
    }

    fn next(&mut self, _t: &mut ShardsTvf) -> Result<()> {
        self.pos += 1;
        Ok(())
    }

    fn eof(&self) -> bool {
        self.pos >= self.rows.len()
    }

    fn column(&mut self, _t: &mut ShardsTvf, ctx: &mut ColumnContext, i: usize) -> Result<()> {
        match self.rows.get(self.pos).and_then(|r| r.get(i)) {
            Some(v) => ctx.set_value(v),
            None => ctx.set_null(),
        }
        Ok(())
    }

    fn rowid(&mut self, _t: &mut ShardsTvf) -> Result<i64> {
        Ok(self.pos as i64)
    }
}
