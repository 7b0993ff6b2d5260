//! `sqlite3_shardvt_init`: the extension's entry point (derived by SQLite from `libshardvt.so`).
//!
//! Installs the host's routine table (refusing hosts older than the floor and a second SQLite
//! library in one process), then calls `entry::register`, the one place that lists every SQL
//! name. Returns `SQLITE_OK_LOAD_PERMANENTLY` so the library stays mapped for the life of the
//! process: process-wide state (the routine table, the open-table registry) outlives connections.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int};

use libsqlite3_sys as sys;

use super::api::{install, sqlite_strdup, HostDb};
use super::vtab::guarded;

/// # Safety
/// Called by SQLite's extension loader with a live connection and its routine table.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_shardvt_init(
    db: *mut sys::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *const sys::sqlite3_api_routines,
) -> c_int {
    let set_err = |msg: &str| {
        if !pz_err_msg.is_null() {
            // Before install succeeded we cannot use sqlite3_malloc safely: use the host's
            // routine table directly only if it is present.
            if let Some(malloc) = p_api.as_ref().and_then(|a| a.malloc) {
                let p = malloc(msg.len() as c_int + 1) as *mut c_char;
                if !p.is_null() {
                    std::ptr::copy_nonoverlapping(msg.as_ptr() as *const c_char, p, msg.len());
                    *p.add(msg.len()) = 0;
                    *pz_err_msg = p;
                }
            }
        }
    };
    if let Err(msg) = install(p_api) {
        set_err(&msg);
        return sys::SQLITE_ERROR;
    }
    match guarded(|| crate::entry::register(HostDb(db as usize))) {
        Ok(()) => sys::SQLITE_OK_LOAD_PERMANENTLY,
        Err(e) => {
            if !pz_err_msg.is_null() {
                *pz_err_msg = sqlite_strdup(&e.message);
            }
            e.code()
        }
    }
}
