//! The checkpoint thread and the per-shard bookkeeping around `policy`.
//!
//! HOW IT WORKS. A process-wide registry holds one [`Slot`] per shard path that has at least one
//! hooked connection in this process. A slot has the policy state (`policy::ShardWal`, behind a
//! mutex that commits hold for a few instructions), the manager's own connection to the file,
//! and a mutex held while that connection truncates the WAL.
//!
//! - The WAL hook (`ShardHook::on_commit`, committing thread): lock the state, ask the policy,
//!   unlock; then either nothing, wake the thread (condvar), or run the inline PASSIVE checkpoint
//!   the policy chose on the committing connection and report its outcome.
//! - The thread (`run`, started by the first hooked connection, lives for the process): snapshot
//!   the states, ask `policy::next_job`, run that job on the slot's connection (opened on demand
//!   with READWRITE only, busy timeout 0, `synchronous=NORMAL`, so the checkpoint fsyncs the
//!   WAL here; the database file is synced here too: by SQLite when the checkpoint reaches the
//!   WAL's end, by us when it stops short), report the outcome; with nothing to do, sleep until the earliest time
//!   the policy named or until a hook wakes it.
//! - Unregistering (`ShardHook` dropped after its connection closed): when the last connection
//!   to a path goes, the slot leaves the registry and its manager connection is closed at once,
//!   under the connection mutex, after any checkpoint in flight; a `retired` flag keeps the thread
//!   from reopening it. So `DROP TABLE`, which closes the shard connections before removing the
//!   files, never races with a manager connection of this process.
//!
//! Lock order: registry → slot connection → slot state. The hook takes the slot state, and for
//! a forced tail or a saturated WAL first the slot connection (waiting for a drain in flight).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::policy::{self, Config, HookAction, Job, Outcome, ShardWal};
use crate::ffi::api::{log, Connection, HostDb, OPEN_READWRITE};
use crate::ffi::walhook::{self, CheckpointMode, CheckpointResult, WalConn, WalObserver};
use crate::json::string as json_str;

struct ConnCell {
    conn: Option<Connection>,
    retired: bool,
}

struct Slot {
    path: String,
    regs: AtomicUsize,
    state: Mutex<ShardWal>,
    conn: Mutex<ConnCell>,
    /// held while the manager's connection holds the WAL's write lock (a TRUNCATE or a
    /// background tail): writers of this process wait here (`wait_at_gate`)
    gate: Mutex<()>,
    /// pages copied into the database file by drains that SQLite did not sync (checkpoint
    /// thread only; see `policy::sync_after_drain`)
    unsynced: std::sync::atomic::AtomicBool,
}

struct Manager {
    slots: Mutex<Vec<Arc<Slot>>>,
    wake: Mutex<bool>,
    cv: Condvar,
    started: Once,
}

static MANAGER: Manager =
    Manager { slots: Mutex::new(Vec::new()), wake: Mutex::new(false), cv: Condvar::new(), started: Once::new() };

/// Number of gated checkpoints (TRUNCATE, background tail) running now (fast path of
/// `wait_at_gate`).
static GATED: AtomicUsize = AtomicUsize::new(0);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn cfg() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(Config::default)
}

fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn outcome(r: CheckpointResult) -> Outcome {
    match r.rc & 0xff {
        0 => Outcome::Done { log: r.log.max(0) as u32, ckpt: r.ckpt.max(0) as u32 },
        5 | 6 => Outcome::Busy, // SQLITE_BUSY, SQLITE_LOCKED
        _ => Outcome::Failed,
    }
}

fn wake() {
    *lock(&MANAGER.wake) = true;
    MANAGER.cv.notify_one();
}

/// The WAL hook of one shard connection; unregisters its slot when dropped.
struct ShardHook {
    slot: Arc<Slot>,
}

impl WalObserver for ShardHook {
    fn on_commit(&self, conn: &WalConn<'_>, frames: u32) {
        commit_on(&self.slot, conn, frames);
    }
}

/// The WAL hook of a host connection put under the manager by `shardvt_manage_wal`: one slot
/// per managed schema of that connection. Dropped when the connection closes (see
/// `walhook::install_on_host`), which unregisters its slots.
struct HostHook {
    db: usize,
    slots: Arc<Mutex<Vec<(String, Arc<Slot>)>>>,
}

impl WalObserver for HostHook {
    fn on_commit(&self, conn: &WalConn<'_>, frames: u32) {
        let schema = conn.schema();
        let slot = lock(&self.slots).iter().find(|(s, _)| *s == schema).map(|(_, slot)| slot.clone());
        match slot {
            Some(slot) => commit_on(&slot, conn, frames),
            // a schema not under the manager: what SQLite's auto-checkpoint would do
            None if frames >= 1000 => {
                let _ = conn.checkpoint(CheckpointMode::Passive);
            }
            None => {}
        }
    }
}

impl Drop for HostHook {
    fn drop(&mut self) {
        lock(&HOSTS).retain(|(db, _)| *db != self.db);
        for (_, slot) in lock(&self.slots).drain(..) {
            unregister(&slot);
        }
    }
}

/// Host connections with a `HostHook`: (connection address, its schema → slot list).
static HOSTS: Mutex<Vec<(usize, Arc<Mutex<Vec<(String, Arc<Slot>)>>>)>> = Mutex::new(Vec::new());

/// `shardvt_manage_wal`: puts database `schema` (file `path`, in WAL mode) of host connection
/// `db` under the manager. Returns false if it already was.
pub fn manage_host(db: HostDb, schema: &str, path: &str) -> crate::error::Result<bool> {
    let existing = lock(&HOSTS).iter().find(|(d, _)| *d == db.0).map(|(_, l)| l.clone());
    if let Some(list) = existing {
        let mut l = lock(&list);
        if l.iter().any(|(s, _)| s == schema) {
            return Ok(false);
        }
        l.push((schema.to_string(), register(path, false)));
        return Ok(true);
    }
    // the host's own writers do not wait at the gate: its tails stay in the writer's hook
    let list = Arc::new(Mutex::new(vec![(schema.to_string(), register(path, false))]));
    lock(&HOSTS).push((db.0, list.clone()));
    // on failure the hook box is dropped (by SQLite's xDestroy), which undoes the registration
    walhook::install_on_host(db, Box::new(HostHook { db: db.0, slots: list }))?;
    Ok(true)
}

/// A commit on a managed file: ask the policy, then nothing, wake the thread, or checkpoint
/// inline on the committing connection.
fn commit_on(slot: &Slot, conn: &WalConn<'_>, frames: u32) {
    let mode = super::mode();
    let (action, rewinds) = {
        let mut st = lock(&slot.state);
        (st.on_commit(cfg(), mode, frames, now_ms()), st.counters.rewinds)
    };
    match action {
        HookAction::Nothing => {}
        HookAction::Wake => wake(),
        HookAction::Tail | HookAction::Saturated => {
            let t = Instant::now();
            // A forced tail (the WAL is past `force_tail`) or a saturated WAL must not just meet
            // SQLITE_BUSY because this process's checkpoint thread is in the middle of a drain
            // of this file (the WAL would go on growing): wait for that drain to end (holding
            // its connection's mutex keeps the next one from starting meanwhile).
            let must = action == HookAction::Saturated || frames >= cfg().force_tail;
            let _drain = if must { Some(lock(&slot.conn)) } else { None };
            let r = outcome(conn.checkpoint(CheckpointMode::Passive));
            drop(_drain);
            let took = t.elapsed().as_micros() as u64;
            let tell = {
                let mut st = lock(&slot.state);
                st.after_inline(action, r, rewinds, took, unix_ms());
                st.take_wake()
            };
            // the background schedules the idle TRUNCATE from the shard's state: tell it about
            // a shard it was never woken for (e.g. dirty from commits in external mode)
            if tell {
                wake();
            }
        }
    }
    let (limit, delay) = super::backpressure();
    if limit > 0 {
        // after the commit, outside SQLite's write lock: only this writer waits
        let d = lock(&slot.state).backpressure(limit, delay);
        if let Some(ms) = d {
            std::thread::sleep(Duration::from_millis(ms));
        }
    }
}

impl Drop for ShardHook {
    fn drop(&mut self) {
        unregister(&self.slot);
    }
}

/// Installs the WAL hook on `conn` and joins its file to the manager.
pub fn attach(conn: &mut Connection) {
    // shard connections wait at the gate before each write transaction (`wal::before_write`)
    let slot = register(conn.path(), true);
    walhook::install(conn, Box::new(ShardHook { slot }));
}

/// `gated`: every writer of this registration waits at the gate before a write transaction.
fn register(path: &str, gated: bool) -> Arc<Slot> {
    MANAGER.started.call_once(|| {
        if let Err(e) = std::thread::Builder::new().name("shardvt-wal".into()).spawn(run) {
            log(
                28,
                &format!(
                    "sharded: cannot start the WAL checkpoint thread ({e}); shard WALs are checkpointed only at 8000 frames"
                ),
            );
        }
    });
    let mut slots = lock(&MANAGER.slots);
    if let Some(s) = slots.iter().find(|s| s.path == path) {
        s.regs.fetch_add(1, Ordering::Relaxed);
        if !gated {
            lock(&s.state).gated = false; // one ungated writer: tails stay inline
        }
        return s.clone();
    }
    let s = Arc::new(Slot {
        path: path.to_string(),
        regs: AtomicUsize::new(1),
        state: Mutex::new(ShardWal { gated, ..ShardWal::default() }),
        conn: Mutex::new(ConnCell { conn: None, retired: false }),
        gate: Mutex::new(()),
        unsynced: std::sync::atomic::AtomicBool::new(false),
    });
    slots.push(s.clone());
    s
}

fn unregister(slot: &Arc<Slot>) {
    {
        let mut slots = lock(&MANAGER.slots);
        if slot.regs.fetch_sub(1, Ordering::Relaxed) != 1 {
            return;
        }
        slots.retain(|s| !Arc::ptr_eq(s, slot));
    }
    let mut cell = lock(&slot.conn);
    cell.retired = true;
    cell.conn = None;
}

/// Before a write transaction on `path`: waits while this process's manager holds that WAL's
/// write lock (a TRUNCATE or a background tail), and counts the wait as writer time.
/// Returns whether it waited.
pub fn wait_at_gate(path: &str) -> bool {
    if GATED.load(Ordering::Acquire) == 0 {
        return false;
    }
    let slot = lock(&MANAGER.slots).iter().find(|s| s.path == path).cloned();
    if let Some(s) = slot {
        let waited = match s.gate.try_lock() {
            Ok(_) => None,
            Err(std::sync::TryLockError::Poisoned(_)) => None,
            Err(std::sync::TryLockError::WouldBlock) => {
                let t = Instant::now();
                drop(lock(&s.gate));
                Some(t.elapsed().as_micros() as u64)
            }
        };
        if let Some(us) = waited {
            lock(&s.state).note_gate_wait(us);
            return true;
        }
    }
    false
}

/// Runs `f` on the slot's manager connection, opening it if needed (never creating the file).
fn with_conn(slot: &Slot, f: impl FnOnce(&Connection) -> Outcome) -> Outcome {
    let mut cell = lock(&slot.conn);
    if cell.retired {
        return Outcome::Failed;
    }
    if cell.conn.is_none() {
        match Connection::open(&slot.path, OPEN_READWRITE) {
            Ok(c) => {
                c.busy_timeout(0);
                if c.exec("PRAGMA synchronous=NORMAL").is_err() {
                    return Outcome::Failed;
                }
                cell.conn = Some(c);
            }
            Err(_) => return Outcome::Failed,
        }
    }
    lock(&slot.state).note_conn(now_ms());
    f(cell.conn.as_ref().expect("opened above"))
}

/// Whether the checkpoint thread syncs a database file after a checkpoint that stopped short of
/// the WAL's end (default on; `SHARDVT_SYNC_AFTER_DRAIN=0` turns it off, for comparisons).
fn sync_after_drain() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("SHARDVT_SYNC_AFTER_DRAIN").map(|v| v != "0").unwrap_or(true))
}

fn execute(slot: &Slot, job: Job) {
    let cfg = cfg();
    match job {
        Job::Close => {
            let mut cell = lock(&slot.conn);
            cell.conn = None;
            lock(&slot.state).after_close();
        }
        Job::Drain => {
            let rewinds = lock(&slot.state).counters.rewinds;
            let r = with_conn(slot, |c| {
                let before = c.wal_index_backfill();
                let r = walhook::checkpoint(c, CheckpointMode::Passive);
                // `log` is the WAL's end when the checkpoint began; SQLite decided whether to
                // sync the database file by the end at the moment it finished: read it again.
                let end = c.wal_index_header().map(|h| h[4]);
                if r.rc == 0 && r.ckpt >= 0 && sync_after_drain() {
                    let mut unsynced = slot.unsynced.load(Ordering::Acquire);
                    let sync = policy::sync_after_drain(cfg, &mut unsynced, before, r.ckpt as u32, end);
                    slot.unsynced.store(unsynced, Ordering::Release);
                    if sync {
                        if let Err(e) = c.sync_db_file() {
                            slot.unsynced.store(true, Ordering::Release);
                            log(e.code(), &format!("sharded: shard file {}: {e}", slot.path));
                            return Outcome::Failed;
                        }
                    }
                }
                outcome(r)
            });
            let warning = lock(&slot.state).after_drain(cfg, r, rewinds, now_ms(), unix_ms());
            if let Some(w) = warning {
                log(28, &format!("sharded: shard file {}: {w}", slot.path)); // SQLITE_WARNING
            }
        }
        Job::Tail => {
            let rewinds = lock(&slot.state).counters.rewinds;
            // First, outside the gate, copy what is there (PASSIVE: SQLite syncs the WAL before
            // it copies) and sync the database file, so that what remains for the part under
            // the gate is a few frames and two syncs with little to write: writers wait only
            // for that.
            let pre = with_conn(slot, |c| {
                let r = walhook::checkpoint(c, CheckpointMode::Passive);
                if r.rc == 0 && r.ckpt > 0 {
                    if let Err(e) = c.sync_db_file() {
                        slot.unsynced.store(true, Ordering::Release);
                        log(e.code(), &format!("sharded: shard file {}: {e}", slot.path));
                        return Outcome::Failed;
                    }
                    slot.unsynced.store(false, Ordering::Release);
                }
                outcome(r)
            });
            if pre == Outcome::Failed {
                lock(&slot.state).after_tail(cfg, pre, rewinds, 0, now_ms(), unix_ms());
                return;
            }
            GATED.fetch_add(1, Ordering::AcqRel);
            let gated = Instant::now();
            let r = {
                let _gate = lock(&slot.gate);
                with_conn(slot, |c| {
                    let r = outcome(walhook::checkpoint(c, CheckpointMode::Full));
                    if let Outcome::Done { log, ckpt } = r {
                        if ckpt >= log {
                            // it reached the WAL's end: SQLite synced the database file
                            slot.unsynced.store(false, Ordering::Release);
                        }
                    }
                    r
                })
            };
            GATED.fetch_sub(1, Ordering::AcqRel);
            let gated_us = gated.elapsed().as_micros() as u64;
            lock(&slot.state).after_tail(cfg, r, rewinds, gated_us, now_ms(), unix_ms());
        }
        Job::Truncate => {
            let commits = lock(&slot.state).counters.commits;
            GATED.fetch_add(1, Ordering::AcqRel);
            let r = {
                let _gate = lock(&slot.gate);
                with_conn(slot, |c| outcome(walhook::checkpoint(c, CheckpointMode::Truncate)))
            };
            GATED.fetch_sub(1, Ordering::AcqRel);
            lock(&slot.state).after_truncate(cfg, r, commits, now_ms(), unix_ms());
        }
    }
}

fn run() {
    loop {
        let slots: Vec<Arc<Slot>> = lock(&MANAGER.slots).clone();
        let states: Vec<ShardWal> = slots.iter().map(|s| *lock(&s.state)).collect();
        let (job, wake_at) = policy::next_job(cfg(), super::mode(), &states, now_ms());
        if let Some((i, job)) = job {
            let slot = slots[i].clone();
            drop(slots);
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execute(&slot, job)));
            continue;
        }
        drop(slots);
        let mut woken = lock(&MANAGER.wake);
        if !*woken {
            let ms = wake_at.map(|t| t.saturating_sub(now_ms())).unwrap_or(60_000).clamp(1, 60_000);
            woken = MANAGER.cv.wait_timeout(woken, Duration::from_millis(ms)).map(|r| r.0).unwrap_or_else(|p| p.into_inner().0);
        }
        *woken = false;
    }
}

pub fn stats_json(filter: Option<&str>) -> String {
    let slots: Vec<Arc<Slot>> = lock(&MANAGER.slots).clone();
    let mut items = Vec::new();
    for s in slots.iter() {
        if filter.is_some_and(|f| !s.path.contains(f)) {
            continue;
        }
        let st = *lock(&s.state);
        let wal_bytes = std::fs::metadata(format!("{}-wal", s.path)).map(|m| m.len()).unwrap_or(0);
        let c = st.counters;
        items.push(format!(
            "{{\"path\":{},\"wal_bytes\":{wal_bytes},\"frames\":{},\"backfilled\":{},\"unbackfillable_frames\":{},\
             \"connections\":{},\"commits\":{},\"checkpoints\":{{\"background\":{},\"tail\":{},\"inline\":{},\"truncate\":{}}},\
             \"background_tails\":{},\"gate_waits\":{},\"writer_checkpoint_us\":{},\"writer_checkpoint_max_us\":{},\"rewinds\":{},\"busy_retries\":{},\"pin_warnings\":{},\
             \"oldest_reader_ms\":{},\"throttled\":{},\"throttled_ms\":{},\"last_checkpoint_ms\":{}}}",
            json_str(&s.path),
            st.frames,
            st.backfilled,
            st.pinned,
            s.regs.load(Ordering::Relaxed),
            c.commits,
            c.background,
            c.tail,
            c.inline,
            c.truncate,
            c.background_tail,
            c.gate_waits,
            c.writer_ckpt_us,
            c.writer_ckpt_max_us,
            c.rewinds,
            c.busy_retries,
            c.pin_warnings,
            st.pinned_for_ms(now_ms()),
            c.throttled,
            c.throttled_ms,
            c.last_checkpoint_unix_ms.map(|t| t.to_string()).unwrap_or_else(|| "null".into()),
        ));
    }
    format!("[{}]", items.join(","))
}
