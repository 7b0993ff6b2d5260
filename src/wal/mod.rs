//! The WAL checkpoint manager: who checkpoints the shard files, and when.
//!
//! Every shard connection the extension opens (`shard::conn`) calls [`manage`] right after it is
//! configured. In the default `managed` mode that registers a WAL hook on the connection
//! (`ffi::walhook`), which also switches off SQLite's inline auto-checkpoint there, and joins the
//! shard file to the process's one checkpoint thread (`runner`), which follows the pure policy
//! in `policy`:
//!
//! - commits only record the WAL size (a mutex-protected counter update); from 500 frames on the
//!   background thread drains the WAL with `PASSIVE` checkpoints, largest backlog first, on its
//!   own connection (busy timeout 0: it never waits for a writer, and a PASSIVE checkpoint never
//!   blocks one); once per cycle, when the WAL has reached 750 frames, it fsyncs the database
//!   file after a drain if drains copied pages SQLite left unsynced (SQLite syncs it only in a
//!   checkpoint that reaches the WAL's end, so otherwise the writer's tail below would pay for
//!   the writeback of every page the drains copied);
//! - once the WAL has passed 1000 frames (stock SQLite's threshold) and the drains have left a
//!   small tail, the tail is copied so that the writer's next transaction starts with the WAL
//!   fully backfilled and SQLite rewinds the WAL to its beginning. On shard files the background
//!   thread does it: it drains and syncs once more, then runs a FULL checkpoint, which holds the
//!   WAL's write lock while it copies the last frames and SQLite syncs both files; writers of
//!   this process wait for it at the gate ([`before_write`], and the busy handler), so a writer
//!   whose commits on the shard are further apart than the tail lasts never waits (and one whose
//!   commits are closer together copies the tail itself, as before: see `policy`). On a host
//!   database under the manager (whose writers do not pass the gate) the writer's hook copies
//!   the tail right after its commit (a tiny PASSIVE checkpoint). At 1200 frames the writer
//!   copies whatever is left, however large (a background that cannot keep up must not let the
//!   WAL grow);
//! - a shard with no commit for 150 ms gets `TRUNCATE`d: its `-wal` file becomes 0 bytes;
//!   writers of this process that start a transaction meanwhile wait for it at the same gate
//!   instead of polling SQLite's lock;
//! - if the WAL still reaches 8000 frames (the thread cannot keep up), the committing thread
//!   checkpoints inline, as stock SQLite does.
//!
//! Modes (process-wide; `SHARDVT_CHECKPOINT_MODE` in the environment sets the initial one,
//! `shardvt_checkpoint_mode(mode)` changes it): `managed`; `stock` — shard connections opened
//! from then on keep SQLite's own auto-checkpoint (no hook), connections that already have the
//! hook behave exactly like it (PASSIVE after a commit that leaves >= 1000 frames);
//! `external` — no checkpoints at all from this process (Litestream or another tool owns them;
//! the WAL grows until that tool checkpoints). A host library built without threads
//! (`SQLITE_THREADSAFE=0`) always gets `stock`.
//!
//! `shardvt_wal_stats()` ([`stats_json`]) reports, per shard file with a hooked connection: WAL
//! bytes, frames, frames a reader keeps from being checkpointed, checkpoints by kind (tails run
//! by the background also counted as `background_tails`), writer waits at the gate, the writer's
//! time in checkpoints (inline ones and gate waits), rewinds, busy retries, the time of the last
//! checkpoint. A shard whose WAL holds 4000+ frames that a
//! reader pins gets a `sqlite3_log` warning (SQLITE_WARNING), at most every 10 s.
//!
//! Files: the thread opens shard files with READWRITE only (never CREATE) and closes a shard's
//! connection after 2 s without work, and at once when the last connection of this process to
//! that shard closes (before `DROP TABLE` removes the files), so it neither keeps deleted files
//! open nor recreates them.

pub mod policy;
pub mod runner;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use crate::error::{Error, Result};
use crate::ffi::api::{host_threadsafe, Connection};
pub use policy::Mode;

/// Environment variable that sets the initial mode (`managed`, `stock`, `external`).
pub const MODE_ENV: &str = "SHARDVT_CHECKPOINT_MODE";

const UNSET: u8 = 0;
static MODE: AtomicU8 = AtomicU8::new(UNSET);

fn encode(m: Mode) -> u8 {
    match m {
        Mode::Managed => 1,
        Mode::Stock => 2,
        Mode::External => 3,
    }
}

fn decode(v: u8) -> Mode {
    match v {
        2 => Mode::Stock,
        3 => Mode::External,
        _ => Mode::Managed,
    }
}

/// The process's checkpoint mode (from the environment on first use, default `managed`).
pub fn mode() -> Mode {
    let v = MODE.load(Ordering::Relaxed);
    if v != UNSET {
        return decode(v);
    }
    let m = std::env::var(MODE_ENV).ok().and_then(|s| Mode::parse(&s)).unwrap_or(Mode::Managed);
    let _ = MODE.compare_exchange(UNSET, encode(m), Ordering::Relaxed, Ordering::Relaxed);
    decode(MODE.load(Ordering::Relaxed))
}

/// Sets the process's checkpoint mode from its SQL name.
pub fn set_mode(name: &str) -> Result<Mode> {
    let m = Mode::parse(name).ok_or_else(|| {
        Error::config(format!("shardvt_checkpoint_mode: unknown mode {name:?} (expected 'managed', 'stock' or 'external')"))
    })?;
    MODE.store(encode(m), Ordering::Relaxed);
    Ok(m)
}

/// Puts a freshly opened shard connection under the manager (see the module header).
pub fn manage(conn: &mut Connection) {
    if mode() == Mode::Stock || !host_threadsafe() {
        return;
    }
    runner::attach(conn);
}

/// Called before a shard connection begins a write transaction: waits while this process's
/// manager holds that shard's WAL write lock (a TRUNCATE, or the background tail that lets the
/// next transaction rewind the WAL), so the writer does not poll SQLite's lock.
pub fn before_write(path: &str) {
    runner::wait_at_gate(path);
}

/// A connection to `path` met SQLITE_BUSY: if this process's manager holds that WAL's write
/// lock right now, waits until it lets go and returns true (retry at once), else false.
pub fn wait_at_gate(path: &str) -> bool {
    runner::wait_at_gate(path)
}

/// `shardvt_wal_stats([filter])`: JSON array, one object per managed shard file whose path
/// contains `filter`.
pub fn stats_json(filter: Option<&str>) -> String {
    runner::stats_json(filter)
}

/// `shardvt_manage_wal`: puts database `schema` (file `path`) of the host connection `db` under
/// the manager until that connection closes (see `runner::manage_host`). Returns false if it
/// already was.
pub fn manage_host(db: crate::ffi::api::HostDb, schema: &str, path: &str) -> crate::error::Result<bool> {
    runner::manage_host(db, schema, path)
}

// ---------------------------------------------------------------------------------------------
// Process-wide settings (`shardvt_wal_config`).

static BACKPRESSURE_FRAMES: AtomicU64 = AtomicU64::new(0);
static BACKPRESSURE_DELAY_MS: AtomicU64 = AtomicU64::new(5);
static MAX_SNAPSHOT_MS: AtomicU64 = AtomicU64::new(60_000);
static DURABLE_COMMIT: AtomicU64 = AtomicU64::new(0);

/// (name, setting, largest accepted value)
const SETTINGS: [(&str, &AtomicU64, u64); 4] = [
    ("backpressure_frames", &BACKPRESSURE_FRAMES, 1 << 30),
    ("backpressure_delay_ms", &BACKPRESSURE_DELAY_MS, 1000),
    ("max_snapshot_ms", &MAX_SNAPSHOT_MS, 1 << 40),
    ("durable_commit", &DURABLE_COMMIT, 2),
];

/// How a COMMIT that wrote shards is made durable (`shardvt_wal_config('durable_commit', n)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// 0 (default): shards run `synchronous=NORMAL`; a commit survives a crash of the process,
    /// and a power loss once the shard's WAL is synced (at the next checkpoint).
    Normal,
    /// 1: as Normal, then the `-wal` files of every shard the transaction wrote are fsynced in
    /// parallel at the end of the logical COMMIT (one fsync per shard, concurrently).
    Parallel,
    /// 2: shards run `synchronous=FULL` (SQLite's own: each shard's commit fsyncs its WAL, one
    /// after the other). The stock baseline `Parallel` is measured against.
    Full,
}

pub fn durability() -> Durability {
    match DURABLE_COMMIT.load(Ordering::Relaxed) {
        1 => Durability::Parallel,
        2 => Durability::Full,
        _ => Durability::Normal,
    }
}

pub fn backpressure() -> (u32, u64) {
    (BACKPRESSURE_FRAMES.load(Ordering::Relaxed) as u32, BACKPRESSURE_DELAY_MS.load(Ordering::Relaxed))
}

/// A scan's read snapshot older than this (ms) fails with "snapshot too old" once its shard's
/// WAL is large (see `snapshot_too_old`); 0: never.
pub fn max_snapshot_ms() -> u64 {
    MAX_SNAPSHOT_MS.load(Ordering::Relaxed)
}

/// The WAL size (bytes) above which an old snapshot counts as pinning the WAL: the size at
/// which the manager warns about a pinned WAL (4000 frames of 4 KiB pages).
pub const PIN_WAL_BYTES: u64 = 4000 * (4096 + 24);

/// Is a scan whose read snapshot on the shard file `path` is `age_ms` old holding back a large
/// WAL? (The `-wal` file's size is read, so writers of other processes count too.)
pub fn snapshot_too_old(path: &str, age_ms: u64) -> Option<u64> {
    let limit = max_snapshot_ms();
    if limit == 0 || age_ms < limit {
        return None;
    }
    let wal = std::fs::metadata(format!("{path}-wal")).map(|m| m.len()).unwrap_or(0);
    (wal >= PIN_WAL_BYTES).then_some(wal)
}

/// `shardvt_wal_config()`: JSON of every setting; with a name, its value; with a name and a
/// value, sets it (process-wide) and returns the new value.
pub fn config(name: Option<&str>, value: Option<i64>) -> Result<String> {
    let Some(name) = name else {
        let items: Vec<String> = SETTINGS.iter().map(|(n, v, _)| format!("\"{n}\":{}", v.load(Ordering::Relaxed))).collect();
        return Ok(format!("{{{}}}", items.join(",")));
    };
    let Some((_, slot, max)) = SETTINGS.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(name)) else {
        let names: Vec<&str> = SETTINGS.iter().map(|(n, _, _)| *n).collect();
        return Err(Error::config(format!("shardvt_wal_config: unknown setting {name:?} (expected one of: {})", names.join(", "))));
    };
    if let Some(v) = value {
        if v < 0 || v as u64 > *max {
            return Err(Error::config(format!("shardvt_wal_config: {name} must be between 0 and {max}, not {v}")));
        }
        slot.store(v as u64, Ordering::Relaxed);
    }
    Ok(slot.load(Ordering::Relaxed).to_string())
}
