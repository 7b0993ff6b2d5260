//! Shard storage: the catalog file and the shard connections.
//!
//! - `catalog`: `<dir>/catalog.db`, the table's durable description (format version, options,
//!   schema, shard files, bucket map, indexes, rowid high-water mark).
//! - `conn`: one connection per shard file with a prepared-statement cache and the shard's
//!   transaction/savepoint depth.
//! - `scan`: parallel scans on worker threads, which hand rows over in packed `batch`es;
//!   `pin`: pinned read connections; `cut`: consistent cuts across shards; `watch`: file changes.

pub mod batch;
pub mod catalog;
pub mod conn;
pub mod cut;
pub mod pin;
pub mod scan;
pub mod watch;

/// An error about one of the table's files, in words that name the file and the likely fix.
/// `what` is e.g. "shard file" or "catalog".
pub fn file_error(e: crate::error::Error, what: &str, path: &std::path::Path) -> crate::error::Error {
    let hint = match e.code() & 0xff {
        8 | 14 => "is its folder read-only or not accessible? check the permissions and mounts of the folder",
        11 | 26 => "the file is corrupt or not a libshardvt file; restore it from a backup",
        13 => "the disk is full",
        _ => "",
    };
    let message = if hint.is_empty() {
        format!("sharded: {what} {}: {}", path.display(), e.message)
    } else {
        format!("sharded: {what} {}: {} ({hint})", path.display(), e.message)
    };
    crate::error::Error { message, ..e }
}

/// (device, inode, hard-link count) of a file.
pub fn file_identity(path: &std::path::Path) -> std::io::Result<(u64, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino(), m.nlink()))
}

/// The name of the table inside every shard file.
pub const SHARD_TABLE: &str = "data";
/// Default busy timeout for shard and catalog connections, in milliseconds.
pub const BUSY_TIMEOUT_MS: i32 = 5000;

/// fsyncs the given WAL files concurrently (one thread per file after the first, which is
/// synced on the calling thread); the first error, if any.
pub fn sync_wals_parallel(handles: Vec<crate::ffi::api::WalHandle>) -> crate::error::Result<()> {
    let mut it = handles.into_iter();
    let Some(first) = it.next() else { return Ok(()) };
    std::thread::scope(|s| {
        let workers: Vec<_> = it.map(|h| s.spawn(move || h.sync())).collect();
        let mut r = first.sync();
        for w in workers {
            let wr = w.join().unwrap_or_else(|_| Err(crate::error::Error::internal("sharded: WAL sync thread panicked")));
            if r.is_ok() {
                r = wr;
            }
        }
        r
    })
}

/// The sleep before retry number `count` (0, 1, ...) of a statement that found a shard locked:
/// 20 µs doubling to 1 ms (a shard transaction usually holds its lock for tens of µs; SQLite's
/// own busy handler starts at 1 ms).
pub fn busy_step(count: u32) -> std::time::Duration {
    std::time::Duration::from_micros((20u64 << count.min(10)).min(1000))
}

#[cfg(test)]
mod busy_tests {
    #[test]
    fn busy_steps_grow_then_cap() {
        let us: Vec<u128> = (0..9).map(|c| super::busy_step(c).as_micros()).collect();
        assert_eq!(us, vec![20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        assert_eq!(super::busy_step(u32::MAX).as_micros(), 1000);
    }
}
