//! The host's SQLite routines, and safe owned wrappers over them.
//!
//! A loadable extension must call SQLite only through the `sqlite3_api_routines` table the host
//! hands to `sqlite3_shardvt_init`; linking libsqlite3 would put a second SQLite in the process.
//! We keep the host's pointer in a process-wide `OnceLock` and read routines out of it on demand.
//!
//! Invariants:
//! - Routines are appended to the table over SQLite versions, so the offset of every field we read
//!   is the same in every host. We only read fields that exist in our floor version
//!   ([`MIN_SQLITE_VERSION`], 3.38.0); the init refuses older hosts before anything else runs.
//! - One SQLite library per process: a second init with a *different* routine table (e.g. apsw's
//!   static SQLite next to the system library) is refused, so handles are never mixed.
//! - [`Connection`] and [`Statement`] own their handles and close/finalize on drop. Statements
//!   must be dropped before their connection; owners (see `shard/`) keep that order.
//! - [`ValueRef`] borrows a `sqlite3_value*` that is only valid during the callback that produced
//!   it; its lifetime parameter ties it to that callback's frame.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr;
use std::sync::OnceLock;

use libsqlite3_sys as sys;

use crate::error::{codes, Error, Result};
use crate::value::Value;

/// The oldest host SQLite we support (sqlite3_vtab_in, LIMIT/OFFSET constraints, vtab_rhs_value).
pub const MIN_SQLITE_VERSION: i32 = 3_038_000;

struct Api {
    routines: usize, // *const sqlite3_api_routines, stored as an address so the static is Sync
    version: i32,
}

static API: OnceLock<Api> = OnceLock::new();

/// Installs the host's routine table. Returns an error message when the host is too old or when
/// another SQLite library already loaded us in this process.
pub(crate) fn install(p_api: *const sys::sqlite3_api_routines) -> std::result::Result<(), String> {
    if p_api.is_null() {
        return Err("libshardvt: the host passed no SQLite routine table".into());
    }
    // SAFETY: p_api is the host's routine table; `libversion_number` exists in every version.
    let version = unsafe {
        match (*p_api).libversion_number {
            Some(f) => f(),
            None => 0,
        }
    };
    if version < MIN_SQLITE_VERSION {
        return Err(format!(
            "libshardvt needs SQLite 3.38.0 or newer; this host is {}.{}.{} (upgrade the host's SQLite)",
            version / 1_000_000,
            (version / 1000) % 1000,
            version % 1000
        ));
    }
    let api = API.get_or_init(|| Api { routines: p_api as usize, version });
    if api.routines != p_api as usize {
        return Err("libshardvt is already loaded by another SQLite library in this process; \
                    load it into connections of one SQLite library only"
            .into());
    }
    Ok(())
}

pub(crate) fn routines() -> &'static sys::sqlite3_api_routines {
    let api = API.get().expect("libshardvt routines used before sqlite3_shardvt_init");
    // SAFETY: the address came from the host's routine table, which lives as long as the process
    // (SQLite's table is a static); we only read fields present in MIN_SQLITE_VERSION.
    unsafe { &*(api.routines as *const sys::sqlite3_api_routines) }
}

/// The host library's version number, e.g. 3040001.
pub fn host_version_number() -> i32 {
    API.get().map(|a| a.version).unwrap_or(0)
}

pub fn host_version_string() -> String {
    // SAFETY: libversion returns a static NUL-terminated string.
    unsafe { cstr_to_string(routines().libversion.unwrap()()) }
}

pub fn host_threadsafe() -> bool {
    // SAFETY: plain call without arguments.
    unsafe { routines().xthreadsafe.unwrap()() != 0 }
}

macro_rules! call {
    ($name:ident ( $($arg:expr),* )) => {
        (routines().$name.expect(concat!("host lacks sqlite3_", stringify!($name))))($($arg),*)
    };
}

pub(crate) unsafe fn cstr_to_string(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::misuse("string contains a NUL byte"))
}

/// Copies `msg` into memory from sqlite3_malloc, as SQLite wants for zErrMsg fields.
pub(crate) fn sqlite_strdup(msg: &str) -> *mut c_char {
    let bytes = msg.replace('\0', " ");
    // SAFETY: we allocate len+1 bytes with the host allocator and fill them.
    unsafe {
        let p = call!(malloc(bytes.len() as c_int + 1)) as *mut c_char;
        if !p.is_null() {
            ptr::copy_nonoverlapping(bytes.as_ptr() as *const c_char, p, bytes.len());
            *p.add(bytes.len()) = 0;
        }
        p
    }
}

pub(crate) unsafe fn sqlite_free(p: *mut c_void) {
    if !p.is_null() {
        call!(free(p));
    }
}

/// Writes a message to SQLite's error log (sqlite3_log).
pub fn log(code: c_int, msg: &str) {
    if let Ok(c) = CString::new(msg.replace('%', "%%")) {
        // SAFETY: format string is "%s"-free after escaping; sqlite3_log is variadic.
        unsafe { call!(log(code, c.as_ptr())) }
    }
}

// ---------------------------------------------------------------------------------------------
// Values

/// A borrowed `sqlite3_value*` (argument of a callback).
#[derive(Clone, Copy)]
pub struct ValueRef<'a> {
    p: *mut sys::sqlite3_value,
    _life: std::marker::PhantomData<&'a ()>,
}

impl<'a> ValueRef<'a> {
    /// SAFETY: p must be a valid sqlite3_value for lifetime 'a.
    pub(crate) unsafe fn from_raw(p: *mut sys::sqlite3_value) -> Self {
        ValueRef { p, _life: std::marker::PhantomData }
    }
    pub fn raw(&self) -> *mut sys::sqlite3_value {
        self.p
    }
    pub fn type_code(&self) -> c_int {
        // SAFETY: valid value for 'a.
        unsafe { call!(value_type(self.p)) }
    }
    pub fn is_null(&self) -> bool {
        self.type_code() == sys::SQLITE_NULL
    }
    pub fn as_i64(&self) -> i64 {
        // SAFETY: valid value.
        unsafe { call!(value_int64(self.p)) }
    }
    pub fn as_f64(&self) -> f64 {
        // SAFETY: valid value.
        unsafe { call!(value_double(self.p)) }
    }
    pub fn text_bytes(&self) -> &'a [u8] {
        // SAFETY: value_text then value_bytes is the documented order; the buffer lives as long
        // as the value is unchanged (for 'a).
        unsafe {
            let t = call!(value_text(self.p));
            let n = call!(value_bytes(self.p));
            if t.is_null() || n <= 0 {
                &[]
            } else {
                std::slice::from_raw_parts(t, n as usize)
            }
        }
    }
    pub fn blob_bytes(&self) -> &'a [u8] {
        // SAFETY: as text_bytes.
        unsafe {
            let b = call!(value_blob(self.p)) as *const u8;
            let n = call!(value_bytes(self.p));
            if b.is_null() || n <= 0 {
                &[]
            } else {
                std::slice::from_raw_parts(b, n as usize)
            }
        }
    }
    pub fn text_string(&self) -> String {
        String::from_utf8_lossy(self.text_bytes()).into_owned()
    }
    /// True when this UPDATE argument is unchanged (sqlite3_value_nochange).
    pub fn nochange(&self) -> bool {
        // SAFETY: valid value.
        unsafe { call!(value_nochange(self.p)) != 0 }
    }
    pub fn to_value(&self) -> Value {
        match self.type_code() {
            sys::SQLITE_INTEGER => Value::Integer(self.as_i64()),
            sys::SQLITE_FLOAT => Value::Real(self.as_f64()),
            sys::SQLITE_TEXT => Value::Text(self.text_bytes().to_vec()),
            sys::SQLITE_BLOB => Value::Blob(self.blob_bytes().to_vec()),
            _ => Value::Null,
        }
    }
    /// The values of an `IN (...)` right-hand side handed over whole (sqlite3_vtab_in).
    pub fn in_values(&self) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut v: *mut sys::sqlite3_value = ptr::null_mut();
        // SAFETY: self is an xFilter argument for which xBestIndex called sqlite3_vtab_in(..,1).
        let mut rc = unsafe { call!(vtab_in_first(self.p, &mut v)) };
        while rc == sys::SQLITE_OK && !v.is_null() {
            // SAFETY: v is valid until the next vtab_in_next call; we copy it out now.
            out.push(unsafe { ValueRef::from_raw(v) }.to_value());
            rc = unsafe { call!(vtab_in_next(self.p, &mut v)) };
        }
        if rc == sys::SQLITE_OK || rc == sys::SQLITE_DONE {
            Ok(out)
        } else {
            Err(Error::sqlite(rc, "sharded: reading the IN list failed".into()))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Host database handle

/// The host connection (`sqlite3*`) a virtual table or function belongs to. Not owned.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct HostDb(pub(crate) usize);

impl HostDb {
    pub(crate) fn raw(&self) -> *mut sys::sqlite3 {
        self.0 as *mut sys::sqlite3
    }
    /// File name of an attached schema ("main", "temp", ...); empty for :memory: / temp dbs.
    pub fn filename(&self, schema: &str) -> Option<String> {
        let s = cstring(schema).ok()?;
        // SAFETY: db is a live connection during the callback; db_filename returns a string owned
        // by SQLite or NULL.
        let p = unsafe { call!(db_filename(self.raw(), s.as_ptr())) };
        if p.is_null() {
            None
        } else {
            // SAFETY: NUL-terminated.
            Some(unsafe { cstr_to_string(p) })
        }
    }
    /// The ON CONFLICT mode of the statement now running xUpdate (sqlite3_vtab_on_conflict).
    pub fn vtab_on_conflict(&self) -> c_int {
        // SAFETY: only called from inside xUpdate.
        unsafe { call!(vtab_on_conflict(self.raw())) }
    }
    pub fn is_autocommit(&self) -> bool {
        // SAFETY: live connection.
        unsafe { call!(get_autocommit(self.raw())) != 0 }
    }
    /// Prepares `sql` on the host connection (used by functions that inspect queries).
    pub fn prepare(&self, sql: &str) -> Result<Statement> {
        prepare_on(self.raw(), sql, None)
    }
    pub fn errmsg(&self) -> String {
        // SAFETY: live connection.
        unsafe { cstr_to_string(call!(errmsg(self.raw()))) }
    }
    /// SQL text of the statements of this connection that are running now and may write
    /// (sqlite3_next_stmt + sqlite3_stmt_busy + !sqlite3_stmt_readonly).
    pub fn running_write_sql(&self) -> Vec<String> {
        let mut out = Vec::new();
        // SAFETY: iterating the connection's statement list from its own thread, inside a
        // callback of one of them; we only read their SQL text.
        unsafe {
            let mut p = call!(next_stmt(self.raw(), ptr::null_mut()));
            while !p.is_null() {
                if call!(stmt_busy(p)) != 0 && call!(stmt_readonly(p)) == 0 {
                    out.push(cstr_to_string(call!(sql(p))));
                }
                p = call!(next_stmt(self.raw(), p));
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Owned connections and statements (shard and catalog files)

pub const OPEN_READWRITE: c_int = sys::SQLITE_OPEN_READWRITE;
pub const OPEN_CREATE: c_int = sys::SQLITE_OPEN_CREATE;
pub const OPEN_READONLY: c_int = sys::SQLITE_OPEN_READONLY;
/// Fundamental datatype codes (sqlite3_value_type).
pub const TYPE_INTEGER: c_int = sys::SQLITE_INTEGER;
pub const TYPE_FLOAT: c_int = sys::SQLITE_FLOAT;
pub const TYPE_TEXT: c_int = sys::SQLITE_TEXT;
pub const TYPE_BLOB: c_int = sys::SQLITE_BLOB;

/// The open WAL file of a [`Connection`], for `sync` — also from another thread, while the
/// connection itself is not used (its owner waits for the sync to finish).
pub struct WalHandle {
    f: *mut sys::sqlite3_file,
    path: String,
}

// SAFETY: a sqlite3_file may be synced from any thread as long as no other call on it runs at
// the same time; the owner of the connection guarantees that (see the type's doc).
unsafe impl Send for WalHandle {}

impl WalHandle {
    pub fn sync(&self) -> Result<()> {
        // SAFETY: f is the connection's open WAL file (alive while the connection is, and the
        // connection outlives this handle's use); syncing it is always allowed.
        let rc = unsafe {
            match (*self.f).pMethods.as_ref().and_then(|m| m.xSync) {
                Some(sync) => sync(self.f, sys::SQLITE_SYNC_NORMAL),
                None => sys::SQLITE_OK,
            }
        };
        if rc != sys::SQLITE_OK {
            return Err(Error::sqlite(rc, format!("disk I/O error syncing the WAL of {}", self.path)));
        }
        Ok(())
    }
}

/// An owned SQLite connection to a shard or catalog file.
pub struct Connection {
    db: *mut sys::sqlite3,
    path: String,
    /// The WAL hook's observer (`ffi::walhook::install`); dropped after the handle is closed.
    pub(super) wal_observer: Option<Box<Box<dyn super::walhook::WalObserver>>>,
    /// State of the busy handler (`busy_timeout`); unregistered before the handle is closed.
    busy: Box<BusyState>,
    /// The main database's `sqlite3_file` once looked up (`main_file`): SQLite allocates it
    /// with the connection and keeps it until close, so it is asked for once, not on every
    /// WAL-index read (a pinned statement reads the header per shard per statement).
    main_fd: std::cell::Cell<*mut sys::sqlite3_file>,
}

/// A lock held by another connection: wait in short, growing steps (`shard::busy_step`: 20 µs
/// doubling to 1 ms) instead of SQLite's default busy handler, whose first sleep is a whole
/// millisecond although shard transactions hold their lock for tens of microseconds.
struct BusyState {
    timeout_ms: std::cell::Cell<i32>,
    start: std::cell::Cell<std::time::Instant>,
    /// the connection's main database file (see the gate in `x_busy`)
    path: String,
}

unsafe extern "C" fn x_busy(arg: *mut c_void, count: c_int) -> c_int {
    // SAFETY: arg is the connection's Box<BusyState>, alive until the handler is unregistered
    // in Drop; SQLite calls the handler on the connection's own thread.
    let st = &*(arg as *const BusyState);
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let timeout = st.timeout_ms.get();
        if timeout <= 0 {
            return 0;
        }
        let now = std::time::Instant::now();
        if count == 0 {
            st.start.set(now);
        }
        let limit = std::time::Duration::from_millis(timeout as u64);
        let waited = now.duration_since(st.start.get());
        if waited >= limit {
            return 0;
        }
        // The lock may be held by this process's WAL manager (a TRUNCATE or a background tail,
        // `wal::runner`): wait for exactly that instead of sleeping in steps.
        if crate::wal::wait_at_gate(&st.path) {
            return 1;
        }
        std::thread::sleep(crate::shard::busy_step(count as u32).min(limit - waited));
        1
    }))
    .unwrap_or(0)
}

// SAFETY: connections are opened in SQLite's serialized or multi-thread mode and used by one
// thread at a time (the host connection's thread); moving them between threads is allowed.
unsafe impl Send for Connection {}

impl Connection {
    /// Opens `path` through the `shardvt` VFS (per-file I/O statistics, fault injection) when it
    /// is registered, else through the default VFS.
    ///
    /// Always with SQLITE_OPEN_NOMUTEX ("multi-thread" mode for this connection): a Connection
    /// is owned by one thread at a time (a table's shard connections are used only inside the
    /// host connection's callbacks; pool and manager connections are handed over, never
    /// shared), so SQLite's per-connection mutex, taken by every step and column call in the
    /// default serialized mode, is pure overhead (a mutex pair per call per row in a scan).
    pub fn open(path: &str, flags: c_int) -> Result<Connection> {
        let flags = flags | sys::SQLITE_OPEN_NOMUTEX;
        let c = cstring(path)?;
        let mut db: *mut sys::sqlite3 = ptr::null_mut();
        let vfs = if super::vfs::is_registered() { c"shardvt".as_ptr() } else { ptr::null() };
        // SAFETY: out-pointer is valid; flags are documented open flags; vfs is NULL or the
        // name of our registered VFS.
        let rc = unsafe {
            call!(open_v2(c.as_ptr(), &mut db, flags, vfs))
        };
        if rc != sys::SQLITE_OK {
            let msg = if db.is_null() {
                format!("cannot open {path}")
            } else {
                // SAFETY: db is a (failed) connection handle; errmsg is valid until close.
                unsafe { cstr_to_string(call!(errmsg(db))) }
            };
            if !db.is_null() {
                // SAFETY: a failed open still returns a handle that must be closed.
                unsafe { call!(close(db)) };
            }
            return Err(Error::sqlite(rc, format!("{msg}: {path}")));
        }
        // SAFETY: live handle; enable extended result codes for precise errors.
        unsafe { call!(extended_result_codes(db, 1)) };
        let busy = Box::new(BusyState {
            timeout_ms: std::cell::Cell::new(0),
            start: std::cell::Cell::new(std::time::Instant::now()),
            path: path.to_string(),
        });
        // SAFETY: live handle; the box is kept in the Connection and outlives the registration.
        unsafe { call!(busy_handler(db, Some(x_busy), &*busy as *const BusyState as *mut c_void)) };
        Ok(Connection { db, path: path.to_string(), wal_observer: None, busy, main_fd: std::cell::Cell::new(ptr::null_mut()) })
    }
    /// The raw handle, for the other FFI modules (`walhook`).
    pub(super) fn handle(&self) -> *mut sys::sqlite3 {
        self.db
    }
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn exec(&self, sql: &str) -> Result<()> {
        let c = cstring(sql)?;
        let mut err: *mut c_char = ptr::null_mut();
        // SAFETY: live handle, NUL-terminated SQL, no callback.
        let rc = unsafe { call!(exec(self.db, c.as_ptr(), None, ptr::null_mut(), &mut err)) };
        if rc != sys::SQLITE_OK {
            // SAFETY: err is NULL or a sqlite3_malloc'd string we must free.
            let msg = unsafe {
                let m = cstr_to_string(err);
                sqlite_free(err as *mut c_void);
                m
            };
            return Err(Error::sqlite(self.extended_errcode().max(rc), msg));
        }
        Ok(())
    }
    pub fn prepare(&self, sql: &str) -> Result<Statement> {
        prepare_on(self.db, sql, Some(&self.path))
    }
    pub fn changes(&self) -> i64 {
        // SAFETY: live handle.
        unsafe { call!(changes(self.db)) as i64 }
    }
    /// How long a statement waits for a lock held by another connection before SQLITE_BUSY
    /// (our busy handler, see `BusyState`; replaces `sqlite3_busy_timeout`).
    pub fn busy_timeout(&self, ms: i32) {
        self.busy.timeout_ms.set(ms);
    }
    pub fn errmsg(&self) -> String {
        // SAFETY: live handle.
        unsafe { cstr_to_string(call!(errmsg(self.db))) }
    }
    pub fn extended_errcode(&self) -> c_int {
        // SAFETY: live handle.
        unsafe { call!(extended_errcode(self.db)) }
    }
    /// `PRAGMA data_version` (changes when another connection commits to this file), through a
    /// statement the caller keeps in `cached` (declare it before the connection: it must drop first).
    pub fn data_version(&self, cached: &mut Option<Statement>) -> Result<i64> {
        if cached.is_none() {
            *cached = Some(self.prepare("PRAGMA data_version")?);
        }
        let st = cached.as_mut().expect("just set");
        st.step()?;
        let v = st.column_i64(0);
        st.reset();
        Ok(v)
    }

    /// The first copy of the WAL-index header of this connection's database (12 native-endian
    /// words at the start of `-shm` region 0), read lock-free from the mapping SQLite itself
    /// uses; None when the file is not open through the `shardvt` VFS or its WAL index is not
    /// mapped. The read may be torn by a concurrent commit (see `shard::watch`).
    pub fn wal_index_header(&self) -> Option<[u32; 12]> {
        self.wal_index_words::<12>(0)
    }

    /// `nBackfill` of this connection's WAL index (word 24 of `-shm` region 0, the first field
    /// of the checkpoint info after the two header copies): how many WAL frames have been
    /// copied into the database file. Read lock-free like [`Self::wal_index_header`].
    pub fn wal_index_backfill(&self) -> Option<u32> {
        self.wal_index_words::<1>(24).map(|w| w[0])
    }

    /// The main database's open `sqlite3_file` (SQLITE_FCNTL_FILE_POINTER); None if none.
    fn main_file(&self) -> Option<*mut sys::sqlite3_file> {
        let cached = self.main_fd.get();
        if !cached.is_null() {
            return Some(cached);
        }
        let mut f: *mut sys::sqlite3_file = ptr::null_mut();
        // SAFETY: live handle; FILE_POINTER writes the main database's sqlite3_file*.
        let rc = unsafe {
            call!(file_control(
                self.db,
                c"main".as_ptr(),
                sys::SQLITE_FCNTL_FILE_POINTER,
                &mut f as *mut *mut sys::sqlite3_file as *mut c_void
            ))
        };
        // SAFETY: f, when non-null, is the connection's live sqlite3_file; an unopened one has
        // no methods (then it is not cached: it may be opened later).
        let ok = rc == sys::SQLITE_OK && !f.is_null() && unsafe { !(*f).pMethods.is_null() };
        if ok {
            self.main_fd.set(f);
        }
        ok.then_some(f)
    }

    /// N native-endian words of `-shm` region 0 from word `at` (at + N <= 32: inside the
    /// header and checkpoint info, which region 0's 32 KiB always holds).
    fn wal_index_words<const N: usize>(&self, at: usize) -> Option<[u32; N]> {
        debug_assert!(at + N <= 32);
        let f = self.main_file()?;
        // SAFETY: f is this open connection's file.
        let p = unsafe { super::vfs::wal_index_region0(f) };
        if p.is_null() {
            return None;
        }
        let mut out = [0u32; N];
        for (i, w) in out.iter_mut().enumerate() {
            // SAFETY: region 0 is at least 32 KiB, page aligned, mapped while this connection
            // has its WAL index open (it is, as p is non-null, and we are its only thread);
            // volatile: other processes write it.
            *w = unsafe { std::ptr::read_volatile(p.add(4 * (at + i)) as *const u32) };
        }
        Some(out)
    }

    /// fsyncs (SQLITE_SYNC_NORMAL) this connection's main database file through its VFS, as a
    /// checkpoint that reaches the end of the WAL does. Used by the checkpoint thread after a
    /// checkpoint that stopped short of the end (SQLite syncs the database file only in one that
    /// reaches it), so the writer's small final checkpoint does not inherit the writeback.
    pub fn sync_db_file(&self) -> Result<()> {
        let Some(f) = self.main_file() else {
            return Err(Error::sqlite(codes::ERROR, format!("no open database file to sync: {}", self.path)));
        };
        // SAFETY: f is this open connection's database file, used by this thread only.
        let rc = unsafe {
            match (*f).pMethods.as_ref().and_then(|m| m.xSync) {
                Some(sync) => sync(f, sys::SQLITE_SYNC_NORMAL),
                None => sys::SQLITE_OK,
            }
        };
        if rc != sys::SQLITE_OK {
            return Err(Error::sqlite(rc, format!("disk I/O error syncing {}", self.path)));
        }
        Ok(())
    }

    /// The handle of this connection's open WAL file (SQLITE_FCNTL_JOURNAL_POINTER); None when
    /// no WAL is open yet.
    pub fn wal_handle(&self) -> Option<WalHandle> {
        let mut f: *mut sys::sqlite3_file = ptr::null_mut();
        // SAFETY: live handle; JOURNAL_POINTER writes a sqlite3_file* (or leaves NULL).
        let rc = unsafe {
            call!(file_control(
                self.db,
                c"main".as_ptr(),
                sys::SQLITE_FCNTL_JOURNAL_POINTER,
                &mut f as *mut *mut sys::sqlite3_file as *mut c_void
            ))
        };
        (rc == sys::SQLITE_OK && !f.is_null()).then(|| WalHandle { f, path: self.path.clone() })
    }

    /// Runs `f` inside `BEGIN IMMEDIATE` … `COMMIT`, rolling back if it fails.
    pub fn write_txn<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.exec("BEGIN IMMEDIATE")?;
        match f(self) {
            Ok(v) => {
                self.exec("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.exec("ROLLBACK");
                Err(e)
            }
        }
    }

    pub fn in_transaction(&self) -> bool {
        // SAFETY: live handle.
        unsafe { call!(get_autocommit(self.db)) == 0 }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.wal_observer.is_some() {
            super::walhook::uninstall(self.db);
        }
        // SAFETY: live handle; a NULL callback unregisters ours before its state is freed.
        unsafe { call!(busy_handler(self.db, None, ptr::null_mut())) };
        // SAFETY: we own the handle; close_v2 defers if statements are still alive.
        unsafe { call!(close_v2(self.db)) };
    }
}

fn prepare_on(db: *mut sys::sqlite3, sql: &str, path: Option<&str>) -> Result<Statement> {
    let mut stmt: *mut sys::sqlite3_stmt = ptr::null_mut();
    // SAFETY: db live; we pass the exact byte length, so no NUL terminator is needed.
    let rc = unsafe {
        call!(prepare_v2(
            db,
            sql.as_ptr() as *const c_char,
            sql.len() as c_int,
            &mut stmt,
            ptr::null_mut()
        ))
    };
    if rc != sys::SQLITE_OK {
        // SAFETY: db live.
        let msg = unsafe { cstr_to_string(call!(errmsg(db))) };
        let msg = match path {
            Some(p) => format!("{msg} (in shard file {p})"),
            None => msg,
        };
        return Err(Error::sqlite(rc, msg));
    }
    if stmt.is_null() {
        return Err(Error::misuse("empty SQL statement"));
    }
    Ok(Statement { stmt, db, memo: None })
}

/// An owned prepared statement.
pub struct Statement {
    stmt: *mut sys::sqlite3_stmt,
    db: *mut sys::sqlite3,
    /// the values bound by `bind_memo` (None after any other binding or clear)
    memo: Option<Vec<Value>>,
}

// SAFETY: see Connection.
unsafe impl Send for Statement {}

impl Statement {
    pub fn bind(&mut self, i: usize, v: &Value) -> Result<()> {
        self.memo = None;
        self.bind_raw(i, v)
    }

    /// Binds `vals` to parameters 1.. and skips those equal to what the last `bind_memo` bound.
    /// SQLite marks a statement for re-preparation whenever a parameter the planner looked at
    /// (a `LIMIT ?` value, a `LIKE ?` pattern, STAT4 ranges) is bound again, even to the same
    /// value, or when bindings are cleared: a cached statement bound with the same values would
    /// otherwise be compiled again on every run. Use `ShardConn::give_bound` to cache it.
    pub fn bind_memo(&mut self, vals: &[Value]) -> Result<()> {
        let memo = self.memo.take().filter(|m| m.len() == vals.len());
        for (i, v) in vals.iter().enumerate() {
            if memo.as_ref().is_none_or(|m| m[i] != *v) {
                self.bind_raw(i + 1, v)?;
            }
        }
        self.memo = Some(vals.to_vec());
        Ok(())
    }

    fn bind_raw(&mut self, i: usize, v: &Value) -> Result<()> {
        let i = i as c_int;
        // SAFETY: live statement; SQLITE_TRANSIENT makes SQLite copy text/blob.
        let rc = unsafe {
            match v {
                Value::Null => call!(bind_null(self.stmt, i)),
                Value::Integer(x) => call!(bind_int64(self.stmt, i, *x)),
                Value::Real(x) => call!(bind_double(self.stmt, i, *x)),
                Value::Text(b) => call!(bind_text(
                    self.stmt,
                    i,
                    b.as_ptr() as *const c_char,
                    b.len() as c_int,
                    sys::SQLITE_TRANSIENT()
                )),
                Value::Blob(b) => call!(bind_blob(
                    self.stmt,
                    i,
                    b.as_ptr() as *const c_void,
                    b.len() as c_int,
                    sys::SQLITE_TRANSIENT()
                )),
            }
        };
        self.check(rc)
    }
    /// Binds a host value directly (no Rust copy).
    pub fn bind_ref(&mut self, i: usize, v: ValueRef<'_>) -> Result<()> {
        self.memo = None;
        // SAFETY: live statement and value; bind_value copies.
        let rc = unsafe { call!(bind_value(self.stmt, i as c_int, v.p)) };
        self.check(rc)
    }
    /// Binds UTF-8 text (copied by SQLite), or NULL for None.
    pub fn bind_str(&mut self, i: usize, t: Option<&str>) -> Result<()> {
        self.memo = None;
        // SAFETY: live statement; SQLITE_TRANSIENT makes SQLite copy the text.
        let rc = unsafe {
            match t {
                None => call!(bind_null(self.stmt, i as c_int)),
                Some(t) => call!(bind_text(
                    self.stmt,
                    i as c_int,
                    t.as_ptr() as *const c_char,
                    t.len() as c_int,
                    sys::SQLITE_TRANSIENT()
                )),
            }
        };
        self.check(rc)
    }
    /// Binds a BLOB (copied by SQLite).
    pub fn bind_blob(&mut self, i: usize, b: &[u8]) -> Result<()> {
        self.memo = None;
        // SAFETY: live statement; SQLITE_TRANSIENT makes SQLite copy the bytes.
        let rc = unsafe { call!(bind_blob(self.stmt, i as c_int, b.as_ptr() as *const c_void, b.len() as c_int, sys::SQLITE_TRANSIENT())) };
        self.check(rc)
    }
    pub fn bind_f64(&mut self, i: usize, x: f64) -> Result<()> {
        self.memo = None;
        // SAFETY: live statement.
        let rc = unsafe { call!(bind_double(self.stmt, i as c_int, x)) };
        self.check(rc)
    }
    pub fn bind_i64(&mut self, i: usize, x: i64) -> Result<()> {
        self.memo = None;
        // SAFETY: live statement.
        let rc = unsafe { call!(bind_int64(self.stmt, i as c_int, x)) };
        self.check(rc)
    }
    fn check(&self, rc: c_int) -> Result<()> {
        if rc == sys::SQLITE_OK {
            Ok(())
        } else {
            // SAFETY: live db.
            Err(Error::sqlite(rc, unsafe { cstr_to_string(call!(errmsg(self.db))) }))
        }
    }
    /// Steps once: Ok(true) when a row is available, Ok(false) when done.
    pub fn step(&mut self) -> Result<bool> {
        // SAFETY: live statement.
        let rc = unsafe { call!(step(self.stmt)) };
        match rc {
            sys::SQLITE_ROW => Ok(true),
            sys::SQLITE_DONE => Ok(false),
            _ => {
                // SAFETY: live db; extended code for precision.
                let (code, msg) = unsafe {
                    (call!(extended_errcode(self.db)), cstr_to_string(call!(errmsg(self.db))))
                };
                let code = if code & 0xff == rc & 0xff { code } else { rc };
                // reset so the statement is reusable; its error code is the same one.
                // SAFETY: live statement.
                unsafe { call!(reset(self.stmt)) };
                Err(Error::sqlite(code, msg))
            }
        }
    }
    pub fn reset(&mut self) {
        // SAFETY: live statement.
        unsafe {
            call!(reset(self.stmt));
        }
    }
    pub fn clear_bindings(&mut self) {
        self.memo = None;
        // SAFETY: live statement.
        unsafe {
            call!(clear_bindings(self.stmt));
        }
    }
    pub fn column_count(&self) -> usize {
        // SAFETY: live statement.
        unsafe { call!(column_count(self.stmt)) as usize }
    }
    pub fn column_name(&self, i: usize) -> String {
        // SAFETY: live statement, i < column_count.
        unsafe { cstr_to_string(call!(column_name(self.stmt, i as c_int))) }
    }
    pub fn column_i64(&self, i: usize) -> i64 {
        // SAFETY: live statement positioned on a row.
        unsafe { call!(column_int64(self.stmt, i as c_int)) }
    }
    pub fn column_type(&self, i: usize) -> c_int {
        // SAFETY: live statement positioned on a row.
        unsafe { call!(column_type(self.stmt, i as c_int)) }
    }
    /// The column as a borrowed value (valid until the next step/reset).
    pub fn column_ref(&self, i: usize) -> ValueRef<'_> {
        // SAFETY: column_value returns an unprotected value valid until the next step.
        unsafe { ValueRef::from_raw(call!(column_value(self.stmt, i as c_int))) }
    }
    pub fn column_value(&self, i: usize) -> Value {
        self.column_ref(i).to_value()
    }
    pub fn readonly(&self) -> bool {
        // SAFETY: live statement.
        unsafe { call!(stmt_readonly(self.stmt)) != 0 }
    }
    pub fn is_explain(&self) -> bool {
        // SAFETY: live statement.
        unsafe { call!(stmt_isexplain(self.stmt)) != 0 }
    }
}

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: we own the statement.
        unsafe { call!(finalize(self.stmt)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn old_host() -> c_int {
        3_037_002
    }

    #[test]
    fn older_host_gets_a_readable_error() {
        // SAFETY: an all-NULL routine table is a valid value of this C struct of Option<fn>s.
        let mut fake: sys::sqlite3_api_routines = unsafe { std::mem::zeroed() };
        fake.libversion_number = Some(old_host);
        let err = install(&fake).unwrap_err();
        assert!(err.contains("needs SQLite 3.38.0 or newer; this host is 3.37.2"), "{err}");
        assert!(install(ptr::null()).is_err());
    }
}
