//! A shared, writable memory mapping of a small file (`mmap(MAP_SHARED)`), used by
//! `crate::outbox::clock` for the outbox commit clock and by `crate::shard::cut` for the table
//! of multi-shard commits in progress. Every process that maps the file sees
//! the same bytes; stores reach the page cache at once (they survive a crash of the process;
//! a power loss may drop them, which the clock tolerates by design).
//!
//! The only thing handed out is a `&AtomicI64` into the mapping: all access is atomic, so
//! several threads and processes may use it concurrently.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicI64;

use crate::error::{codes, Error, Result};

fn io_err(msg: String) -> Error {
    Error::sqlite(codes::IOERR, format!("sharded: {msg}"))
}

// The C library (linked by std on every Unix); constants are the same on Linux and macOS.
extern "C" {
    fn mmap(addr: *mut core::ffi::c_void, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut core::ffi::c_void;
    fn munmap(addr: *mut core::ffi::c_void, len: usize) -> i32;
}
const PROT_READ: i32 = 1;
const PROT_WRITE: i32 = 2;
const MAP_SHARED: i32 = 1;
const MAP_FAILED: *mut core::ffi::c_void = !0usize as *mut core::ffi::c_void;

/// A mapping of the first `len` bytes of a file (which must be at least that long).
pub struct SharedMap {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with other processes; it is only accessed through
// atomics (`atomic_i64`) or before it is shared (`bytes_mut` takes &mut self).
unsafe impl Send for SharedMap {}
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Opens (creating if needed, zero-filled to `len` bytes) the file at `path` and maps it;
    /// its first 8 bytes must be `magic` (set by compare-and-swap from zero by the first
    /// opener). `kind` names the file in errors ("outbox clock"); `foreign` is appended to the
    /// error for a file that holds something else.
    pub fn open_tagged(path: &std::path::Path, len: usize, magic: i64, kind: &str, foreign: &str) -> Result<SharedMap> {
        use std::sync::atomic::Ordering;
        let fail = |e: std::io::Error| Error::shard(format!("sharded: cannot open the {kind} {}: {e}", path.display()));
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(fail)?;
        if file.metadata().map_err(fail)?.len() < len as u64 {
            file.set_len(len as u64).map_err(fail)?; // zero-filled; racing openers set the same length
        }
        let map = SharedMap::new(&file, len)?;
        match map.atomic_i64(0).compare_exchange(0, magic, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => Ok(map),
            Err(m) if m == magic => Ok(map),
            Err(_) => Err(Error::catalog(format!("sharded: {} is not a libshardvt {kind}{foreign}", path.display()))),
        }
    }

    pub fn new(file: &File, len: usize) -> Result<SharedMap> {
        let have = file.metadata().map_err(|e| io_err(format!("cannot stat the clock file: {e}")))?.len();
        if have < len as u64 {
            return Err(io_err(format!("clock file is {have} bytes, expected at least {len}")));
        }
        // SAFETY: a fresh mapping of an open file descriptor; the kernel validates every argument.
        let p = unsafe { mmap(std::ptr::null_mut(), len, PROT_READ | PROT_WRITE, MAP_SHARED, file.as_raw_fd(), 0) };
        if p == MAP_FAILED || p.is_null() {
            return Err(io_err(format!("cannot map the clock file: {}", std::io::Error::last_os_error())));
        }
        Ok(SharedMap { ptr: p as *mut u8, len })
    }

    /// The 8-byte aligned slot at `offset` as an atomic (panics if out of range or unaligned:
    /// a programming error).
    pub fn atomic_i64(&self, offset: usize) -> &AtomicI64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.len, "clock slot out of range");
        // SAFETY: in bounds and aligned (mmap returns page-aligned memory); the mapping lives as
        // long as &self; AtomicI64 has the layout of i64 and all accesses to it are atomic.
        unsafe { &*(self.ptr.add(offset) as *const AtomicI64) }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no reference outlives &self.
        unsafe {
            munmap(self.ptr as *mut core::ffi::c_void, self.len);
        }
    }
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// Whether process `pid` exists (`kill(pid, 0)`: success or EPERM means it does). A pid that
/// does not fit an i32, or 0, is reported as not existing.
pub fn process_alive(pid: u32) -> bool {
    let Ok(p) = i32::try_from(pid) else { return false };
    if p <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for the process's existence; no memory is involved.
    let rc = unsafe { kill(p, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(1) // EPERM
}
