//! Parallel shard scans: worker threads stream the shards' rows to the cursor.
//!
//! HOW IT WORKS. For a large scan over several shards outside a write transaction, the cursor
//! calls [`start`] with the shard files and a number of workers (the table decides: one per
//! core when the shards filter their own rows, one fewer when every row crosses to the host
//! thread, which then needs a core of its own). Worker w serves shards w, w+workers, ...: it
//! takes a read-only connection per shard from the table's reader pool (or opens one; it maps
//! the shard file, [`READER_MMAP_BYTES`]), runs the shard SQL and packs rows into
//! [`super::batch::Batch`]es (no allocation per row), each sent through the shard's bounded
//! channel ([`CHANNEL_BATCHES`] batches). A shard's first batch holds [`FIRST_BATCH_ROWS`] rows
//! and each next one twice as many, up to [`BATCH_ROWS`] or [`BATCH_BYTES`]. The worker keeps
//! every one of its channels full; when all are full it sleeps until the cursor hands a used
//! batch back (the recycling channel), so memory stays bounded however large the table is and
//! a slow consumer pauses the workers. The host thread only merges the heads and hands values
//! over. A dropped stream (cursor closed or re-filtered) ends its shard at the next send; a
//! worker whose streams are all gone returns its connections and exits.
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
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::ffi::api::{Connection, Statement, ValueRef, OPEN_READONLY, TYPE_BLOB, TYPE_FLOAT, TYPE_INTEGER, TYPE_TEXT};
use crate::value::Value;

use super::batch::{Batch, Cell};
use super::BUSY_TIMEOUT_MS;

pub const BATCH_ROWS: usize = 1024;
/// The first batch of a shard is small and each next one twice as large: a statement that
/// stops after a few rows (`LIMIT` the shards could not apply, `EXISTS`) has not made the
/// workers read far ahead.
pub const FIRST_BATCH_ROWS: usize = 32;
/// A batch is sent once it holds this many bytes of cell data (bounds a scan's memory with wide
/// rows: about (CHANNEL_BATCHES + 2) batches per shard exist at once).
pub const BATCH_BYTES: usize = 64 << 10;
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

/// Idle read-only connections per shard file, shared with worker threads.
#[derive(Clone)]
pub struct ReaderPool {
    inner: Arc<Mutex<HashMap<PathBuf, Vec<Connection>>>>,
    /// `PRAGMA mmap_size` of its connections
    mmap: u64,
}

impl Default for ReaderPool {
    /// Connections that map the shard files ([`READER_MMAP_BYTES`]).
    fn default() -> ReaderPool {
        ReaderPool { inner: Default::default(), mmap: READER_MMAP_BYTES }
    }
}

impl ReaderPool {
    /// Connections that read with pread, without mapping: for scans that hand every row to the
    /// host, which gain little from a mapping (the host thread is their bottleneck) while the
    /// mapped pages of a whole table would count in the process's RSS.
    pub fn unmapped() -> ReaderPool {
        ReaderPool { inner: Default::default(), mmap: 0 }
    }

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
        if self.mmap > 0 {
            c.exec(&format!("PRAGMA mmap_size={}", self.mmap))?;
        }
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

/// A packed batch or the error that ended the worker.
type Sent = Result<Batch>;

/// The value of a shard statement's column, borrowed until the statement's next step.
fn cell_of<'a>(v: &ValueRef<'a>) -> Cell<'a> {
    match v.type_code() {
        t if t == TYPE_INTEGER => Cell::Int(v.as_i64()),
        t if t == TYPE_FLOAT => Cell::Real(v.as_f64()),
        t if t == TYPE_TEXT => Cell::Text(v.text_bytes()),
        t if t == TYPE_BLOB => Cell::Blob(v.blob_bytes()),
        _ => Cell::Null,
    }
}

/// The receiving end of one shard's stream. A consumed batch goes back to the worker, which
/// refills it (no allocation per row, `shard::batch`).
pub struct Stream {
    rx: Receiver<Sent>,
    back: Sender<Batch>,
    batch: Batch,
    pos: usize,
}

impl Stream {
    /// Advances to the next row: Ok(false) at the end of the shard's rows.
    pub fn step(&mut self) -> Result<bool> {
        self.pos += 1;
        if self.pos < self.batch.rows() {
            return Ok(true);
        }
        match self.rx.recv() {
            Ok(Ok(b)) => {
                let used = std::mem::replace(&mut self.batch, b);
                let _ = self.back.send(used); // the worker may have finished: then it is dropped
                self.pos = 0;
                Ok(self.batch.rows() > 0)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                self.batch.clear();
                Ok(false)
            }
        }
    }

    /// Column `j` of the current row.
    pub fn cell(&self, j: usize) -> Cell<'_> {
        self.batch.cell(self.pos, j)
    }

    /// Column `j` of the current row as an integer (the rowid).
    pub fn int(&self, j: usize) -> i64 {
        self.batch.int(self.pos, j)
    }

    /// True when the worker has nothing buffered yet (for tests).
    pub fn is_idle(&self) -> bool {
        matches!(self.rx.try_recv(), Err(TryRecvError::Empty))
    }
}

/// One shard of a worker: its connection and statement, and the batch its stream had no room
/// for yet.
struct Job {
    path: PathBuf,
    conn: Option<Connection>,
    st: Option<Statement>,
    tx: Option<SyncSender<Sent>>,
    pending: Option<Sent>,
    /// rows of the next batch: from FIRST_BATCH_ROWS, doubling up to BATCH_ROWS
    rows: usize,
}

impl Job {
    /// Fills `batch` with the statement's next rows; true when the statement has no more.
    fn fill(&mut self, batch: &mut Batch) -> Result<bool> {
        let Some(st) = self.st.as_mut() else { return Ok(true) };
        let n = st.column_count();
        batch.reset(n);
        let rows = self.rows;
        self.rows = (rows * 2).min(BATCH_ROWS);
        while batch.rows() < rows && batch.bytes() < BATCH_BYTES {
            if !st.step()? {
                return Ok(true);
            }
            for i in 0..n {
                batch.push(cell_of(&st.column_ref(i)));
            }
        }
        Ok(false)
    }

    /// Ends the shard: finalizes the statement, returns the connection, closes the stream.
    fn finish(&mut self, pool: &ReaderPool) {
        self.st = None;
        if let Some(c) = self.conn.take() {
            pool.give(self.path.clone(), c);
        }
        self.tx = None;
        self.pending = None;
    }
}

/// Starts `workers` threads that run `sql` with `binds` on the shard files `paths`; one
/// stream per path, in order. Each thread serves the shards i, i+workers, ...: it keeps every
/// one of its streams filled (CHANNEL_BATCHES batches ahead) and sleeps while all are full.
pub fn start(pool: &ReaderPool, paths: Vec<PathBuf>, sql: &str, binds: &[Value], workers: usize) -> Vec<Stream> {
    let workers = workers.clamp(1, paths.len().max(1));
    let mut streams: Vec<Option<Stream>> = (0..paths.len()).map(|_| None).collect();
    for w in 0..workers {
        let (back, recycled) = channel::<Batch>();
        let mut jobs = Vec::new();
        for (i, path) in paths.iter().enumerate().skip(w).step_by(workers) {
            let (tx, rx) = sync_channel::<Sent>(CHANNEL_BATCHES);
            streams[i] = Some(Stream { rx, back: back.clone(), batch: Batch::default(), pos: 0 });
            jobs.push(Job { path: path.clone(), conn: None, st: None, tx: Some(tx), pending: None, rows: FIRST_BATCH_ROWS });
        }
        drop(back);
        let (pool, sql, binds) = (pool.clone(), sql.to_string(), binds.to_vec());
        let body = move || {
            let mut jobs = jobs;
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(&pool, &mut jobs, &sql, &binds, &recycled)));
            for j in &mut jobs {
                if r.is_err() {
                    // a stream must never just end early: its cursor would see a short result.
                    // Blocks while the channel is full (the cursor drains it or drops it).
                    if let Some(tx) = &j.tx {
                        let _ = tx.send(Err(Error::internal("sharded: a scan worker panicked")));
                    }
                }
                j.finish(&pool);
            }
        };
        if let Err(e) = std::thread::Builder::new().name("shardvt-scan".into()).spawn(body) {
            // no thread: each of its streams reports the error
            for s in streams.iter_mut().skip(w).step_by(workers) {
                let (tx2, rx2) = sync_channel::<Sent>(1);
                let _ = tx2.send(Err(Error::internal(format!("sharded: cannot start a scan thread: {e}"))));
                if let Some(s) = s {
                    s.rx = rx2;
                }
            }
        }
    }
    streams.into_iter().map(|s| s.unwrap_or_else(|| {
        let (_, rx) = sync_channel::<Sent>(1);
        let (back, _) = channel::<Batch>();
        Stream { rx, back, batch: Batch::default(), pos: 0 }
    })).collect()
}

/// The worker loop of [`start`].
fn serve(pool: &ReaderPool, jobs: &mut [Job], sql: &str, binds: &[Value], recycled: &Receiver<Batch>) {
    // open every shard first: each statement's first step takes its snapshot
    for j in jobs.iter_mut() {
        let opened = pool.take(&j.path).and_then(|c| {
            let mut st = c.prepare(sql)?;
            for (i, b) in binds.iter().enumerate() {
                st.bind(i + 1, b)?;
            }
            j.conn = Some(c);
            Ok(st)
        });
        match opened {
            Ok(st) => j.st = Some(st),
            Err(e) => j.pending = Some(Err(e)),
        }
    }
    let mut free: Vec<Batch> = Vec::new();
    loop {
        let mut progress = false;
        let mut live = 0;
        for j in jobs.iter_mut() {
            if j.tx.is_none() {
                continue;
            }
            if j.pending.is_none() && j.st.is_some() {
                let mut b = free.pop().unwrap_or_default();
                j.pending = Some(match j.fill(&mut b) {
                    Ok(end) => {
                        if end {
                            j.st = None; // the stream ends after this batch
                        }
                        Ok(b)
                    }
                    Err(e) => {
                        j.st = None;
                        Err(e)
                    }
                });
            }
            if let (Some(item), Some(tx)) = (j.pending.take(), &j.tx) {
                match tx.try_send(item) {
                    Ok(()) => progress = true,
                    Err(TrySendError::Full(item)) => j.pending = Some(item),
                    Err(TrySendError::Disconnected(_)) => j.st = None, // the cursor stopped reading
                }
            }
            if j.pending.is_none() && j.st.is_none() {
                j.finish(pool); // everything sent (or nobody listens): the stream ends
            } else {
                live += 1;
            }
        }
        if live == 0 {
            return;
        }
        free.extend(recycled.try_iter());
        if !progress {
            // every stream is full: sleep until the cursor hands a batch back
            match recycled.recv() {
                Ok(b) => free.push(b),
                Err(_) => return, // every stream was dropped
            }
        }
    }
}
