//! The `shardvt` VFS's decisions and counters (pure): per-file I/O statistics and fault plans.
//!
//! The VFS itself (`ffi::vfs`) is a thin pass-through over the default VFS used by every
//! connection the extension opens (shards, catalog, commit log). It decides nothing: on every
//! write, sync, truncate and checkpoint it reports here and asks here whether to inject a fault.
//!
//! Statistics are kept per database path (a `-wal` or `-journal` file reports under its
//! database's path) and per file class. Sync latencies go into a log₂ histogram of microseconds
//! (bucket i counts syncs that took < 2^i µs; the last bucket is everything slower).
//! Checkpoint copy time comes from `SQLITE_FCNTL_CKPT_START/DONE`, which SQLite sends to the
//! database file for every checkpoint by any connection that uses this VFS.
//!
//! Fault plans (for tests and benchmarks, set with `shardvt_fault(spec)`):
//! - `write:N` — the N-th write from now fails with SQLITE_IOERR_WRITE (once);
//! - `full:N` — the N-th write from now and every later one fail with SQLITE_FULL;
//! - `sync:N` — the N-th sync from now fails with SQLITE_IOERR_FSYNC (once);
//! - `sync_delay_us:D` — every sync sleeps D µs first (a slow-device model);
//! - `powerloss` — power-loss model: writes stay in memory, per file path and shared by every
//!   handle of the process, until that file is synced (`powerloss.rs`); a process killed with
//!   SIGKILL then loses exactly its unsynced writes. After such a kill, delete the files' `-shm`
//!   before reopening them (the wal-index is memory-mapped and describes the lost frames too);
//! - `path:S` — only files whose path contains S count and fail (and, with `powerloss`, are held);
//! - `off` — clears the plan. Specs combine with commas: `path:shard-0001,sync:3`. Each call
//!   replaces the whole plan (include `powerloss` again to keep the model on); turning
//!   `powerloss` off loses nothing (held bytes are written out at each file's next write, sync
//!   or close).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

pub mod overlay;
pub mod powerloss;

pub const VFS_NAME: &str = "shardvt";
pub const HIST_BUCKETS: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileClass {
    Db,
    Wal,
    Journal,
    Other,
}

impl FileClass {
    pub fn name(&self) -> &'static str {
        match self {
            FileClass::Db => "db",
            FileClass::Wal => "wal",
            FileClass::Journal => "journal",
            FileClass::Other => "other",
        }
    }
}

#[derive(Default)]
pub struct FileStats {
    pub reads: AtomicU64,
    pub bytes_read: AtomicU64,
    pub writes: AtomicU64,
    pub bytes_written: AtomicU64,
    pub syncs: AtomicU64,
    pub sync_us_total: AtomicU64,
    pub sync_hist: [AtomicU64; HIST_BUCKETS],
    pub truncates: AtomicU64,
    pub checkpoints: AtomicU64,
    pub checkpoint_us_total: AtomicU64,
}

impl FileStats {
    pub fn record_sync(&self, us: u64) {
        self.syncs.fetch_add(1, Relaxed);
        self.sync_us_total.fetch_add(us, Relaxed);
        let b = (64 - us.leading_zeros() as usize).min(HIST_BUCKETS - 1);
        self.sync_hist[b].fetch_add(1, Relaxed);
    }
}

type Key = (String, FileClass);

static STATS: Mutex<Vec<(Key, Arc<FileStats>)>> = Mutex::new(Vec::new());

/// The database path a file reports under (`x.db-wal` → `x.db`).
pub fn db_path_of(path: &str) -> String {
    for suffix in ["-wal", "-journal", "-shm"] {
        if let Some(p) = path.strip_suffix(suffix) {
            return p.to_string();
        }
    }
    path.to_string()
}

/// The counters of (database path, class), created on first use.
pub fn stats_for(path: &str, class: FileClass) -> Arc<FileStats> {
    let key = (db_path_of(path), class);
    let mut s = STATS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, st)) = s.iter().find(|(k, _)| *k == key) {
        return st.clone();
    }
    let st = Arc::new(FileStats::default());
    s.push((key, st.clone()));
    st
}

use crate::json::string as json_str;

/// All counters as a JSON array (one object per database path and file class), optionally only
/// for paths containing `filter`.
pub fn stats_json(filter: Option<&str>) -> String {
    let s = STATS.lock().unwrap_or_else(|p| p.into_inner());
    let mut items = Vec::new();
    for ((path, class), st) in s.iter() {
        if let Some(f) = filter {
            if !path.contains(f) {
                continue;
            }
        }
        let hist: Vec<String> = st
            .sync_hist
            .iter()
            .enumerate()
            .filter(|(_, c)| c.load(Relaxed) > 0)
            .map(|(i, c)| format!("\"lt_{}us\":{}", 1u64 << i, c.load(Relaxed)))
            .collect();
        items.push(format!(
            "{{\"path\":{},\"class\":\"{}\",\"reads\":{},\"bytes_read\":{},\"writes\":{},\"bytes_written\":{},\
             \"syncs\":{},\"sync_us_total\":{},\"sync_hist\":{{{}}},\"truncates\":{},\"checkpoints\":{},\
             \"checkpoint_us_total\":{}}}",
            json_str(path),
            class.name(),
            st.reads.load(Relaxed),
            st.bytes_read.load(Relaxed),
            st.writes.load(Relaxed),
            st.bytes_written.load(Relaxed),
            st.syncs.load(Relaxed),
            st.sync_us_total.load(Relaxed),
            hist.join(","),
            st.truncates.load(Relaxed),
            st.checkpoints.load(Relaxed),
            st.checkpoint_us_total.load(Relaxed),
        ));
    }
    format!("[{}]", items.join(","))
}

/// What the VFS should do with one write or sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    IoErr,
    Full,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct FaultPlan {
    pub path: Option<String>,
    pub write_at: Option<u64>,
    pub full_at: Option<u64>,
    pub sync_at: Option<u64>,
    pub sync_delay_us: u64,
    pub powerloss: bool,
    writes_seen: u64,
    syncs_seen: u64,
    full_active: bool,
}

impl FaultPlan {
    pub fn parse(spec: &str) -> Result<FaultPlan> {
        let mut p = FaultPlan::default();
        for part in spec.split(',').map(|s| s.trim()).filter(|s| !s.is_empty()) {
            if part == "off" {
                p = FaultPlan::default();
                continue;
            }
            if part == "powerloss" {
                p.powerloss = true;
                continue;
            }
            let (k, v) = part.split_once(':').ok_or_else(|| {
                Error::config(format!("shardvt_fault: bad item {part:?} (expected write:N, full:N, sync:N, sync_delay_us:N, powerloss, path:S or off)"))
            })?;
            let num = || -> Result<u64> {
                v.trim().parse().map_err(|_| Error::config(format!("shardvt_fault: {k} needs a number, got {v:?}")))
            };
            match k.trim() {
                "write" => p.write_at = Some(num()?.max(1)),
                "full" => p.full_at = Some(num()?.max(1)),
                "sync" => p.sync_at = Some(num()?.max(1)),
                "sync_delay_us" => p.sync_delay_us = num()?,
                "path" => p.path = Some(v.to_string()),
                _ => return Err(Error::config(format!("shardvt_fault: unknown item {k:?}"))),
            }
        }
        Ok(p)
    }

    fn applies(&self, path: &str) -> bool {
        self.path.as_deref().map(|f| path.contains(f)).unwrap_or(true)
    }

    pub fn on_write(&mut self, path: &str) -> Fault {
        if !self.applies(path) {
            return Fault::None;
        }
        self.writes_seen += 1;
        if self.full_active || self.full_at == Some(self.writes_seen) {
            self.full_active = true;
            return Fault::Full;
        }
        if self.write_at == Some(self.writes_seen) {
            return Fault::IoErr;
        }
        Fault::None
    }

    /// (delay in µs, fault)
    pub fn on_sync(&mut self, path: &str) -> (u64, Fault) {
        if !self.applies(path) {
            return (0, Fault::None);
        }
        self.syncs_seen += 1;
        let f = if self.sync_at == Some(self.syncs_seen) { Fault::IoErr } else { Fault::None };
        (self.sync_delay_us, f)
    }

    pub fn is_active(&self) -> bool {
        *self != FaultPlan::default() && (self.write_at.is_some() || self.full_at.is_some() || self.sync_at.is_some() || self.sync_delay_us > 0)
    }
}

static PLAN: Mutex<Option<FaultPlan>> = Mutex::new(None);
/// The one word the shim loads on every call to know whether anything beyond counting applies:
/// bit 0 a fault plan is active, bit 1 the power-loss mode is on, bits 2.. the number of files
/// whose overlay holds unsynced bytes (maintained by `powerloss`). Zero: plain pass-through.
pub(crate) static ENGAGED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
pub(crate) const ENGAGED_PLAN: usize = 1;
pub(crate) const ENGAGED_POWERLOSS: usize = 2;
pub(crate) const ENGAGED_ONE_HELD: usize = 4;

/// Whether the shim must ask the fault plan or the power-loss model (one relaxed load).
#[inline]
pub fn engaged() -> bool {
    ENGAGED.load(Relaxed) != 0
}

fn plan_active() -> bool {
    ENGAGED.load(Relaxed) & ENGAGED_PLAN != 0
}

pub fn set_fault_plan(p: FaultPlan) {
    powerloss::set_mode(p.powerloss, p.path.clone());
    let active = p.is_active();
    *PLAN.lock().unwrap_or_else(|e| e.into_inner()) = if active { Some(p) } else { None };
    if active {
        ENGAGED.fetch_or(ENGAGED_PLAN, Relaxed);
    } else {
        ENGAGED.fetch_and(!ENGAGED_PLAN, Relaxed);
    }
}

pub fn fault_on_write(path: &str) -> Fault {
    if !plan_active() {
        return Fault::None;
    }
    match PLAN.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        Some(p) => p.on_write(path),
        None => Fault::None,
    }
}

pub fn fault_on_sync(path: &str) -> (u64, Fault) {
    if !plan_active() {
        return (0, Fault::None);
    }
    match PLAN.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        Some(p) => p.on_sync(path),
        None => (0, Fault::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let mut p = FaultPlan::parse("path:shard-1, write:2, sync:1, sync_delay_us:5").unwrap();
        assert_eq!(p.on_write("/x/shard-0.db"), Fault::None);
        assert_eq!(p.on_write("/x/shard-1.db"), Fault::None);
        assert_eq!(p.on_write("/x/shard-1.db-wal"), Fault::IoErr);
        assert_eq!(p.on_write("/x/shard-1.db"), Fault::None);
        assert_eq!(p.on_sync("/x/shard-1.db"), (5, Fault::IoErr));
        assert_eq!(p.on_sync("/x/shard-1.db"), (5, Fault::None));
        let mut f = FaultPlan::parse("full:2").unwrap();
        assert_eq!(f.on_write("a"), Fault::None);
        assert_eq!(f.on_write("a"), Fault::Full);
        assert_eq!(f.on_write("a"), Fault::Full);
        assert!(FaultPlan::parse("bogus:1").is_err());
        assert!(FaultPlan::parse("write:x").is_err());
        assert!(!FaultPlan::parse("off").unwrap().is_active());
        let pl = FaultPlan::parse("path:shard-, powerloss").unwrap();
        assert!(pl.powerloss && pl.path.as_deref() == Some("shard-") && !pl.is_active());
        assert!(!FaultPlan::parse("powerloss,off").unwrap().powerloss);
        assert!(FaultPlan::parse("powerloss:1").is_err());
    }

    #[test]
    fn stats_keys_and_histogram() {
        assert_eq!(db_path_of("/a/b.db-wal"), "/a/b.db");
        let s = stats_for("/tmp/unit-test-x.db-wal", FileClass::Wal);
        s.record_sync(0);
        s.record_sync(3);
        s.record_sync(1000);
        assert_eq!(s.syncs.load(Relaxed), 3);
        let j = stats_json(Some("unit-test-x"));
        assert!(j.contains("\"class\":\"wal\"") && j.contains("\"lt_1us\":1") && j.contains("\"lt_4us\":1") && j.contains("\"lt_1024us\":1"), "{j}");
    }
}
