//! Virtual-table trampolines: SQLite's `sqlite3_module` callbacks → safe trait methods.
//!
//! Each `x_*` function is a few lines: catch panics (a panic unwinding out of an `extern "C"`
//! function would abort the host), turn raw pointers into Rust references, call one method of
//! [`VTab`] or [`VTabCursor`], and turn the `Result` into a SQLite code plus `zErrMsg`.
//!
//! Memory layout: SQLite allocates nothing for us. `x_create`/`x_connect` box a
//! `#[repr(C)] Table<T> { base: sqlite3_vtab, inner: T }` and hand SQLite the address of `base`
//! (the first field, so the cast back is valid); cursors likewise. `x_disconnect`/`x_destroy`
//! and `x_close` take the boxes back.
//!
//! The module is iVersion 3 (savepoints + xShadowName), which every host ≥ 3.26 reads; the
//! `xIntegrity` slot of iVersion 4 is left unset.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use libsqlite3_sys as sys;

use super::api::{cstr_to_string, sqlite_free, sqlite_strdup, HostDb, Statement, ValueRef};
use crate::error::{Error, Result};
use crate::value::Value;

// ---------------------------------------------------------------------------------------------
// The safe side

/// One usable-or-not constraint handed to xBestIndex.
#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    /// Column index; -1 is the rowid.
    pub column: i32,
    pub op: u8,
    pub usable: bool,
    /// Collating sequence SQLite will use for this comparison (sqlite3_vtab_collation).
    pub collation: String,
    /// For EQ constraints: the right-hand side is an IN list SQLite can hand over whole.
    pub can_handle_in: bool,
    /// The right-hand side when it is a constant known at plan time (sqlite3_vtab_rhs_value).
    pub rhs: Option<Value>,
}

pub struct IndexInfo<'a> {
    p: &'a mut sys::sqlite3_index_info,
}

impl<'a> IndexInfo<'a> {
    pub fn constraints(&self) -> Vec<Constraint> {
        let n = self.p.nConstraint as usize;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            // SAFETY: aConstraint has nConstraint entries during xBestIndex.
            let c = unsafe { &*self.p.aConstraint.add(i) };
            // SAFETY: i < nConstraint; collation strings are static or owned by SQLite.
            let coll = unsafe {
                let z = call_api(|r| r.vtab_collation.unwrap()(self.p as *const _ as *mut _, i as c_int));
                cstr_to_string(z)
            };
            let usable = c.usable != 0;
            let can_handle_in = usable
                && c.op as i32 == sys::SQLITE_INDEX_CONSTRAINT_EQ
                // SAFETY: probe only (-1): asks whether the constraint is an IN that can be handled whole.
                && unsafe { call_api(|r| r.vtab_in.unwrap()(self.p as *const _ as *mut _, i as c_int, -1)) } != 0;
            let rhs = if usable {
                let mut v: *mut sys::sqlite3_value = ptr::null_mut();
                // SAFETY: valid during xBestIndex; v is owned by SQLite.
                let rc = unsafe { call_api(|r| r.vtab_rhs_value.unwrap()(self.p as *const _ as *mut _, i as c_int, &mut v)) };
                if rc == sys::SQLITE_OK && !v.is_null() {
                    // SAFETY: v valid for this call.
                    Some(unsafe { ValueRef::from_raw(v) }.to_value())
                } else {
                    None
                }
            } else {
                None
            };
            out.push(Constraint { column: c.iColumn, op: c.op, usable, collation: coll, can_handle_in, rhs });
        }
        out
    }
    /// (column, desc) terms of ORDER BY.
    pub fn order_by(&self) -> Vec<(i32, bool)> {
        (0..self.p.nOrderBy as usize)
            .map(|i| {
                // SAFETY: aOrderBy has nOrderBy entries.
                let o = unsafe { &*self.p.aOrderBy.add(i) };
                (o.iColumn, o.desc != 0)
            })
            .collect()
    }
    pub fn col_used(&self) -> u64 {
        self.p.colUsed
    }
    /// sqlite3_vtab_distinct: 0 plain, 1 GROUP BY, 2 DISTINCT, 3 DISTINCT+ORDER BY.
    pub fn distinct(&self) -> i32 {
        // SAFETY: valid during xBestIndex (3.38+).
        unsafe { call_api(|r| r.vtab_distinct.unwrap()(self.p as *const _ as *mut _)) }
    }
    pub fn set_argv_index(&mut self, i: usize, argv_index: i32, omit: bool) {
        // SAFETY: aConstraintUsage has nConstraint entries.
        let u = unsafe { &mut *self.p.aConstraintUsage.add(i) };
        u.argvIndex = argv_index;
        u.omit = omit as u8;
    }
    /// Asks SQLite to hand the whole IN list of constraint `i` to xFilter.
    pub fn handle_in(&mut self, i: usize) {
        // SAFETY: valid during xBestIndex.
        unsafe { call_api(|r| r.vtab_in.unwrap()(self.p as *mut _, i as c_int, 1)) };
    }
    pub fn set_idx_num(&mut self, n: i32) {
        self.p.idxNum = n;
    }
    pub fn set_idx_str(&mut self, s: &str) {
        self.p.idxStr = sqlite_strdup(s);
        self.p.needToFreeIdxStr = 1;
    }
    pub fn set_order_by_consumed(&mut self, yes: bool) {
        self.p.orderByConsumed = yes as c_int;
    }
    pub fn set_estimated_cost(&mut self, c: f64) {
        self.p.estimatedCost = c;
    }
    pub fn set_estimated_rows(&mut self, n: i64) {
        self.p.estimatedRows = n;
    }
}

fn call_api<T>(f: impl FnOnce(&sys::sqlite3_api_routines) -> T) -> T {
    f(super::api_routines())
}

/// What xColumn writes its result into.
pub struct ColumnContext {
    ctx: *mut sys::sqlite3_context,
}

impl ColumnContext {
    pub fn set_value(&mut self, v: &Value) {
        super::func::result_value(self.ctx, v);
    }
    /// Copies the current row's column `i` of `stmt` straight into the result (no Rust copy).
    pub fn set_from_statement(&mut self, stmt: &Statement, i: usize) {
        let v = stmt.column_ref(i);
        // SAFETY: ctx is valid during xColumn; result_value copies the value.
        unsafe { call_api(|r| r.result_value.unwrap()(self.ctx, v.raw())) };
    }
    /// A value of a packed batch (`shard::batch`); SQLite copies text and blobs.
    pub fn set_cell(&mut self, c: crate::shard::batch::Cell<'_>) {
        use crate::shard::batch::Cell;
        let r = super::api_routines();
        // SAFETY: ctx valid during xColumn; TRANSIENT makes SQLite copy the bytes before we
        // return (slices of a batch are never null pointers, even when empty).
        unsafe {
            match c {
                Cell::Null => r.result_null.unwrap()(self.ctx),
                Cell::Int(i) => r.result_int64.unwrap()(self.ctx, i),
                Cell::Real(f) => r.result_double.unwrap()(self.ctx, f),
                Cell::Text(t) => r.result_text.unwrap()(self.ctx, t.as_ptr() as *const c_char, t.len() as c_int, sys::SQLITE_TRANSIENT()),
                Cell::Blob(b) => r.result_blob.unwrap()(self.ctx, b.as_ptr() as *const c_void, b.len() as c_int, sys::SQLITE_TRANSIENT()),
            }
        }
    }
    pub fn set_i64(&mut self, x: i64) {
        // SAFETY: ctx valid during xColumn.
        unsafe { call_api(|r| r.result_int64.unwrap()(self.ctx, x)) };
    }
    pub fn set_null(&mut self) {
        // SAFETY: ctx valid during xColumn.
        unsafe { call_api(|r| r.result_null.unwrap()(self.ctx)) };
    }
}

/// A virtual table implementation.
pub trait VTab: Sized {
    type Cursor: VTabCursor<Table = Self>;
    /// Parsed from `argv`: [module, schema, table, args...]. Returns the table and the
    /// `CREATE TABLE` text for sqlite3_declare_vtab.
    fn connect(db: HostDb, argv: &[String], create: bool) -> Result<(Self, String)>;
    fn best_index(&mut self, info: &mut IndexInfo<'_>) -> Result<()>;
    fn open(&mut self) -> Result<Self::Cursor>;
    /// DROP TABLE: remove storage. The table is dropped afterwards either way.
    fn destroy(&mut self) -> Result<()> {
        Ok(())
    }
    /// Called right after connect (declare_vtab done) to set per-table options.
    fn wants_constraint_support() -> bool {
        false
    }
    /// SQLITE_VTAB_DIRECTONLY: the table cannot be used from triggers or views of a schema
    /// (for tables that run queries or touch files on behalf of whoever wrote the schema).
    fn direct_only() -> bool {
        false
    }
    fn update(&mut self, _args: &[ValueRef<'_>]) -> Result<i64> {
        Err(Error::config("table is read-only"))
    }
    fn begin(&mut self) -> Result<()> {
        Ok(())
    }
    fn sync(&mut self) -> Result<()> {
        Ok(())
    }
    fn commit(&mut self) -> Result<()> {
        Ok(())
    }
    fn rollback(&mut self) -> Result<()> {
        Ok(())
    }
    fn savepoint(&mut self, _n: i32) -> Result<()> {
        Ok(())
    }
    fn release(&mut self, _n: i32) -> Result<()> {
        Ok(())
    }
    fn rollback_to(&mut self, _n: i32) -> Result<()> {
        Ok(())
    }
    fn rename(&mut self, _new_name: &str) -> Result<()> {
        Err(Error::config("rename is not supported"))
    }
    fn set_host_ptr(&mut self, _addr: usize) {}
}

pub trait VTabCursor: Sized {
    type Table;
    fn filter(&mut self, table: &mut Self::Table, idx_num: i32, idx_str: Option<&str>, args: &[ValueRef<'_>]) -> Result<()>;
    fn next(&mut self, table: &mut Self::Table) -> Result<()>;
    fn eof(&self) -> bool;
    fn column(&mut self, table: &mut Self::Table, ctx: &mut ColumnContext, i: usize) -> Result<()>;
    fn rowid(&mut self, table: &mut Self::Table) -> Result<i64>;
    fn close(self, _table: &mut Self::Table) {}
}

// ---------------------------------------------------------------------------------------------
// The unsafe shell

#[repr(C)]
struct Table<T> {
    base: sys::sqlite3_vtab,
    inner: T,
}

#[repr(C)]
struct Cursor<C> {
    base: sys::sqlite3_vtab_cursor,
    inner: C,
}

fn panic_message(e: Box<dyn std::any::Any + Send>) -> Error {
    let m = if let Some(s) = e.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = e.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    };
    Error::internal(format!("sharded: internal error (please report): {m}"))
}

/// Runs `f`, converting a panic into an Error.
pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(e) => Err(panic_message(e)),
    }
}

/// SAFETY: vtab must be the `base` of a live `Table<T>`.
unsafe fn set_vtab_error(vtab: *mut sys::sqlite3_vtab, e: &Error) -> c_int {
    if !(*vtab).zErrMsg.is_null() {
        sqlite_free((*vtab).zErrMsg as *mut c_void);
    }
    (*vtab).zErrMsg = sqlite_strdup(&e.message);
    e.code()
}

/// SAFETY: vtab must be the `base` of a live `Table<T>`; no other reference to it is alive.
unsafe fn table<'a, T>(vtab: *mut sys::sqlite3_vtab) -> &'a mut T {
    &mut (*(vtab as *mut Table<T>)).inner
}

unsafe fn result_code<T>(vtab: *mut sys::sqlite3_vtab, r: Result<T>) -> c_int {
    match r {
        Ok(_) => sys::SQLITE_OK,
        Err(e) => set_vtab_error(vtab, &e),
    }
}

unsafe fn connect_impl<T: VTab>(
    db: *mut sys::sqlite3,
    argc: c_int,
    argv: *const *const c_char,
    pp: *mut *mut sys::sqlite3_vtab,
    err: *mut *mut c_char,
    create: bool,
) -> c_int {
    let args: Vec<String> = (0..argc as usize).map(|i| cstr_to_string(*argv.add(i))).collect();
    let host = HostDb(db as usize);
    let r = guarded(|| {
        let (t, schema) = T::connect(host, &args, create)?;
        let c = CString::new(schema).map_err(|_| Error::misuse("schema contains NUL"))?;
        // SAFETY: db is the connection calling xCreate/xConnect.
        let rc = call_api(|r| r.declare_vtab.unwrap()(db, c.as_ptr()));
        if rc != sys::SQLITE_OK {
            return Err(Error::sqlite(rc, format!("sharded: cannot declare table schema: {}", host.errmsg())));
        }
        if T::wants_constraint_support() {
            call_api(|r| r.vtab_config.unwrap()(db, sys::SQLITE_VTAB_CONSTRAINT_SUPPORT, 1 as c_int));
        }
        if T::direct_only() {
            call_api(|r| r.vtab_config.unwrap()(db, sys::SQLITE_VTAB_DIRECTONLY));
        }
        Ok(t)
    });
    match r {
        Ok(t) => {
            let b = Box::new(Table { base: sys::sqlite3_vtab::default(), inner: t });
            let raw = Box::into_raw(b);
            (*raw).inner.set_host_ptr(raw as usize);
            *pp = raw as *mut sys::sqlite3_vtab;
            sys::SQLITE_OK
        }
        Err(e) => {
            *err = sqlite_strdup(&e.message);
            e.code()
        }
    }
}

/// xCreate (`CREATE = true`) and xConnect (`false`): one trampoline, two instantiations.
unsafe extern "C" fn x_create_or_connect<T: VTab, const CREATE: bool>(
    db: *mut sys::sqlite3,
    _aux: *mut c_void,
    argc: c_int,
    argv: *const *const c_char,
    pp: *mut *mut sys::sqlite3_vtab,
    err: *mut *mut c_char,
) -> c_int {
    connect_impl::<T>(db, argc, argv, pp, err, CREATE)
}

unsafe extern "C" fn x_best_index<T: VTab>(vtab: *mut sys::sqlite3_vtab, info: *mut sys::sqlite3_index_info) -> c_int {
    // SAFETY: SQLite passes our vtab and a valid index-info for the duration of the call.
    let r = guarded(|| table::<T>(vtab).best_index(&mut IndexInfo { p: &mut *info }));
    result_code(vtab, r)
}

unsafe extern "C" fn x_disconnect<T: VTab>(vtab: *mut sys::sqlite3_vtab) -> c_int {
    // SAFETY: SQLite gives the table back exactly once.
    let b = Box::from_raw(vtab as *mut Table<T>);
    let _ = catch_unwind(AssertUnwindSafe(move || drop(b)));
    sys::SQLITE_OK
}

unsafe extern "C" fn x_destroy<T: VTab>(vtab: *mut sys::sqlite3_vtab) -> c_int {
    let r = guarded(|| table::<T>(vtab).destroy());
    match r {
        Ok(()) => x_disconnect::<T>(vtab),
        Err(e) => set_vtab_error(vtab, &e),
    }
}

unsafe extern "C" fn x_open<T: VTab>(vtab: *mut sys::sqlite3_vtab, pp: *mut *mut sys::sqlite3_vtab_cursor) -> c_int {
    let r = guarded(|| table::<T>(vtab).open());
    match r {
        Ok(c) => {
            let b = Box::new(Cursor { base: sys::sqlite3_vtab_cursor::default(), inner: c });
            *pp = Box::into_raw(b) as *mut sys::sqlite3_vtab_cursor;
            sys::SQLITE_OK
        }
        Err(e) => set_vtab_error(vtab, &e),
    }
}

unsafe fn cursor_parts<'a, T: VTab>(cur: *mut sys::sqlite3_vtab_cursor) -> (&'a mut T::Cursor, &'a mut T, *mut sys::sqlite3_vtab) {
    let vtab = (*cur).pVtab;
    (&mut (*(cur as *mut Cursor<T::Cursor>)).inner, table::<T>(vtab), vtab)
}

unsafe extern "C" fn x_close<T: VTab>(cur: *mut sys::sqlite3_vtab_cursor) -> c_int {
    let vtab = (*cur).pVtab;
    // SAFETY: SQLite closes each cursor exactly once.
    let b = Box::from_raw(cur as *mut Cursor<T::Cursor>);
    let t = table::<T>(vtab);
    let _ = catch_unwind(AssertUnwindSafe(move || b.inner.close(t)));
    sys::SQLITE_OK
}

unsafe extern "C" fn x_filter<T: VTab>(
    cur: *mut sys::sqlite3_vtab_cursor,
    idx_num: c_int,
    idx_str: *const c_char,
    argc: c_int,
    argv: *mut *mut sys::sqlite3_value,
) -> c_int {
    let (c, t, vtab) = cursor_parts::<T>(cur);
    let s = if idx_str.is_null() { None } else { CStr::from_ptr(idx_str).to_str().ok() };
    let args: Vec<ValueRef<'_>> = (0..argc as usize).map(|i| ValueRef::from_raw(*argv.add(i))).collect();
    result_code(vtab, guarded(|| c.filter(t, idx_num, s, &args)))
}

unsafe extern "C" fn x_next<T: VTab>(cur: *mut sys::sqlite3_vtab_cursor) -> c_int {
    let (c, t, vtab) = cursor_parts::<T>(cur);
    result_code(vtab, guarded(|| c.next(t)))
}

unsafe extern "C" fn x_eof<T: VTab>(cur: *mut sys::sqlite3_vtab_cursor) -> c_int {
    let (c, _, _) = cursor_parts::<T>(cur);
    match catch_unwind(AssertUnwindSafe(|| c.eof())) {
        Ok(b) => b as c_int,
        Err(_) => 1,
    }
}

unsafe extern "C" fn x_column<T: VTab>(cur: *mut sys::sqlite3_vtab_cursor, ctx: *mut sys::sqlite3_context, i: c_int) -> c_int {
    let (c, t, _) = cursor_parts::<T>(cur);
    let mut cc = ColumnContext { ctx };
    match guarded(|| c.column(t, &mut cc, i as usize)) {
        Ok(()) => sys::SQLITE_OK,
        Err(e) => {
            super::func::result_error(ctx, &e);
            e.code()
        }
    }
}

unsafe extern "C" fn x_rowid<T: VTab>(cur: *mut sys::sqlite3_vtab_cursor, out: *mut sys::sqlite3_int64) -> c_int {
    let (c, t, vtab) = cursor_parts::<T>(cur);
    match guarded(|| c.rowid(t)) {
        Ok(r) => {
            *out = r;
            sys::SQLITE_OK
        }
        Err(e) => set_vtab_error(vtab, &e),
    }
}

unsafe extern "C" fn x_update<T: VTab>(
    vtab: *mut sys::sqlite3_vtab,
    argc: c_int,
    argv: *mut *mut sys::sqlite3_value,
    out: *mut sys::sqlite3_int64,
) -> c_int {
    let args: Vec<ValueRef<'_>> = (0..argc as usize).map(|i| ValueRef::from_raw(*argv.add(i))).collect();
    match guarded(|| table::<T>(vtab).update(&args)) {
        Ok(r) => {
            *out = r;
            sys::SQLITE_OK
        }
        Err(e) => set_vtab_error(vtab, &e),
    }
}

macro_rules! txn_trampoline {
    ($name:ident, $method:ident) => {
        unsafe extern "C" fn $name<T: VTab>(vtab: *mut sys::sqlite3_vtab) -> c_int {
            result_code(vtab, guarded(|| table::<T>(vtab).$method()))
        }
    };
    ($name:ident, $method:ident, int) => {
        unsafe extern "C" fn $name<T: VTab>(vtab: *mut sys::sqlite3_vtab, n: c_int) -> c_int {
            result_code(vtab, guarded(|| table::<T>(vtab).$method(n)))
        }
    };
}
txn_trampoline!(x_begin, begin);
txn_trampoline!(x_sync, sync);
txn_trampoline!(x_commit, commit);
txn_trampoline!(x_rollback, rollback);
txn_trampoline!(x_savepoint, savepoint, int);
txn_trampoline!(x_release, release, int);
txn_trampoline!(x_rollback_to, rollback_to, int);

unsafe extern "C" fn x_rename<T: VTab>(vtab: *mut sys::sqlite3_vtab, new: *const c_char) -> c_int {
    let name = cstr_to_string(new);
    result_code(vtab, guarded(|| table::<T>(vtab).rename(&name)))
}

unsafe extern "C" fn x_shadow_name(_name: *const c_char) -> c_int {
    0
}

unsafe extern "C" fn x_destroy_module(p: *mut c_void) {
    // SAFETY: p is the Box<sqlite3_module> we registered.
    drop(Box::from_raw(p as *mut sys::sqlite3_module));
}

/// How a module is exposed.
pub enum ModuleKind {
    /// CREATE VIRTUAL TABLE ... USING name(...)
    Regular,
    /// Only as an eponymous table-valued function (no CREATE).
    EponymousOnly,
}

/// Registers module `name` implemented by `T` on connection `db`.
pub fn register_module<T: VTab>(db: HostDb, name: &str, kind: ModuleKind, writable: bool) -> Result<()> {
    let m = sys::sqlite3_module {
        iVersion: 3,
        xCreate: match kind {
            ModuleKind::Regular => Some(x_create_or_connect::<T, true>),
            ModuleKind::EponymousOnly => None,
        },
        xConnect: Some(x_create_or_connect::<T, false>),
        xBestIndex: Some(x_best_index::<T>),
        xDisconnect: Some(x_disconnect::<T>),
        xDestroy: Some(x_destroy::<T>),
        xOpen: Some(x_open::<T>),
        xClose: Some(x_close::<T>),
        xFilter: Some(x_filter::<T>),
        xNext: Some(x_next::<T>),
        xEof: Some(x_eof::<T>),
        xColumn: Some(x_column::<T>),
        xRowid: Some(x_rowid::<T>),
        xUpdate: if writable { Some(x_update::<T>) } else { None },
        xBegin: if writable { Some(x_begin::<T>) } else { None },
        xSync: if writable { Some(x_sync::<T>) } else { None },
        xCommit: if writable { Some(x_commit::<T>) } else { None },
        xRollback: if writable { Some(x_rollback::<T>) } else { None },
        xFindFunction: None,
        xRename: if writable { Some(x_rename::<T>) } else { None },
        xSavepoint: if writable { Some(x_savepoint::<T>) } else { None },
        xRelease: if writable { Some(x_release::<T>) } else { None },
        xRollbackTo: if writable { Some(x_rollback_to::<T>) } else { None },
        xShadowName: Some(x_shadow_name),
        xIntegrity: None,
    };
    let boxed = Box::into_raw(Box::new(m));
    let cname = CString::new(name).map_err(|_| Error::misuse("module name contains NUL"))?;
    // SAFETY: db is a live connection; boxed lives until SQLite calls x_destroy_module.
    let rc = unsafe {
        call_api(|r| r.create_module_v2.unwrap()(db.raw(), cname.as_ptr(), boxed, boxed as *mut c_void, Some(x_destroy_module)))
    };
    if rc != sys::SQLITE_OK {
        return Err(Error::sqlite(rc, format!("cannot register module {name}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_errors() {
        let r: Result<()> = guarded(|| panic!("boom"));
        let e = r.unwrap_err();
        assert_eq!(e.code(), crate::error::codes::INTERNAL);
        assert!(e.message.contains("internal error") && e.message.contains("boom"), "{}", e.message);
        assert_eq!(guarded(|| Ok(7)).unwrap(), 7);
    }
}
