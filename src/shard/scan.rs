//! Parallel shard scans: one worker thread per shard streams rows to the cursor.
//!
//! HOW IT WORKS. For a large scan over several shards outside a write transaction, the cursor
//! starts one worker per shard. Each worker takes a read-only connection from the table's
//! reader pool (or opens one; it maps the shard file, [`READER_MMAP_BYTES`]), runs the shard SQL, decodes rows into Rust values and sends them
//! in batches of [`BATCH_ROWS`] through a bounded channel ([`CHANNEL_BATCHES`] batches), so
//! memory stays bounded however large the table is and a slow consumer pauses the workers. The
//! host thread only merges the heads and hands values over. Dropping the receiver (cursor closed
//! or re-filtered) makes the worker stop at its next send; it then returns its connection.
//!
//! Each worker's statement is one read transaction on its shard, so every shard is read at one
//! point in time, as in a sequential scan. Requires a thread-safe host library (checked by the
//! caller). Errors travel through the channel and surface from xNext/xFilter.
//!
//! Batch form, used by `sharded_agg`: [`snapshot_set`] holds one read-only connection per shard
//! in a read transaction (the snapshots taken as a consistent cut, `shard::cut`), then
//! [`collect_in`] runs each partial aggregate on every shard on a few worker threads and
//! returns all rows (small: partial aggregates), and [`end_snapshots`] ends the transactions.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::ffi::api::{Connection, OPEN_READONLY};
use crate::value::Value;

use super::BUSY_TIMEOUT_MS;

pub const BATCH_ROWS: usize = 256;
pub const CHANNEL_BATCHES: usize = 4;
const POOL_PER_SHARD: usize = 2;
/// `PRAGMA mmap_size` of the worker (read-only) connections.
pub const READER_MMAP_BYTES: u64 = 256 << 20;

pub type Row = Vec<Value>;

/// Runs `job(i)` for every i in 0..n on up to `threads` scoped worker threads (each takes the
/// next index); the results in index order. A panicking job yields an internal error.
fn on_workers(n: usize, threads: usize, job: impl Fn(usize) -> Result<Vec<Row>> + Sync) -> Vec<Result<Vec<Row>>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<Vec<Row>>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, n.max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(i)))
                    .unwrap_or_else(|_| Err(Error::internal("sharded: a shard worker panicked")));
                *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            });
        }
    });
    results
        .into_iter()
        .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()).unwrap_or_else(|| Err(Error::internal("sharded: shard not read"))))
        .collect()
}

/// Read-only connections to `paths`, each inside an open read transaction whose snapshot is
/// already taken (`BEGIN`, then a read of the schema), so that several queries on one shard
/// see the same state. With `cut`, the snapshots form a consistent cut across the shards
/// (`shard::cut`): they are taken again while a multi-shard commit overlapped them. End them
/// with [`end_snapshots`].
pub fn snapshot_set(pool: &ReaderPool, paths: &[PathBuf], cut: Option<&super::cut::Cut>) -> Result<Vec<Connection>> {
    let mut retries = 0u32;
    loop {
        let gen = cut.and_then(|c| c.quiet());
        let mut conns = Vec::with_capacity(paths.len());
        for p in paths {
            let c = match pool.take(p) {
                Ok(c) => c,
                Err(e) => {
                    end_snapshots(pool, &paths[..conns.len()], conns);
                    return Err(e);
                }
            };
            if let Err(e) = c.exec("BEGIN").and_then(|_| c.exec("SELECT count(*) FROM sqlite_schema")) {
                let _ = c.exec("ROLLBACK");
                end_snapshots(pool, &paths[..conns.len()], conns);
                return Err(e);
            }
            conns.push(c);
        }
        match (cut, gen) {
            (Some(c), Some(g)) if !c.unchanged(g) && retries < 10_000 => {
                end_snapshots(pool, paths, conns);
                retries += 1;
            }
            _ => return Ok(conns),
        }
    }
}

/// Ends the read transactions of [`snapshot_set`] and gives the connections back to the pool.
pub fn end_snapshots(pool: &ReaderPool, paths: &[PathBuf], conns: Vec<Connection>) {
    for (p, c) in paths.iter().zip(conns) {
        if c.in_transaction() && c.exec("COMMIT").is_err() {
            continue; // dropped (closed) rather than pooled in an unknown state
        }
        pool.give(p.clone(), c);
    }
}

/// Runs `sql` to completion on every connection of a snapshot set, on up to `threads` worker
/// threads; the rows per connection, in order.
pub fn collect_in(conns: Vec<Connection>, sql: &str, threads: usize) -> (Vec<Result<Vec<Row>>>, Vec<Connection>) {
    let cells: Vec<Mutex<Connection>> = conns.into_iter().map(Mutex::new).collect();
    let results = on_workers(cells.len(), threads, |i| rows_of(&cells[i].lock().unwrap_or_else(|p| p.into_inner()), sql));
    (results, cells.into_iter().map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner())).collect())
}

fn rows_of(c: &Connection, sql: &str) -> Result<Vec<Row>> {
    let mut st = c.prepare(sql)?;
    let n = st.column_count();
    let mut rows = Vec::new();
    while st.step()? {
        rows.push((0..n).map(|i| st.column_value(i)).collect());
    }
    Ok(rows)
}

type Batch = Result<Vec<Row>>;

/// Idle read-only connections per shard file, shared with worker threads.
#[derive(Default, Clone)]
pub struct ReaderPool {
    inner: Arc<Mutex<HashMap<PathBuf, Vec<Connection>>>>,
}

impl ReaderPool {
    fn take(&self, path: &PathBuf) -> Result<Connection> {
        if let Some(c) = self.inner.lock().unwrap_or_else(|p| p.into_inner()).get_mut(path).and_then(|v| v.pop()) {
            return Ok(c);
        }
        let c = Connection::open(&path.to_string_lossy(), OPEN_READONLY)?;
        c.busy_timeout(BUSY_TIMEOUT_MS);
        // Workers read whole shards: mapping the file saves a copy per page read (`sharded_agg`'s
        // partial aggregates, which visit table pages at random, ran ~30% faster; a filtered
        // parallel scan ~10-20%). Mapped pages are the OS page cache's, counted in RSS as
        // file-backed pages while touched.
        c.exec(&format!("PRAGMA mmap_size={READER_MMAP_BYTES}"))?;
        Ok(c)
    }

    fn give(&self, path: PathBuf, c: Connection) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let v = m.entry(path).or_default();
        if v.len() < POOL_PER_SHARD {
            v.push(c);
        }
    }

    pub fn clear(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// The receiving end of one shard's stream.
pub struct Stream {
    rx: Receiver<Batch>,
    batch: Vec<Row>,
    pos: usize,
}

impl Stream {
    /// Advances to the next row: Ok(false) at the end of the shard's rows.
    pub fn step(&mut self) -> Result<bool> {
        self.pos += 1;
        if self.pos < self.batch.len() {
            return Ok(true);
        }
        match self.rx.recv() {
            Ok(Ok(b)) => {
                self.batch = b;
                self.pos = 0;
                Ok(!self.batch.is_empty())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                self.batch.clear();
                Ok(false)
            }
        }
    }

    pub fn row(&self) -> &Row {
        &self.batch[self.pos]
    }

    /// True when the worker has nothing buffered yet (for tests).
    pub fn is_idle(&self) -> bool {
        matches!(self.rx.try_recv(), Err(TryRecvError::Empty))
    }
}

/// Starts a worker that runs `sql` with `binds` on the shard file at `path`.
pub fn start(pool: &ReaderPool, path: PathBuf, sql: String, binds: Vec<Value>) -> Stream {
    let (tx, rx) = sync_channel::<Batch>(CHANNEL_BATCHES);
    let pool = pool.clone();
    let spawned = std::thread::Builder::new().name("shardvt-scan".into()).spawn(move || {
        let run = || -> Result<()> {
            let conn = pool.take(&path)?;
            let r = (|| -> Result<()> {
                let mut st = conn.prepare(&sql)?;
                for (i, b) in binds.iter().enumerate() {
                    st.bind(i + 1, b)?;
                }
                let n = st.column_count();
                loop {
                    let mut batch = Vec::with_capacity(BATCH_ROWS);
                    while batch.len() < BATCH_ROWS && st.step()? {
                        batch.push((0..n).map(|i| st.column_value(i)).collect());
                    }
                    let last = batch.len() < BATCH_ROWS;
                    if batch.is_empty() || tx.send(Ok(batch)).is_err() || last {
                        return Ok(());
                    }
                }
            })();
            pool.give(path.clone(), conn);
            r
        };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
            .unwrap_or_else(|_| Err(Error::internal("sharded: a scan worker panicked")));
        if let Err(e) = r {
            let _ = tx.send(Err(e));
        }
    });
    if let Err(e) = spawned {
        let (tx2, rx2) = sync_channel::<Batch>(1);
        let _ = tx2.send(Err(Error::internal(format!("sharded: cannot start a scan thread: {e}"))));
        return Stream { rx: rx2, batch: Vec::new(), pos: 0 };
    }
    Stream { rx, batch: Vec::new(), pos: 0 }
}
