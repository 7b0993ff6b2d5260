//! The `shardvt` VFS: a pass-through shim over the process's default VFS.
//!
//! Every method forwards to the default VFS unchanged (return codes, sector size, device
//! characteristics, shared memory and memory-mapped I/O included). Writes, syncs, truncates and
//! checkpoint file-controls are counted in `crate::vfs` and may be failed or delayed by its fault
//! plan. Under the fault plan's `powerloss` item (`crate::vfs::powerloss`, which holds the
//! decisions and its table of calls) xWrite/xRead/xFileSize/xTruncate/xSync/xClose/xFetch and
//! xDelete also go through the path's in-memory overlay of unsynced bytes: the shim only does the
//! real I/O the model asks for, inside `with_overlay` (the overlay's lock). Only persistent files
//! (main database, `-wal`, `-journal`, super-journal, with a name, not delete-on-close) take
//! part; temporary files never do. With the model off and nothing held, the added cost is one
//! relaxed atomic load per call. The shim decides nothing else.
//!
//! Layout of an open file: `ShimFile { base: sqlite3_file, stats, path, ckpt_start, durable, shm0, real }` where
//! `real` is the start of the underlying VFS's file object (`szOsFile` of the default VFS), so
//! our `szOsFile` is the header plus theirs. Our `pMethods` mirrors the underlying file's
//! io-methods version (1, 2 or 3) so SQLite only calls what the real file supports.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use libsqlite3_sys as sys;

use crate::vfs::powerloss::{self, Overlay};
use crate::vfs::{fault_on_sync, fault_on_write, stats_for, Fault, FileClass, FileStats};

#[repr(C)]
struct ShimFile {
    base: sys::sqlite3_file,
    stats: *const FileStats,
    path: *mut String,
    ckpt_start: Option<Instant>,
    /// Takes part in the power-loss model (a named, persistent file).
    durable: bool,
    /// Region 0 of the WAL index as the real xShmMap returned it (null: not mapped). Read by
    /// `wal_index_region0` (lock-free change checks, `shard::watch`).
    shm0: *mut c_void,
    _align: u64,
    // followed by the real file (szOsFile of the underlying VFS)
}

struct Registered {
    vfs: usize,  // *mut sqlite3_vfs (ours)
    real: usize, // *mut sqlite3_vfs (the default)
}

static VFS: OnceLock<Registered> = OnceLock::new();

fn real_vfs() -> *mut sys::sqlite3_vfs {
    VFS.get().map(|r| r.real as *mut sys::sqlite3_vfs).unwrap_or(std::ptr::null_mut())
}

/// SAFETY: f is a ShimFile opened by x_open.
unsafe fn real_file(f: *mut sys::sqlite3_file) -> *mut sys::sqlite3_file {
    (f as *mut u8).add(std::mem::size_of::<ShimFile>()) as *mut sys::sqlite3_file
}

unsafe fn real_methods(f: *mut sys::sqlite3_file) -> &'static sys::sqlite3_io_methods {
    &*(*real_file(f)).pMethods
}

unsafe fn shim<'a>(f: *mut sys::sqlite3_file) -> &'a mut ShimFile {
    &mut *(f as *mut ShimFile)
}

unsafe fn stats<'a>(f: *mut sys::sqlite3_file) -> Option<&'a FileStats> {
    let s = shim(f).stats;
    if s.is_null() {
        None
    } else {
        Some(&*s)
    }
}

unsafe fn path<'a>(f: *mut sys::sqlite3_file) -> &'a str {
    let p = shim(f).path;
    if p.is_null() {
        ""
    } else {
        (*p).as_str()
    }
}

macro_rules! fwd {
    ($f:expr, $m:ident $(, $a:expr)*) => {
        match real_methods($f).$m {
            Some(m) => m(real_file($f) $(, $a)*),
            None => sys::SQLITE_IOERR,
        }
    };
}

/// Runs `f` with the file's overlay when the power-loss model concerns this file (see
/// `crate::vfs::powerloss`); `None`: do the plain real operation. A panic becomes SQLITE_IOERR.
/// SAFETY: f is a ShimFile opened by x_open.
unsafe fn with_overlay(f: *mut sys::sqlite3_file, op: impl FnOnce(&mut Overlay, bool) -> c_int) -> Option<c_int> {
    if !crate::vfs::engaged() || !shim(f).durable {
        return None;
    }
    let p = path(f);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| powerloss::with_overlay(p, op))).unwrap_or(Some(sys::SQLITE_IOERR))
}

/// Largest write handed to the real VFS: SQLite's own writes are at most a page plus a frame
/// header, and the unix VFS masks a write's length with 0x1ffff (`seekAndWriteFd`).
const FLUSH_CHUNK: usize = 1 << 16;

/// Writes every held extent to the real file (no sync); on failure the unwritten ones are kept.
/// SAFETY: f is a ShimFile opened by x_open; called under the overlay's lock.
unsafe fn flush(f: *mut sys::sqlite3_file, ov: &mut Overlay) -> c_int {
    let extents = ov.take();
    for (i, (off, data)) in extents.iter().enumerate() {
        for (k, chunk) in data.chunks(FLUSH_CHUNK).enumerate() {
            let at = *off + (k * FLUSH_CHUNK) as u64;
            let rc = fwd!(f, xWrite, chunk.as_ptr() as *const c_void, chunk.len() as c_int, at as sys::sqlite3_int64);
            if rc != sys::SQLITE_OK {
                ov.restore(extents[i..].to_vec());
                return rc;
            }
        }
    }
    sys::SQLITE_OK
}

/// The real file's size, or an error code.
/// SAFETY: f is a ShimFile opened by x_open.
unsafe fn real_size(f: *mut sys::sqlite3_file) -> Result<u64, c_int> {
    let mut n: sys::sqlite3_int64 = 0;
    match fwd!(f, xFileSize, &mut n) {
        sys::SQLITE_OK => Ok(n.max(0) as u64),
        rc => Err(rc),
    }
}

unsafe extern "C" fn x_close(f: *mut sys::sqlite3_file) -> c_int {
    // Power-loss model off: bytes still held for this file are written out now (the OS would
    // have them); on: they stay held for later handles of the path, and die with the process.
    let flushed = with_overlay(f, |ov, applies| if applies { sys::SQLITE_OK } else { flush(f, ov) });
    let rc = fwd!(f, xClose);
    let s = shim(f);
    if !s.stats.is_null() {
        drop(Arc::from_raw(s.stats));
        s.stats = std::ptr::null();
    }
    if !s.path.is_null() {
        drop(Box::from_raw(s.path));
        s.path = std::ptr::null_mut();
    }
    match flushed {
        Some(e) if e != sys::SQLITE_OK => e,
        _ => rc,
    }
}

unsafe extern "C" fn x_read(f: *mut sys::sqlite3_file, buf: *mut c_void, n: c_int, off: sys::sqlite3_int64) -> c_int {
    if let Some(s) = stats(f) {
        s.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        s.bytes_read.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
    let held = with_overlay(f, |ov, _| {
        if ov.is_empty() {
            return fwd!(f, xRead, buf, n, off);
        }
        let rc = fwd!(f, xRead, buf, n, off);
        if rc != sys::SQLITE_OK && rc != sys::SQLITE_IOERR_SHORT_READ {
            return rc;
        }
        let size = match real_size(f) {
            Ok(s) => s,
            Err(rc) => return rc,
        };
        // SAFETY: SQLite hands us a buffer of n bytes.
        let out = std::slice::from_raw_parts_mut(buf as *mut u8, n.max(0) as usize);
        if ov.patch(off.max(0) as u64, out, size) {
            sys::SQLITE_OK
        } else {
            sys::SQLITE_IOERR_SHORT_READ
        }
    });
    match held {
        Some(rc) => rc,
        None => fwd!(f, xRead, buf, n, off),
    }
}

unsafe extern "C" fn x_write(f: *mut sys::sqlite3_file, buf: *const c_void, n: c_int, off: sys::sqlite3_int64) -> c_int {
    let engaged = crate::vfs::engaged(); // the normal path's one atomic load
    if engaged {
        match fault_on_write(path(f)) {
            Fault::IoErr => return sys::SQLITE_IOERR_WRITE,
            Fault::Full => return sys::SQLITE_FULL,
            Fault::None => {}
        }
    }
    if let Some(s) = stats(f) {
        s.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        s.bytes_written.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
    if !engaged {
        return fwd!(f, xWrite, buf, n, off);
    }
    let held = with_overlay(f, |ov, applies| {
        if applies {
            // SAFETY: SQLite hands us a buffer of n bytes.
            ov.write(off.max(0) as u64, std::slice::from_raw_parts(buf as *const u8, n.max(0) as usize));
            return sys::SQLITE_OK;
        }
        match flush(f, ov) {
            sys::SQLITE_OK => fwd!(f, xWrite, buf, n, off),
            rc => rc,
        }
    });
    match held {
        Some(rc) => rc,
        None => fwd!(f, xWrite, buf, n, off),
    }
}

unsafe extern "C" fn x_truncate(f: *mut sys::sqlite3_file, size: sys::sqlite3_int64) -> c_int {
    if let Some(s) = stats(f) {
        s.truncates.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    // Both at once: the real file (a truncate is metadata a file system may persist any time)
    // and the held bytes past the new end.
    let held = with_overlay(f, |ov, _| {
        ov.truncate(size.max(0) as u64);
        fwd!(f, xTruncate, size)
    });
    match held {
        Some(rc) => rc,
        None => fwd!(f, xTruncate, size),
    }
}

unsafe extern "C" fn x_sync(f: *mut sys::sqlite3_file, flags: c_int) -> c_int {
    let (delay, fault) = if crate::vfs::engaged() { fault_on_sync(path(f)) } else { (0, Fault::None) };
    if delay > 0 {
        std::thread::sleep(std::time::Duration::from_micros(delay));
    }
    if fault == Fault::IoErr {
        return sys::SQLITE_IOERR_FSYNC;
    }
    let t = Instant::now();
    // Power-loss model: the held bytes reach the real file first, then it is synced (under the
    // overlay's lock, so no read sees the file between the two).
    let rc = match with_overlay(f, |ov, _| match flush(f, ov) {
        sys::SQLITE_OK => fwd!(f, xSync, flags),
        rc => rc,
    }) {
        Some(rc) => rc,
        None => fwd!(f, xSync, flags),
    };
    if let Some(s) = stats(f) {
        s.record_sync(t.elapsed().as_micros() as u64 + delay);
    }
    rc
}

unsafe extern "C" fn x_file_size(f: *mut sys::sqlite3_file, out: *mut sys::sqlite3_int64) -> c_int {
    let held = with_overlay(f, |ov, _| match real_size(f) {
        Ok(n) => {
            *out = ov.size(n) as sys::sqlite3_int64;
            sys::SQLITE_OK
        }
        Err(rc) => rc,
    });
    match held {
        Some(rc) => rc,
        None => fwd!(f, xFileSize, out),
    }
}
unsafe extern "C" fn x_lock(f: *mut sys::sqlite3_file, l: c_int) -> c_int {
    fwd!(f, xLock, l)
}
unsafe extern "C" fn x_unlock(f: *mut sys::sqlite3_file, l: c_int) -> c_int {
    fwd!(f, xUnlock, l)
}
unsafe extern "C" fn x_check_reserved_lock(f: *mut sys::sqlite3_file, out: *mut c_int) -> c_int {
    fwd!(f, xCheckReservedLock, out)
}

unsafe extern "C" fn x_file_control(f: *mut sys::sqlite3_file, op: c_int, arg: *mut c_void) -> c_int {
    if op == sys::SQLITE_FCNTL_CKPT_START {
        shim(f).ckpt_start = Some(Instant::now());
    } else if op == sys::SQLITE_FCNTL_CKPT_DONE {
        if let (Some(t), Some(s)) = (shim(f).ckpt_start.take(), stats(f)) {
            s.checkpoints.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            s.checkpoint_us_total.fetch_add(t.elapsed().as_micros() as u64, std::sync::atomic::Ordering::Relaxed);
        }
    } else if op == sys::SQLITE_FCNTL_VFSNAME {
        // Report our name in front of the real VFS's, as SQLite's shims do.
        let rc = fwd!(f, xFileControl, op, arg);
        let out = arg as *mut *mut c_char;
        let prev = if rc == sys::SQLITE_OK && !(*out).is_null() { super::api::cstr_to_string(*out) } else { String::new() };
        if !(*out).is_null() {
            super::api::sqlite_free(*out as *mut c_void);
        }
        *out = super::api::sqlite_strdup(&if prev.is_empty() { "shardvt".to_string() } else { format!("shardvt/{prev}") });
        return sys::SQLITE_OK;
    }
    fwd!(f, xFileControl, op, arg)
}

unsafe extern "C" fn x_sector_size(f: *mut sys::sqlite3_file) -> c_int {
    match real_methods(f).xSectorSize {
        Some(m) => m(real_file(f)),
        None => 4096,
    }
}
unsafe extern "C" fn x_device_characteristics(f: *mut sys::sqlite3_file) -> c_int {
    match real_methods(f).xDeviceCharacteristics {
        Some(m) => m(real_file(f)),
        None => 0,
    }
}
unsafe extern "C" fn x_shm_map(f: *mut sys::sqlite3_file, pg: c_int, sz: c_int, ext: c_int, pp: *mut *mut c_void) -> c_int {
    let rc = fwd!(f, xShmMap, pg, sz, ext, pp);
    if pg == 0 && rc == sys::SQLITE_OK && !pp.is_null() && !(*pp).is_null() {
        shim(f).shm0 = *pp;
    }
    rc
}
unsafe extern "C" fn x_shm_lock(f: *mut sys::sqlite3_file, off: c_int, n: c_int, flags: c_int) -> c_int {
    fwd!(f, xShmLock, off, n, flags)
}
unsafe extern "C" fn x_shm_barrier(f: *mut sys::sqlite3_file) {
    if let Some(m) = real_methods(f).xShmBarrier {
        m(real_file(f))
    }
}
unsafe extern "C" fn x_shm_unmap(f: *mut sys::sqlite3_file, del: c_int) -> c_int {
    shim(f).shm0 = std::ptr::null_mut();
    fwd!(f, xShmUnmap, del)
}

/// Region 0 of the WAL index of `f` if `f` is a file of this VFS with its WAL index mapped
/// (the memory SQLite itself uses; valid until the connection unmaps it), else null.
///
/// SAFETY: `f` is a live `sqlite3_file` (from SQLITE_FCNTL_FILE_POINTER of an open connection).
pub(super) unsafe fn wal_index_region0(f: *mut sys::sqlite3_file) -> *const u8 {
    if f.is_null() || (*f).pMethods.is_null() || !METHODS.iter().any(|m| std::ptr::eq(m, (*f).pMethods)) {
        return std::ptr::null();
    }
    shim(f).shm0 as *const u8
}
unsafe extern "C" fn x_fetch(f: *mut sys::sqlite3_file, off: sys::sqlite3_int64, n: c_int, pp: *mut *mut c_void) -> c_int {
    if crate::vfs::engaged() && shim(f).durable {
        // A mapping would show the real file without the held bytes: make SQLite use xRead.
        *pp = std::ptr::null_mut();
        return sys::SQLITE_OK;
    }
    fwd!(f, xFetch, off, n, pp)
}
unsafe extern "C" fn x_unfetch(f: *mut sys::sqlite3_file, off: sys::sqlite3_int64, p: *mut c_void) -> c_int {
    fwd!(f, xUnfetch, off, p)
}

const fn methods(version: c_int) -> sys::sqlite3_io_methods {
    sys::sqlite3_io_methods {
        iVersion: version,
        xClose: Some(x_close),
        xRead: Some(x_read),
        xWrite: Some(x_write),
        xTruncate: Some(x_truncate),
        xSync: Some(x_sync),
        xFileSize: Some(x_file_size),
        xLock: Some(x_lock),
        xUnlock: Some(x_unlock),
        xCheckReservedLock: Some(x_check_reserved_lock),
        xFileControl: Some(x_file_control),
        xSectorSize: Some(x_sector_size),
        xDeviceCharacteristics: Some(x_device_characteristics),
        xShmMap: if version >= 2 { Some(x_shm_map) } else { None },
        xShmLock: if version >= 2 { Some(x_shm_lock) } else { None },
        xShmBarrier: if version >= 2 { Some(x_shm_barrier) } else { None },
        xShmUnmap: if version >= 2 { Some(x_shm_unmap) } else { None },
        xFetch: if version >= 3 { Some(x_fetch) } else { None },
        xUnfetch: if version >= 3 { Some(x_unfetch) } else { None },
    }
}

static METHODS: [sys::sqlite3_io_methods; 3] = [methods(1), methods(2), methods(3)];

unsafe extern "C" fn x_open(
    vfs: *mut sys::sqlite3_vfs,
    name: sys::sqlite3_filename,
    f: *mut sys::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let real = (*vfs).pAppData as *mut sys::sqlite3_vfs;
    let s = f as *mut ShimFile;
    std::ptr::write(
        s,
        ShimFile {
            base: sys::sqlite3_file { pMethods: std::ptr::null() },
            stats: std::ptr::null(),
            path: std::ptr::null_mut(),
            ckpt_start: None,
            durable: false,
            shm0: std::ptr::null_mut(),
            _align: 0,
        },
    );
    let rf = real_file(f);
    (*rf).pMethods = std::ptr::null();
    let rc = ((*real).xOpen.unwrap())(real, name, rf, flags, out_flags);
    if rc != sys::SQLITE_OK || (*rf).pMethods.is_null() {
        return rc;
    }
    let path = if name.is_null() { String::new() } else { CStr::from_ptr(name).to_string_lossy().into_owned() };
    let class = if flags & sys::SQLITE_OPEN_MAIN_DB != 0 {
        FileClass::Db
    } else if flags & sys::SQLITE_OPEN_WAL != 0 {
        FileClass::Wal
    } else if flags & sys::SQLITE_OPEN_MAIN_JOURNAL != 0 {
        FileClass::Journal
    } else {
        FileClass::Other
    };
    let st = std::panic::catch_unwind(|| stats_for(&path, class)).ok();
    (*s).stats = st.map(Arc::into_raw).unwrap_or(std::ptr::null());
    let persistent = sys::SQLITE_OPEN_MAIN_DB | sys::SQLITE_OPEN_MAIN_JOURNAL | sys::SQLITE_OPEN_WAL | sys::SQLITE_OPEN_SUPER_JOURNAL;
    (*s).durable = !path.is_empty() && flags & persistent != 0 && flags & sys::SQLITE_OPEN_DELETEONCLOSE == 0;
    (*s).path = Box::into_raw(Box::new(path));
    let v = (*(*rf).pMethods).iVersion.clamp(1, 3);
    (*s).base.pMethods = &METHODS[(v - 1) as usize];
    rc
}

unsafe extern "C" fn x_delete(vfs: *mut sys::sqlite3_vfs, name: *const c_char, sync: c_int) -> c_int {
    let real = (*vfs).pAppData as *mut sys::sqlite3_vfs;
    if crate::vfs::engaged() && !name.is_null() {
        // SAFETY: SQLite passes a NUL-terminated file name.
        let p = CStr::from_ptr(name).to_string_lossy();
        let _ = std::panic::catch_unwind(|| powerloss::forget(&p));
    }
    ((*real).xDelete.unwrap())(real, name, sync)
}
unsafe extern "C" fn x_access(vfs: *mut sys::sqlite3_vfs, name: *const c_char, flags: c_int, out: *mut c_int) -> c_int {
    let real = (*vfs).pAppData as *mut sys::sqlite3_vfs;
    ((*real).xAccess.unwrap())(real, name, flags, out)
}
unsafe extern "C" fn x_full_pathname(vfs: *mut sys::sqlite3_vfs, name: *const c_char, n: c_int, out: *mut c_char) -> c_int {
    let real = (*vfs).pAppData as *mut sys::sqlite3_vfs;
    ((*real).xFullPathname.unwrap())(real, name, n, out)
}
// Loading extensions through a connection that uses this VFS: forwarded to the default VFS.
unsafe extern "C" fn x_dl_open(vfs: *mut sys::sqlite3_vfs, name: *const c_char) -> *mut c_void {
    let real = (*vfs).pAppData as *mut sys::sqlite3_vfs;
    match (*real).xDlOpen {
        Some(m) => m(real, name),
        None => std::ptr::null_mut(),
    }
}
unsafe extern "C" fn x_dl_error(vfs: *mut sys::sqlite3_vfs, n: c_int, out: *mut c_char) {
    let real = (*vfs).pAppData as *mut sys::sqlite3_vfs;
    match (*real).xDlError {
        Some(m) => m(real, n, out),
        None if n > 0 && !out.is_null() => *out = 0,
        None => {}
    }
}
type DlSymFn = unsafe extern "C" fn(*mut sys::sqlite3_vfs, *mut c_void, *const c_char);
unsafe extern "C" fn x_dl_sym(vfs: *mut sys::sqlite3_vfs, h: *mut c_void, sym: *const c_char) -> Option<DlSymFn> {
    let real = (*vfs).pAppData as *mut sys::sqlite3_vfs;
    match (*real).xDlSym {
        Some(m) => m(real, h, sym),
        None => None,
    }
}
unsafe extern "C" fn x_dl_close(vfs: *mut sys::sqlite3_vfs, h: *mut c_void) {
    let real = (*vfs).pAppData as *mut sys::sqlite3_vfs;
    if let Some(m) = (*real).xDlClose {
        m(real, h)
    }
}
unsafe extern "C" fn x_randomness(vfs: *mut sys::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    let real = (*vfs).pAppData as *mut sys::sqlite3_vfs;
    ((*real).xRandomness.unwrap())(real, n, out)
}
unsafe extern "C" fn x_sleep(vfs: *mut sys::sqlite3_vfs, us: c_int) -> c_int {
    let real = (*vfs).pAppData as *mut sys::sqlite3_vfs;
    ((*real).xSleep.unwrap())(real, us)
}
unsafe extern "C" fn x_current_time(vfs: *mut sys::sqlite3_vfs, out: *mut f64) -> c_int {
    let real = (*vfs).pAppData as *mut sys::sqlite3_vfs;
    ((*real).xCurrentTime.unwrap())(real, out)
}
unsafe extern "C" fn x_get_last_error(vfs: *mut sys::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    let real = (*vfs).pAppData as *mut sys::sqlite3_vfs;
    match (*real).xGetLastError {
        Some(m) => m(real, n, out),
        None => 0,
    }
}
unsafe extern "C" fn x_current_time_int64(vfs: *mut sys::sqlite3_vfs, out: *mut sys::sqlite3_int64) -> c_int {
    let real = (*vfs).pAppData as *mut sys::sqlite3_vfs;
    match (*real).xCurrentTimeInt64 {
        Some(m) => m(real, out),
        None => sys::SQLITE_ERROR,
    }
}

pub fn is_registered() -> bool {
    VFS.get().map(|r| r.vfs != 0).unwrap_or(false)
}

/// Registers the `shardvt` VFS once per process (not as the default). Returns its name.
pub fn register() -> crate::error::Result<&'static str> {
    let r = super::api_routines();
    let reg = VFS.get_or_init(|| {
        // SAFETY: vfs_find(NULL) returns the default VFS, which lives for the process.
        let real = unsafe { r.vfs_find.unwrap()(std::ptr::null()) };
        if real.is_null() {
            return Registered { vfs: 0, real: 0 };
        }
        // SAFETY: real is a valid VFS; we copy fields we forward to and build ours.
        let rv = unsafe { &*real };
        let ours = Box::new(sys::sqlite3_vfs {
            iVersion: 2,
            szOsFile: (std::mem::size_of::<ShimFile>() as c_int) + rv.szOsFile,
            mxPathname: rv.mxPathname,
            pNext: std::ptr::null_mut(),
            zName: c"shardvt".as_ptr(),
            pAppData: real as *mut c_void,
            xOpen: Some(x_open),
            xDelete: Some(x_delete),
            xAccess: Some(x_access),
            xFullPathname: Some(x_full_pathname),
            xDlOpen: Some(x_dl_open),
            xDlError: Some(x_dl_error),
            xDlSym: Some(x_dl_sym),
            xDlClose: Some(x_dl_close),
            xRandomness: Some(x_randomness),
            xSleep: Some(x_sleep),
            xCurrentTime: Some(x_current_time),
            xGetLastError: Some(x_get_last_error),
            xCurrentTimeInt64: Some(x_current_time_int64),
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        });
        let p = Box::into_raw(ours);
        // SAFETY: p lives forever (leaked once per process); not made the default.
        let rc = unsafe { r.vfs_register.unwrap()(p, 0) };
        if rc != sys::SQLITE_OK {
            return Registered { vfs: 0, real: 0 };
        }
        Registered { vfs: p as usize, real: real as usize }
    });
    if reg.vfs == 0 {
        return Err(crate::error::Error::internal("libshardvt: could not register the shardvt VFS"));
    }
    let _ = real_vfs();
    Ok(crate::vfs::VFS_NAME)
}
