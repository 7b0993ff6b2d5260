//! Consistent cuts across shards: a statement that reads several shards sees every multi-shard
//! commit either in all of them or in none.
//!
//! A multi-shard COMMIT makes its participants' changes visible one shard at a time (each shard
//! commits its own WAL transaction). A reader that takes its shard snapshots one after the
//! other could otherwise see a moved row twice, or not at all. The file `<dir>/commits.shm`
//! (ARCHITECTURE.md §8), mapped by every process (`ffi::shm`), coordinates both sides without a
//! lock or a system call on the fast path:
//!
//! - A committer claims a free slot (compare-and-swap 0 → its pid) before the first participant
//!   commits, and after the last one increments the generation counter, then frees the slot
//!   ([`Cut::window`], released by the guard's drop, also on error or panic).
//! - A reader (xFilter of a statement that visits 2+ shards, outside a write transaction):
//!   S1 waits until no slot is held, G1 reads the generation, then it opens every shard's
//!   snapshot, then S2 checks that no slot is held and G2 that the generation is still G1. If
//!   not, a commit window overlapped the snapshots: it closes them and starts again. Correct
//!   because a window that overlaps the snapshots either still holds its slot at S2, or freed
//!   it before S2, in which case it incremented the generation before that, hence before G2.
//! - A slot held by a process that no longer exists (it crashed inside a window; its
//!   transaction is then recovered from the redo log by the next statement), or held for more
//!   than [`MAX_WINDOW_SECS`] (its pid reused by a new process), is cleared by the first reader
//!   that waits more than [`STALE_CHECK`] for it. A reader that has waited
//!   [`MAX_WAIT`] for a live committer reads without the guarantee (and says so in
//!   `sqlite3_log`) rather than hang.
//!
//! Cost: a reader reads 64 slots and the counter twice per statement (one cache line each
//! time, normally); a committer two atomics per multi-shard commit. Single-shard statements
//! and commits do not take part (a shard's own snapshot is already consistent).

use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::ffi::shm::SharedMap;

pub const CUT_FILE: &str = "commits.shm";
const FILE_LEN: usize = 4096;
/// "SHVTCUT1" read as a little-endian integer.
const MAGIC: i64 = i64::from_le_bytes(*b"SHVTCUT1");
const GEN_AT: usize = 8;
const SLOTS_AT: usize = 64;
/// Concurrent multi-shard commits (over all processes) that can be in their window at once;
/// more wait for a free slot.
pub const SLOTS: usize = 64;
/// A reader waiting this long for a slot checks whether its process still exists.
pub const STALE_CHECK: Duration = Duration::from_millis(5);
/// A reader waiting this long for a live committer reads without the guarantee.
pub const MAX_WAIT: Duration = Duration::from_secs(1);

/// Consistent cuts are on unless `SHARDVT_CUT=0` is in the environment (read once; for
/// comparisons: statements then read each shard at its own point in time).
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("SHARDVT_CUT").map(|v| v.trim() != "0").unwrap_or(true))
}

/// A slot held longer than this is stale whatever its pid says (no commit window lasts that
/// long; the pid may have been reused by a new process after the committer died).
pub const MAX_WINDOW_SECS: u32 = 30;

pub struct Cut {
    map: SharedMap,
    pid: u32,
}

fn now_secs() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0)
}

/// A held slot's value: the committer's pid in the high 32 bits, the low 32 bits of the unix
/// time (seconds) it claimed the slot in the low ones (never 0: pids are positive).
fn slot_value(pid: u32, secs: u32) -> i64 {
    (i64::from(pid) << 32) | i64::from(secs)
}

/// A committer's claim ([`Cut::window`]); dropping it ends the window.
pub struct Window {
    cut: Rc<Cut>,
    slot: usize,
}

impl Drop for Window {
    fn drop(&mut self) {
        self.cut.map.atomic_i64(GEN_AT).fetch_add(1, Ordering::SeqCst);
        self.cut.slot(self.slot).store(0, Ordering::SeqCst);
    }
}

fn pause(waited: Duration) {
    if waited < Duration::from_micros(200) {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_micros(20));
    }
}

impl Cut {
    /// Opens (creating if needed) the file in `dir`.
    pub fn open(dir: &Path) -> Result<Cut> {
        let map = SharedMap::open_tagged(&dir.join(CUT_FILE), FILE_LEN, MAGIC, "commit table", "")?;
        Ok(Cut { map, pid: std::process::id() })
    }

    fn slot(&self, i: usize) -> &std::sync::atomic::AtomicI64 {
        self.map.atomic_i64(SLOTS_AT + 8 * i)
    }

    /// Committer: claims a slot for the duration of the returned guard (waits while all are held).
    pub fn window(self: &Rc<Self>) -> Window {
        let start = Instant::now();
        loop {
            let mine = slot_value(self.pid, now_secs());
            for i in 0..SLOTS {
                if self.slot(i).compare_exchange(0, mine, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                    return Window { cut: Rc::clone(self), slot: i };
                }
            }
            self.clear_stale(start.elapsed());
            pause(start.elapsed());
        }
    }

    /// The first held slot: (index, holder's pid).
    fn held(&self) -> Option<(usize, i64)> {
        (0..SLOTS).find_map(|i| match self.slot(i).load(Ordering::SeqCst) {
            0 => None,
            v => Some((i, v)),
        })
    }

    /// Frees the slots of processes that no longer exist, and slots held for more than
    /// MAX_WINDOW_SECS, once `waited` is past STALE_CHECK.
    fn clear_stale(&self, waited: Duration) {
        if waited < STALE_CHECK {
            return;
        }
        let now = now_secs();
        for i in 0..SLOTS {
            let v = self.slot(i).load(Ordering::SeqCst);
            if v == 0 {
                continue;
            }
            let (pid, since) = ((v >> 32) as u32, v as u32);
            let expired = now.wrapping_sub(since) > MAX_WINDOW_SECS && since.wrapping_sub(now) > MAX_WINDOW_SECS;
            if expired || (pid != self.pid && !crate::ffi::shm::process_alive(pid)) {
                // its window never ended: count it as ended (the reader's G1 is read after this)
                self.map.atomic_i64(GEN_AT).fetch_add(1, Ordering::SeqCst);
                let _ = self.slot(i).compare_exchange(v, 0, Ordering::SeqCst, Ordering::SeqCst);
            }
        }
    }

    /// Reader, before opening its snapshots (S1, G1): waits until no commit window is open and
    /// returns the generation. None: it waited MAX_WAIT for a live committer.
    pub fn quiet(&self) -> Option<i64> {
        let start = Instant::now();
        loop {
            if self.held().is_none() {
                return Some(self.map.atomic_i64(GEN_AT).load(Ordering::SeqCst));
            }
            let waited = start.elapsed();
            if waited >= MAX_WAIT {
                return None;
            }
            self.clear_stale(waited);
            pause(waited);
        }
    }

    /// Reader, after opening its snapshots (S2, G2): true if they form a consistent cut.
    pub fn unchanged(&self, gen: i64) -> bool {
        self.held().is_none() && self.map.atomic_i64(GEN_AT).load(Ordering::SeqCst) == gen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("shardvt-cut-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_window_overlapping_the_snapshots_is_detected() {
        let d = dir("overlap");
        let (w, r) = (Rc::new(Cut::open(&d).unwrap()), Cut::open(&d).unwrap()); // two mappings, like two processes
        // nothing in between: consistent
        let g = r.quiet().unwrap();
        assert!(r.unchanged(g));
        // a window still open at S2
        let g = r.quiet().unwrap();
        let win = w.window();
        assert!(!r.unchanged(g));
        drop(win);
        // a window that opened and closed between G1 and S2
        assert!(!r.unchanged(g));
        let g = r.quiet().unwrap();
        assert!(r.unchanged(g));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_reader_waits_for_an_open_window() {
        let d = dir("wait");
        let w = Rc::new(Cut::open(&d).unwrap());
        let win = w.window();
        let d2 = d.clone();
        let t = std::thread::spawn(move || {
            let r = Cut::open(&d2).unwrap();
            let start = Instant::now();
            let g = r.quiet().unwrap();
            (start.elapsed(), g)
        });
        std::thread::sleep(Duration::from_millis(30));
        drop(win);
        let (waited, g) = t.join().unwrap();
        assert!(waited >= Duration::from_millis(25), "{waited:?}");
        assert_eq!(g, 1); // read after the window ended
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_slot_left_by_a_dead_process_is_cleared() {
        let d = dir("stale");
        let r = Cut::open(&d).unwrap();
        // a pid that does not exist (above the kernel's maximum)
        r.slot(3).store(slot_value(i32::MAX as u32, now_secs()), Ordering::SeqCst);
        let start = Instant::now();
        let g = r.quiet().unwrap();
        assert!(start.elapsed() < MAX_WAIT);
        assert_eq!(r.slot(3).load(Ordering::SeqCst), 0);
        assert!(r.unchanged(g));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn windows_take_distinct_slots() {
        let d = dir("slots");
        let c = Rc::new(Cut::open(&d).unwrap());
        let a = c.window();
        let b = c.window();
        assert_ne!(a.slot, b.slot);
        drop((a, b));
        assert!(c.held().is_none());
        assert_eq!(c.map.atomic_i64(GEN_AT).load(Ordering::SeqCst), 2);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let d = dir("foreign");
        std::fs::write(d.join(CUT_FILE), vec![7u8; FILE_LEN]).unwrap();
        assert!(Cut::open(&d).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_slot_held_too_long_is_cleared_even_if_its_pid_lives() {
        let d = dir("expired");
        let r = Cut::open(&d).unwrap();
        // our own pid (alive), claimed long ago: the pid was reused, or the window is stuck
        r.slot(5).store(slot_value(std::process::id(), now_secs().wrapping_sub(MAX_WINDOW_SECS + 5)), Ordering::SeqCst);
        // and one of another live process, claimed just now: a real window, waited for
        r.slot(6).store(slot_value(1, now_secs()), Ordering::SeqCst);
        let w = Rc::new(Cut::open(&d).unwrap());
        r.clear_stale(STALE_CHECK);
        assert_eq!(r.slot(5).load(Ordering::SeqCst), 0);
        assert_ne!(r.slot(6).load(Ordering::SeqCst), 0); // pid 1 (init) exists
        r.slot(6).store(0, Ordering::SeqCst);
        let win = w.window();
        assert_eq!(win.cut.slot(win.slot).load(Ordering::SeqCst) >> 32, i64::from(std::process::id()));
        drop(win);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
