//! SQL function trampolines: `sqlite3_create_function_v2` callbacks → safe Rust functions.
//!
//! A scalar function is a plain `fn(&FnContext, &[ValueRef]) -> Result<Value>`; its pointer is
//! the function's user data. The trampoline catches panics, calls it, and sets the result or the
//! error (with its SQLite code). Flags (DETERMINISTIC / INNOCUOUS / DIRECTONLY) are chosen by the
//! caller in `entry.rs`, where every SQL name is registered.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CString};

use libsqlite3_sys as sys;

use super::api::{HostDb, ValueRef};
use super::vtab::guarded;
use crate::error::{Error, Result};
use crate::value::Value;

/// What a function can see of its call.
pub struct FnContext {
    db: HostDb,
}

impl FnContext {
    pub fn db(&self) -> HostDb {
        self.db
    }
}

pub type ScalarFn = fn(&FnContext, &[ValueRef<'_>]) -> Result<Value>;

pub(crate) fn result_value(ctx: *mut sys::sqlite3_context, v: &Value) {
    let r = super::api_routines();
    // SAFETY: ctx is valid for the duration of the callback; TRANSIENT makes SQLite copy.
    unsafe {
        match v {
            Value::Null => r.result_null.unwrap()(ctx),
            Value::Integer(i) => r.result_int64.unwrap()(ctx, *i),
            Value::Real(f) => r.result_double.unwrap()(ctx, *f),
            Value::Text(t) => r.result_text.unwrap()(ctx, t.as_ptr() as *const c_char, t.len() as c_int, sys::SQLITE_TRANSIENT()),
            Value::Blob(b) => r.result_blob.unwrap()(ctx, b.as_ptr() as *const c_void, b.len() as c_int, sys::SQLITE_TRANSIENT()),
        }
    }
}

pub(crate) fn result_error(ctx: *mut sys::sqlite3_context, e: &Error) {
    let r = super::api_routines();
    // SAFETY: ctx valid; result_error copies the message (length given).
    unsafe {
        r.result_error.unwrap()(ctx, e.message.as_ptr() as *const c_char, e.message.len() as c_int);
        r.result_error_code.unwrap()(ctx, e.code());
    }
}

unsafe extern "C" fn x_func(ctx: *mut sys::sqlite3_context, argc: c_int, argv: *mut *mut sys::sqlite3_value) {
    let r = super::api_routines();
    // SAFETY: user data is the ScalarFn pointer we registered.
    let f: ScalarFn = std::mem::transmute::<*mut c_void, ScalarFn>(r.user_data.unwrap()(ctx));
    let db = HostDb(r.context_db_handle.unwrap()(ctx) as usize);
    // SAFETY: argv has argc valid values for this call.
    let args: Vec<ValueRef<'_>> = (0..argc as usize).map(|i| ValueRef::from_raw(*argv.add(i))).collect();
    match guarded(|| f(&FnContext { db }, &args)) {
        Ok(v) => result_value(ctx, &v),
        Err(e) => result_error(ctx, &e),
    }
}

pub const DETERMINISTIC: i32 = sys::SQLITE_DETERMINISTIC;
pub const INNOCUOUS: i32 = sys::SQLITE_INNOCUOUS;
pub const DIRECTONLY: i32 = sys::SQLITE_DIRECTONLY;

/// Registers scalar function `name` with `n_args` arguments (-1: any).
pub fn register_scalar(db: HostDb, name: &str, n_args: i32, flags: i32, f: ScalarFn) -> Result<()> {
    let cname = CString::new(name).map_err(|_| Error::misuse("function name contains NUL"))?;
    let r = super::api_routines();
    // SAFETY: db live; user data is a plain fn pointer (no destructor needed).
    let rc = unsafe {
        r.create_function_v2.unwrap()(
            db.raw(),
            cname.as_ptr(),
            n_args,
            sys::SQLITE_UTF8 | flags,
            f as *mut c_void,
            Some(x_func),
            None,
            None,
            None,
        )
    };
    if rc != sys::SQLITE_OK {
        return Err(Error::sqlite(rc, format!("cannot register function {name}")));
    }
    Ok(())
}
