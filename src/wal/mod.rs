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
//!   blocks one);
//! - once the WAL has passed 1000 frames (stock SQLite's threshold) and the drains have left a
//!   small tail, the writer's hook copies the tail itself (a tiny PASSIVE checkpoint right after
//!   its commit), so its next transaction starts with the WAL fully backfilled and SQLite rewinds
//!   the WAL to its beginning;
//! - a shard with no commit for 200 ms gets `TRUNCATE`d: its `-wal` file becomes 0 bytes;
//!   writers of this process that start a transaction meanwhile wait for it in-process
//!   ([`before_write`]) instead of polling SQLite's lock;
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
//! bytes, frames, frames a reader keeps from being checkpointed, checkpoints by kind, rewinds,
//! busy retries, the time of the last checkpoint. A shard whose WAL holds 4000+ frames that a
//! reader pins gets a `sqlite3_log` warning (SQLITE_WARNING), at most every 10 s.
//!
//! Files: the thread opens shard files with READWRITE only (never CREATE) and closes a shard's
//! connection after 2 s without work, and at once when the last connection of this process to
//! that shard closes (before `DROP TABLE` removes the files), so it neither keeps deleted files
//! open nor recreates them.

pub mod policy;
pub mod runner;

use std::sync::atomic::{AtomicU8, Ordering};

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
/// manager is truncating that shard's WAL (a few ms), so the writer does not poll SQLite's lock.
pub fn before_write(path: &str) {
    runner::wait_for_truncate(path);
}

/// `shardvt_wal_stats([filter])`: JSON array, one object per managed shard file whose path
/// contains `filter`.
pub fn stats_json(filter: Option<&str>) -> String {
    runner::stats_json(filter)
}
