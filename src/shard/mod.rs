//! Shard storage: the catalog file and the shard connections.
//!
//! - `catalog`: `<dir>/catalog.db`, the table's durable description (format version, options,
//!   schema, shard files, bucket map, indexes, rowid high-water mark).
//! - `conn`: one connection per shard file with a prepared-statement cache and the shard's
//!   transaction/savepoint depth.

pub mod catalog;
pub mod conn;
pub mod scan;

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
