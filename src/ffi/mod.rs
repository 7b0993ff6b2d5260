//! The FFI shell: the only place with `unsafe`, `extern "C"` and raw pointers.
//!
//! - `api`: the host's routine table, owned `Connection`/`Statement`, borrowed `ValueRef`.
//! - `vtab`: `sqlite3_module` trampolines over the safe `VTab`/`VTabCursor` traits.
//! - `func`: scalar-function trampolines.
//! - `vfs`: the `shardvt` pass-through VFS (statistics and fault injection hooks).
//! - `walhook`: `sqlite3_wal_hook` trampoline and `sqlite3_wal_checkpoint_v2` for `crate::wal`.
//! - `shm`: a shared memory mapping of a small file (the outbox commit clock).
//! - `init`: `sqlite3_shardvt_init`, which installs the routines and calls `entry::register`.
//!
//! Every trampoline catches panics; see `vtab::guarded`.
#![allow(unsafe_code)]

pub mod api;
pub mod func;
pub mod init;
pub mod shm;
pub mod vfs;
pub mod vtab;
pub mod walhook;

pub(crate) fn api_routines() -> &'static libsqlite3_sys::sqlite3_api_routines {
    api::routines()
}

/// Runs `f` on the table object registered at `addr` (see `vtab::registry`).
///
/// The address is the `Table<T>` box made by `x_create`/`x_connect`; it is registered after
/// connect and unregistered when the table is dropped, so a registered address is live. The host
/// connection is used by one thread at a time, so no other reference is active during `f`.
pub fn with_table_at<T, R>(addr: usize, f: impl FnOnce(&mut T) -> R) -> R {
    #[repr(C)]
    struct Table<T> {
        base: libsqlite3_sys::sqlite3_vtab,
        inner: T,
    }
    // SAFETY: see the doc comment: addr is a live Table<T> registered by set_host_ptr.
    let t = unsafe { &mut (*(addr as *mut Table<T>)).inner };
    f(t)
}
