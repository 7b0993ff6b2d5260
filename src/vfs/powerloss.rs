//! The power-loss model of the `shardvt` VFS (fault item `powerloss`): writes do not reach a
//! file until that file is synced, so a process killed with SIGKILL loses exactly the writes it
//! never synced, as a power failure would.
//!
//! HOW IT WORKS. One [`Overlay`] per file path (the name SQLite opened the file with, i.e. its
//! full pathname), process-wide, so every handle of one file (a shard's own connection, the
//! commit log's, the catalog's, a checkpointing connection) sees the same unsynced bytes, like
//! an OS page cache. The shim (`ffi::vfs`) loads `crate::vfs::engaged()` on every call (one
//! relaxed atomic load; false unless a fault plan is active, the mode is on or some overlay still
//! holds bytes) and only then calls [`with_overlay`], which hands it the path's overlay under its
//! lock; the shim does the real I/O inside that closure, so a flush and a concurrent read of the
//! same file never interleave.
//!
//! What the shim does with the overlay (`applies` = the mode is on and the path passes the
//! plan's `path:` filter):
//!
//! | call        | overlay empty, !applies | otherwise                                           |
//! |-------------|-------------------------|-----------------------------------------------------|
//! | xWrite      | real write              | applies: into the overlay; !applies: flush, then real write |
//! | xRead       | real read               | real read, then the overlay on top                  |
//! | xFileSize   | real size               | max(real size, overlay end)                         |
//! | xTruncate   | real truncate           | real truncate and overlay truncate                  |
//! | xSync       | real sync               | flush (overlay → real file), then real sync         |
//! | xClose      | real close              | applies: keep the bytes (later handles see them); !applies: flush |
//! | xFetch      | real fetch (mmap)       | no mapping (`*pp = NULL`): every read goes through xRead |
//! | xDelete     | real delete             | the overlay is emptied, then real delete             |
//!
//! Turning the mode off (`shardvt_fault('off')`) therefore loses nothing: each file's held
//! bytes are written out at its next write, sync or close (and read correctly before that).
//!
//! The `-shm` wal-index is memory-mapped, not written through xWrite: after a simulated power
//! loss the files' `-shm` must be deleted before anyone opens them, so that SQLite rebuilds the
//! wal-index from what really reached the `-wal` files. The model is per process: while it is on,
//! no other process may use the same files (it would not see the held bytes).
//!
//! Invariants: an overlay is never removed from the registry (only emptied), so a handle can
//! never write into an overlay that another thread has just dropped; `crate::vfs::ENGAGED`
//! carries the mode bit and counts the overlays that hold bytes, maintained inside
//! [`with_overlay`] on every empty ↔ non-empty transition.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

pub use super::overlay::Overlay;

use super::{ENGAGED, ENGAGED_ONE_HELD as ONE_PENDING, ENGAGED_POWERLOSS as MODE_ON};

#[derive(Default)]
struct Registry {
    on: bool,
    filter: Option<String>,
    files: HashMap<String, Arc<Mutex<Overlay>>>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn registry<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    let mut g = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(Registry::default))
}

/// True when the mode is on or some file still holds unsynced bytes.
pub fn engaged() -> bool {
    ENGAGED.load(Relaxed) & !super::ENGAGED_PLAN != 0
}

/// Turns the mode on or off; `filter`: only paths containing it are held back.
pub fn set_mode(on: bool, filter: Option<String>) {
    registry(|r| {
        r.on = on;
        r.filter = filter;
        if on {
            ENGAGED.fetch_or(MODE_ON, Relaxed);
        } else {
            ENGAGED.fetch_and(!MODE_ON, Relaxed);
        }
    });
}

/// Runs `f(overlay, applies)` under the path's overlay lock when the path has an overlay holding
/// bytes or the mode applies to it (then the overlay is created if needed); `None` otherwise,
/// and the caller does the plain real operation.
pub fn with_overlay<R>(path: &str, f: impl FnOnce(&mut Overlay, bool) -> R) -> Option<R> {
    if path.is_empty() {
        return None;
    }
    let (ov, applies) = registry(|r| {
        let applies = r.on && r.filter.as_deref().map(|s| path.contains(s)).unwrap_or(true);
        let ov = if applies {
            Some(r.files.entry(path.to_string()).or_default().clone())
        } else {
            r.files.get(path).cloned()
        };
        (ov, applies)
    });
    let ov = ov?;
    let mut g = ov.lock().unwrap_or_else(|e| e.into_inner());
    let was_empty = g.is_empty();
    if was_empty && !applies {
        return None;
    }
    let out = f(&mut g, applies);
    match (was_empty, g.is_empty()) {
        (true, false) => {
            ENGAGED.fetch_add(ONE_PENDING, Relaxed);
        }
        (false, true) => {
            ENGAGED.fetch_sub(ONE_PENDING, Relaxed);
        }
        _ => {}
    }
    Some(out)
}

/// The file at `path` is being deleted: its held bytes go with it.
pub fn forget(path: &str) {
    let _ = with_overlay(path, |ov, _| {
        ov.take();
    });
}

/// Bytes held back for paths containing `filter` (tests, `shardvt_io_stats` may use it).
pub fn held_bytes(filter: &str) -> u64 {
    let files: Vec<Arc<Mutex<Overlay>>> =
        registry(|r| r.files.iter().filter(|(p, _)| p.contains(filter)).map(|(_, o)| o.clone()).collect());
    files.iter().map(|o| o.lock().unwrap_or_else(|e| e.into_inner()).bytes()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the registry is process-wide, and unit tests run in parallel threads.
    #[test]
    fn mode_overlays_and_pending_count() {
        let p = "/unit-test-powerloss/a.db-wal";
        assert_eq!(with_overlay(p, |_, _| ()), None, "mode off, nothing held: plain I/O");
        set_mode(true, Some("unit-test-powerloss".into()));
        assert!(engaged());
        assert_eq!(with_overlay("/elsewhere/b.db", |_, _| ()), None, "filtered out");
        assert_eq!(with_overlay(p, |ov, applies| {
            ov.write(0, b"hello");
            applies
        }), Some(true));
        assert_eq!(held_bytes("unit-test-powerloss"), 5);
        set_mode(false, None);
        assert!(engaged(), "bytes still held after the mode went off");
        // Mode off: the held bytes are still seen, and flushed by the next write/sync/close.
        let flushed = with_overlay(p, |ov, applies| {
            assert!(!applies);
            ov.take()
        });
        assert_eq!(flushed, Some(vec![(0, b"hello".to_vec())]));
        assert_eq!(with_overlay(p, |_, _| ()), None, "empty again: plain I/O");
        set_mode(true, Some("unit-test-powerloss".into()));
        with_overlay(p, |ov, _| ov.write(3, b"x"));
        forget(p);
        assert_eq!(held_bytes("unit-test-powerloss"), 0);
        set_mode(false, None);
        assert!(!engaged(), "no mode, nothing held");
    }
}
