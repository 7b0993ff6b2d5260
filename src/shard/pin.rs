//! Pinned read snapshots: a shard read transaction kept open across host statements while the
//! shard is unchanged, so a burst of small statements (point lookups, `ORDER BY … LIMIT`) does
//! not pay for a new read transaction per shard per statement.
//!
//! WHY. Starting a WAL read transaction costs two `fcntl` calls on the `-shm` file and an
//! `fstat` (about 1.8 µs here), ending it one more `fcntl`: more than the lookup itself. An
//! `ORDER BY v DESC LIMIT 10` over 8 shards paid that 8 times for 10 rows.
//!
//! HOW. Outside a write transaction the cursor reads a shard through its [`Pinned`] connection
//! (a second connection to the shard file, read-only by use). The first statement on it runs
//! `BEGIN` (deferred: the snapshot is taken by the statement's first step) after reading the
//! shard's WAL-index header from shared memory (`Connection::wal_index_header`, see `watch`).
//! A later statement reuses the open transaction only if the header still equals that copy:
//! every commit, by any connection or process, rewrites the header (iChange grows, a WAL
//! restart changes the salts), so an unchanged header means no commit since the copy was read,
//! which was before the snapshot was taken: the snapshot is the newest state, exactly what a
//! new read transaction would see. Otherwise the transaction is ended and a new one begun.
//! While a statement of the connection is still running, a new statement shares its snapshot,
//! as statements of one SQLite connection do.
//!
//! QUIET SHARDS ONLY. A snapshot taken while the WAL holds frames not yet copied into the
//! database holds a WAL read mark above 0, which keeps checkpoints from rewinding or truncating
//! the WAL; a reader that never stops would then let the WAL grow. So a pin is begun only when
//! the shard's WAL is fully copied (`nBackfill == mxFrame`): the snapshot then takes read mark
//! 0, which blocks no rewind and no TRUNCATE. It does block the copying of frames committed
//! later, until the next statement sees the changed header and ends the pin (or the reaper
//! does). A shard under writes therefore reads with one read transaction per statement.
//!
//! RELEASE. An open read transaction holds a WAL read lock. So a pin lasts only while it is used:
//! a reaper thread ends every pin unused for [`IDLE_US`] (1 ms), the way a reader that starts
//! one read transaction per statement would leave gaps between statements. The reaper and the
//! host thread never use the connection at once: `users` counts the host's running statements
//! on it (the host thread changes the snapshot only when it is the first user); the reaper
//! claims the connection by swapping `users` from 0 to [`RELEASING`], ends the transaction and
//! sets it back to 0, and a host thread that finds [`RELEASING`] waits the few microseconds
//! that takes. The connection is `SQLITE_OPEN_NOMUTEX`: this protocol keeps the reaper off it
//! while the host's statements run (they are stepped outside `state`'s mutex, which only
//! guards the short accesses: taking and giving statements, beginning and ending the pin).
//!
//! MAPPED READS. A pinned connection maps its shard file (`PRAGMA mmap_size`,
//! [`PIN_MMAP_BYTES`]): a page missing from its page cache is then read from the OS page cache
//! in place instead of through a `pread` copy. Point lookups (`WHERE k = ?`, about ten rows at
//! random places of the table) went from about 19.6 to 15.4 µs here. SQLite's own caveats of
//! memory-mapped I/O apply (an I/O error on a mapped page is a signal, not an error code; touched
//! mapped pages count in the process's RSS as file-backed, reclaimable memory). The shards' own
//! (write) connections and the full-scan workers do not map.
//!
//! `SHARDVT_PIN=0` in the environment turns pinning off (every statement then reads through
//! the shard's own connection, as before); so does a host SQLite built without thread safety.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::error::Result;

use super::conn::ShardConn;

/// `PRAGMA mmap_size` of a pinned connection (see MAPPED READS).
pub const PIN_MMAP_BYTES: u64 = 256 << 20;

/// A pin unused this long is ended by the reaper (`SHARDVT_PIN_IDLE_US` overrides it, for tests).
pub const IDLE_US: u64 = 1000;

fn idle_us() -> u64 {
    static V: OnceLock<u64> = OnceLock::new();
    *V.get_or_init(|| std::env::var("SHARDVT_PIN_IDLE_US").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(IDLE_US))
}
/// `users` while the reaper ends the pin.
const RELEASING: usize = usize::MAX;

/// Whether pinned reads are on, decided once per process: off with `SHARDVT_PIN=0`, and off
/// when the host SQLite library is not thread-safe (the reaper calls it from its own thread).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("SHARDVT_PIN").map(|v| v.trim() != "0").unwrap_or(true) && crate::ffi::api::host_threadsafe()
    })
}

struct State {
    conn: ShardConn,
    /// the WAL-index header read before the open `BEGIN`; None: no transaction is open
    header: Option<[u32; 12]>,
}

pub struct Pinned {
    users: AtomicUsize,
    /// a read transaction is open (the reaper's cheap filter)
    pinned: AtomicBool,
    /// in the reaper's list (changed under the list's lock)
    listed: AtomicBool,
    last_used_us: AtomicU64,
    state: Mutex<State>,
}

/// The reaper's clock, read by the host thread instead of the system clock: `now_us()` as of the
/// reaper's last pass (or the last pin registration). A statement's `leave` only stores it (no
/// clock read per shard); a pin therefore ends between `idle_us` and `idle_us` plus one reaper
/// period (`idle_us / 2`) after its last use.
static TICK: AtomicU64 = AtomicU64::new(0);

fn now_us() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

impl Pinned {
    pub fn new(conn: ShardConn) -> Arc<Pinned> {
        Arc::new(Pinned {
            users: AtomicUsize::new(0),
            pinned: AtomicBool::new(false),
            listed: AtomicBool::new(false),
            last_used_us: AtomicU64::new(0),
            state: Mutex::new(State { conn, header: None }),
        })
    }

    /// Host thread, before a statement: claims the connection and, as its first user, makes
    /// the open snapshot the newest one (see the file header). The claim ends when the
    /// returned guard is dropped: after the statement was reset (given back or finalized).
    /// `f` runs on the connection under the same lock (a statement taken from its cache: one
    /// lock per shard per statement instead of two).
    pub fn enter_with<R>(self: &Arc<Self>, f: impl FnOnce(&mut ShardConn) -> Result<R>) -> Result<(Claim, R)> {
        let first = loop {
            let n = self.users.load(Ordering::Acquire);
            if n == RELEASING {
                std::hint::spin_loop();
                continue;
            }
            if self.users.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                break n == 0;
            }
        };
        let claim = Claim(self.clone());
        let mut guard = self.lock();
        let st = &mut *guard;
        if !first {
            return f(&mut st.conn).map(|r| (claim, r));
        }
        let now = st.conn.conn.wal_index_header().filter(|h| h[0] != 0);
        if st.header.is_some() && st.header == now && st.conn.conn.in_transaction() {
            // nothing committed since the snapshot was taken
            return f(&mut st.conn).map(|r| (claim, r));
        }
        let r = (|| {
            if st.conn.conn.in_transaction() {
                st.conn.conn.exec("COMMIT")?;
            }
            st.header = None;
            self.pinned.store(false, Ordering::Release);
            // Pin only a quiet shard: its WAL fully copied into the database (nBackfill ==
            // mxFrame, word 4 of the header), so the snapshot takes read mark 0, which keeps
            // neither a TRUNCATE nor a WAL rewind from happening. While a shard is being
            // written, each statement takes its own read transaction, as without pins.
            let quiet = now.is_some_and(|h| st.conn.conn.wal_index_backfill() == Some(h[4]));
            if quiet {
                st.conn.conn.exec("BEGIN")?;
                st.header = now;
                self.pinned.store(true, Ordering::Release);
                wake_reaper(self);
            }
            Ok(())
        })();
        let r = r.and_then(|_| f(&mut st.conn));
        drop(guard);
        r.map(|r| (claim, r))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Host thread, after a statement (reset and given back): see [`Claim`].
    fn leave(&self) {
        self.last_used_us.store(TICK.load(Ordering::Relaxed), Ordering::Release);
        self.users.fetch_sub(1, Ordering::AcqRel);
    }

    /// Reaper: ends the pin if it is unused and idle; true if it still holds one.
    fn reap(&self, now: u64) -> bool {
        if !self.pinned.load(Ordering::Acquire) {
            return false;
        }
        if now.saturating_sub(self.last_used_us.load(Ordering::Acquire)) < idle_us()
            || self.users.compare_exchange(0, RELEASING, Ordering::AcqRel, Ordering::Acquire).is_err()
        {
            return true;
        }
        // users == RELEASING: the host waits in `enter_with` until we are done
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.conn.conn.in_transaction() {
            let _ = st.conn.conn.exec("COMMIT");
        }
        st.header = None;
        self.pinned.store(false, Ordering::Release);
        drop(guard);
        self.users.store(0, Ordering::Release);
        false
    }

    /// Table side: drop the pin and close the connection now (before its files are removed or
    /// renamed), waiting for a reaper pass that holds a reference. (Cursors, which hold claims,
    /// are closed before a table is; should one still hold a claim, the connection closes with
    /// its last reference instead, after at most a second of waiting.)
    pub fn close(mut this: Arc<Self>) {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            match Arc::try_unwrap(this) {
                Ok(p) => {
                    drop(p);
                    return;
                }
                Err(a) if Instant::now() < deadline => {
                    this = a;
                    std::thread::yield_now();
                }
                Err(_) => return,
            }
        }
    }
}

/// A host statement's claim on a [`Pinned`] connection (from `enter_with`); dropping it ends the
/// claim. Drop it only after the statement is reset or finalized.
pub struct Claim(Arc<Pinned>);

impl Claim {
    /// Runs `f` on the claimed connection.
    pub fn with<R>(&self, f: impl FnOnce(&mut ShardConn) -> R) -> R {
        f(&mut self.0.lock().conn)
    }

    /// Runs `f` on the connection, then ends the claim (a finished statement given back to the
    /// cache, under one lock).
    pub fn finish(self, f: impl FnOnce(&mut ShardConn)) {
        self.with(f);
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.leave();
    }
}

struct Reaper {
    pins: Mutex<Vec<Weak<Pinned>>>,
    wake: Condvar,
}

fn reaper() -> &'static Reaper {
    static R: OnceLock<Reaper> = OnceLock::new();
    R.get_or_init(|| {
        std::thread::Builder::new()
            .name("shardvt-pin".into())
            .spawn(run_reaper)
            .expect("spawn the shardvt pin reaper");
        Reaper { pins: Mutex::new(Vec::new()), wake: Condvar::new() }
    })
}

fn wake_reaper(p: &Arc<Pinned>) {
    let r = reaper();
    let mut pins = r.pins.lock().unwrap_or_else(|e| e.into_inner());
    TICK.store(now_us(), Ordering::Relaxed);
    if !p.listed.swap(true, Ordering::AcqRel) {
        pins.push(Arc::downgrade(p));
        r.wake.notify_one();
    }
}

fn run_reaper() {
    // a panic here must not unwind into anything: catch it and stop reaping (pins then last
    // until their next use, as before this thread existed)
    let _ = std::panic::catch_unwind(|| {
        let r = reaper();
        let mut pins = r.pins.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let live: Vec<Arc<Pinned>> = pins.iter().filter_map(Weak::upgrade).collect();
            drop(pins);
            let now = now_us();
            TICK.store(now, Ordering::Relaxed);
            for p in &live {
                p.reap(now);
            }
            drop(live);
            pins = r.pins.lock().unwrap_or_else(|e| e.into_inner());
            // keep the pins still held (also any registered meanwhile)
            pins.retain(|w| {
                w.upgrade().is_some_and(|p| {
                    let keep = p.pinned.load(Ordering::Acquire);
                    if !keep {
                        p.listed.store(false, Ordering::Release);
                    }
                    keep
                })
            });
            pins = if pins.is_empty() {
                r.wake.wait(pins).unwrap_or_else(|e| e.into_inner())
            } else {
                r.wake.wait_timeout(pins, Duration::from_micros((idle_us() / 2).clamp(100, 100_000))).unwrap_or_else(|e| e.into_inner()).0
            };
        }
    });
}
