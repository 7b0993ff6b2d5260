//! Plan capture for `shardvt_explain(sql)`.
//!
//! While `shardvt_explain` runs a query, every xFilter of a sharded table appends one line
//! describing what it did: the table, the shards visited out of the total, whether ORDER BY was
//! consumed (merge) or rowid order was used, the per-shard LIMIT, the execution mode, and the
//! exact SQL sent to each shard. Capture is per thread (a host connection runs on one thread at a
//! time), and off unless `shardvt_explain` turned it on.

use std::cell::RefCell;

use crate::routing::ShardId;

thread_local! {
    static CAPTURE: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

pub fn start() {
    CAPTURE.with(|c| *c.borrow_mut() = Some(Vec::new()));
}

pub fn finish() -> Vec<String> {
    CAPTURE.with(|c| c.borrow_mut().take().unwrap_or_default())
}

pub fn record(table: &str, shards: &[ShardId], total: usize, sql: &str, order_consumed: bool, limit: Option<i64>, workers: Option<usize>) {
    CAPTURE.with(|c| {
        if let Some(v) = c.borrow_mut().as_mut() {
            let ids: Vec<String> = shards.iter().map(|s| s.0.to_string()).collect();
            v.push(format!(
                "{table}: shards [{}] of {total}; order {}; limit {}; {}; sql: {sql}",
                ids.join(","),
                if order_consumed { "merged (ORDER BY consumed)" } else { "rowid merge" },
                limit.map(|l| l.to_string()).unwrap_or_else(|| "none".into()),
                match workers {
                    Some(n) => format!("parallel ({n} thread{})", if n == 1 { "" } else { "s" }),
                    None => "sequential".to_string(),
                },
            ));
        }
    });
}
