//! `sqlite3_wal_hook` and `sqlite3_wal_checkpoint_v2` for the checkpoint manager (`crate::wal`).
//!
//! - [`install`] registers a [`WalObserver`] as the WAL hook of a [`Connection`]. Registering a
//!   WAL hook replaces SQLite's own auto-checkpoint hook on that connection, so from then on the
//!   observer alone decides when that connection checkpoints. The observer is owned by the
//!   connection (`Connection::wal_observer`) and dropped after the handle is closed; the hook is
//!   unregistered before the close, so it never runs on a freed observer.
//! - `x_wal_hook` is the trampoline SQLite calls in the committing thread after every commit
//!   (autocommit statement or COMMIT), outside the write lock, with the number of frames now in
//!   the WAL. It catches panics and always returns SQLITE_OK: an error returned from a WAL hook
//!   would be reported to the user as the failure of the statement that committed.
//! - [`WalConn::checkpoint`] (inside the hook, on the committing connection) and
//!   [`checkpoint`] (on a connection the manager owns) run `sqlite3_wal_checkpoint_v2`.
//!
//! Nothing here decides anything: the policy is `wal::policy`, the thread is `wal::runner`.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use libsqlite3_sys as sys;

use super::api::{routines, Connection, HostDb};
use crate::error::{Error, Result};

/// Told about every commit of the connection it is installed on.
pub trait WalObserver: Send + Sync + 'static {
    /// `frames`: frames in the WAL after the commit (SQLite's `mxFrame`). Runs in the committing
    /// thread; must be cheap unless it decides to checkpoint through `conn`.
    fn on_commit(&self, conn: &WalConn<'_>, frames: u32);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointMode {
    Passive,
    /// Takes the WAL's write lock if it is free (else works as PASSIVE), copies every frame no
    /// reader needs, and reports SQLITE_BUSY if it did not reach the WAL's end.
    Full,
    Truncate,
}

/// What `sqlite3_wal_checkpoint_v2` returned: its result code and `(*pnLog, *pnCkpt)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointResult {
    pub rc: i32,
    pub log: i32,
    pub ckpt: i32,
}

/// The committing connection, valid during one `on_commit` call.
pub struct WalConn<'a> {
    db: *mut sys::sqlite3,
    schema: *const c_char,
    _life: std::marker::PhantomData<&'a ()>,
}

impl WalConn<'_> {
    /// The schema name ("main", an ATTACHed name) of the database that committed.
    pub fn schema(&self) -> String {
        // SAFETY: the hook's schema argument, a NUL-terminated string valid during the hook.
        unsafe { std::ffi::CStr::from_ptr(self.schema) }.to_string_lossy().into_owned()
    }

    /// Checkpoints the committing database (PASSIVE: never waits, never blocks writers).
    pub fn checkpoint(&self, mode: CheckpointMode) -> CheckpointResult {
        // SAFETY: db and schema are the hook's arguments, valid during the hook; checkpointing
        // from inside the WAL hook is what SQLite's own auto-checkpoint does.
        unsafe { checkpoint_raw(self.db, self.schema, mode) }
    }
}

unsafe fn checkpoint_raw(db: *mut sys::sqlite3, schema: *const c_char, mode: CheckpointMode) -> CheckpointResult {
    let m = match mode {
        CheckpointMode::Passive => sys::SQLITE_CHECKPOINT_PASSIVE,
        CheckpointMode::Full => sys::SQLITE_CHECKPOINT_FULL,
        CheckpointMode::Truncate => sys::SQLITE_CHECKPOINT_TRUNCATE,
    };
    let (mut log, mut ckpt): (c_int, c_int) = (-1, -1);
    let rc = (routines().wal_checkpoint_v2.expect("host lacks sqlite3_wal_checkpoint_v2"))(db, schema, m, &mut log, &mut ckpt);
    CheckpointResult { rc, log, ckpt }
}

/// Checkpoints the main database of a connection the caller owns (the manager's).
pub fn checkpoint(conn: &Connection, mode: CheckpointMode) -> CheckpointResult {
    // SAFETY: live handle owned by `conn`, used by this thread only; "main" is NUL-terminated.
    unsafe { checkpoint_raw(conn.handle(), c"main".as_ptr(), mode) }
}

unsafe extern "C" fn x_wal_hook(arg: *mut c_void, db: *mut sys::sqlite3, schema: *const c_char, frames: c_int) -> c_int {
    // SAFETY: arg is the Box<dyn WalObserver> that `install` stored in the connection, which
    // outlives every call (the hook is removed before the connection closes).
    let obs = &*(arg as *const Box<dyn WalObserver>);
    let conn = WalConn { db, schema, _life: std::marker::PhantomData };
    let _ = catch_unwind(AssertUnwindSafe(|| obs.on_commit(&conn, frames.max(0) as u32)));
    sys::SQLITE_OK
}

/// Makes `obs` the WAL hook of `conn` (replacing SQLite's auto-checkpoint on it).
pub fn install(conn: &mut Connection, obs: Box<dyn WalObserver>) {
    let boxed: Box<Box<dyn WalObserver>> = Box::new(obs);
    let arg = &*boxed as *const Box<dyn WalObserver> as *mut c_void;
    // SAFETY: live handle; arg points into the heap allocation kept in `conn` until after close.
    unsafe {
        (routines().wal_hook.expect("host lacks sqlite3_wal_hook"))(conn.handle(), Some(x_wal_hook), arg);
    }
    conn.wal_observer = Some(boxed);
}

/// Name of the hidden function whose destructor frees a host connection's observer.
const GUARD: &str = "shardvt_wal_guard";

/// Makes `obs` the WAL hook of a host connection (one we do not own) until that connection
/// closes. The observer is the user data of a hidden function `shardvt_wal_guard` registered on
/// the connection: SQLite runs that function's destructor when the connection closes (after its
/// last commit, so after the last hook call) and the destructor drops the observer. Call at most
/// once per connection (registering the guard again would replace it, which SQLite refuses
/// while a statement runs); the caller keeps track.
pub fn install_on_host(db: HostDb, obs: Box<dyn WalObserver>) -> Result<()> {
    let arg = Box::into_raw(Box::new(obs)) as *mut c_void;
    let name = std::ffi::CString::new(GUARD).expect("no NUL");
    let r = routines();
    // SAFETY: db is the live host connection of the running function call; arg is a heap box
    // owned from now on by the function registration (freed by x_guard_destroy, also when the
    // registration fails: SQLite calls xDestroy then).
    let rc = unsafe {
        (r.create_function_v2.expect("host lacks sqlite3_create_function_v2"))(
            db.raw(),
            name.as_ptr(),
            0,
            sys::SQLITE_UTF8 | sys::SQLITE_DIRECTONLY,
            arg,
            Some(x_guard),
            None,
            None,
            Some(x_guard_destroy),
        )
    };
    if rc != sys::SQLITE_OK {
        return Err(Error::sqlite(rc, format!("shardvt_manage_wal: cannot register {GUARD} on this connection")));
    }
    // SAFETY: live handle; arg stays valid until the connection closes (see above).
    unsafe {
        (r.wal_hook.expect("host lacks sqlite3_wal_hook"))(db.raw(), Some(x_wal_hook), arg);
    }
    Ok(())
}

unsafe extern "C" fn x_guard(ctx: *mut sys::sqlite3_context, _argc: c_int, _argv: *mut *mut sys::sqlite3_value) {
    let msg = "shardvt_wal_guard: internal function of shardvt_manage_wal";
    // SAFETY: ctx valid during the call; the message length is given.
    (routines().result_error.expect("host lacks sqlite3_result_error"))(ctx, msg.as_ptr() as *const c_char, msg.len() as c_int);
}

unsafe extern "C" fn x_guard_destroy(arg: *mut c_void) {
    // SAFETY: arg is the Box<Box<dyn WalObserver>> made by install_on_host; SQLite calls this
    // once, when the connection closes (or the registration failed).
    let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(arg as *mut Box<dyn WalObserver>))));
}

/// Removes the hook before the connection is closed (called by `Connection::drop`).
pub(super) fn uninstall(db: *mut sys::sqlite3) {
    // SAFETY: live handle; a NULL callback unregisters.
    unsafe {
        (routines().wal_hook.expect("host lacks sqlite3_wal_hook"))(db, None, ptr::null_mut());
    }
}
