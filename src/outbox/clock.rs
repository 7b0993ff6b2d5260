//! The outbox commit clock: `<dir>/outbox.clock`, one 64-bit counter in a file every process
//! maps (`ffi::shm`), advanced with an atomic compare-and-swap — no file lock, no write
//! transaction, no system call per commit (it replaced an autocommit UPSERT on `outbox.db`,
//! which cost a WAL commit per host transaction).
//!
//! File format (ARCHITECTURE.md §8), 4096 bytes, native byte order (like SQLite's `-shm`):
//! bytes 0..8 the magic `MAGIC` (set by compare-and-swap from zero by the first opener),
//! bytes 8..16 the last allocated csn, the rest zero.
//!
//! `next(now)` = `max(last + 1, now)` with `now` the unix time in µs, so a csn is increasing
//! across all processes and readable as a time. The file is never fsynced: a power loss may
//! roll it back, and the time term keeps new csns above every csn handed out before (as long as
//! the system clock does not step back past them). Opening also raises the counter to a floor
//! (the consumers' acknowledged positions and the clock of older versions kept in
//! `outbox.db`), so a rolled-back file never hands out a csn at or below an acknowledged one.

use std::path::Path;
use std::sync::atomic::Ordering;

use crate::error::Result;
use crate::ffi::shm::SharedMap;

pub const CLOCK_FILE: &str = "outbox.clock";
const FILE_LEN: usize = 4096;
/// "SHVTCLK1" read as a little-endian integer.
const MAGIC: i64 = i64::from_le_bytes(*b"SHVTCLK1");
const CSN_AT: usize = 8;

pub struct Clock {
    map: SharedMap,
}

impl Clock {
    /// Opens (creating if needed) the clock file in `dir`, raised to at least `floor`.
    pub fn open(dir: &Path, floor: i64) -> Result<Clock> {
        let map = SharedMap::open_tagged(
            &dir.join(CLOCK_FILE),
            FILE_LEN,
            MAGIC,
            "outbox clock",
            " (remove it only if the table's outbox is not in use)",
        )?;
        map.atomic_i64(CSN_AT).fetch_max(floor, Ordering::SeqCst);
        Ok(Clock { map })
    }

    /// Allocates the next csn: `max(last + 1, now_us)`.
    pub fn next(&self, now_us: i64) -> i64 {
        let slot = self.map.atomic_i64(CSN_AT);
        let mut last = slot.load(Ordering::SeqCst);
        loop {
            let next = last.saturating_add(1).max(now_us);
            match slot.compare_exchange_weak(last, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// The last allocated csn (0 before the first).
    pub fn current(&self) -> i64 {
        self.map.atomic_i64(CSN_AT).load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("shardvt-clock-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn increasing_and_time_based() {
        let d = tmpdir("inc");
        let c = Clock::open(&d, 0).unwrap();
        assert_eq!(c.current(), 0);
        assert_eq!(c.next(1000), 1000);
        assert_eq!(c.next(1000), 1001); // same microsecond: +1
        assert_eq!(c.next(5), 1002); // clock stepped back: still increasing
        assert_eq!(c.next(2000), 2000);
        assert_eq!(c.current(), 2000);
        drop(c);
        // reopened (another process would see the same): continues; a floor only raises it
        let c = Clock::open(&d, 1500).unwrap();
        assert_eq!(c.current(), 2000);
        let c2 = Clock::open(&d, 9000).unwrap();
        assert_eq!(c.current(), 9000, "two mappings share one counter");
        assert_eq!(c2.next(0), 9001);
        assert_eq!(c.next(0), 9002);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn concurrent_allocations_are_unique() {
        let d = tmpdir("conc");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let d = d.clone();
                std::thread::spawn(move || {
                    let c = Clock::open(&d, 0).unwrap(); // one mapping per thread, like processes
                    (0..20_000).map(|_| c.next(7)).collect::<Vec<i64>>()
                })
            })
            .collect();
        let mut all: Vec<i64> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "every csn handed out once");
        assert_eq!(*all.last().unwrap(), 7 + n as i64 - 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn foreign_file_refused() {
        let d = tmpdir("foreign");
        std::fs::write(d.join(CLOCK_FILE), vec![0x41u8; FILE_LEN]).unwrap();
        let e = Clock::open(&d, 0).err().expect("refused");
        assert!(e.message.contains("not a libshardvt outbox clock"), "{}", e.message);
        let _ = std::fs::remove_dir_all(&d);
    }
}
