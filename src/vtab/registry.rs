//! Which `sharded` table objects are connected, per host connection (for the SQL functions).
//!
//! Functions such as `shardvt_route('events', key)` need the live table object of their host
//! connection. Each table registers the address of its boxed vtab (see `ffi::with_table_at`)
//! after xConnect and unregisters on drop, DROP TABLE and RENAME. Keys are (host connection,
//! schema, table) with names compared case-insensitively, as SQLite does.

use std::sync::Mutex;

use crate::ffi::api::HostDb;

struct Entry {
    db: HostDb,
    schema: String,
    name: String,
    addr: usize,
}

static REGISTRY: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

fn lock() -> std::sync::MutexGuard<'static, Vec<Entry>> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn register(db: HostDb, schema: &str, name: &str, addr: usize) {
    let mut r = lock();
    r.retain(|e| !(e.db == db && e.schema.eq_ignore_ascii_case(schema) && e.name.eq_ignore_ascii_case(name)));
    r.push(Entry { db, schema: schema.to_string(), name: name.to_string(), addr });
}

pub fn unregister(db: HostDb, schema: &str, name: &str) {
    lock().retain(|e| !(e.db == db && e.schema.eq_ignore_ascii_case(schema) && e.name.eq_ignore_ascii_case(name)));
}

pub fn unregister_addr(addr: usize) {
    lock().retain(|e| e.addr != addr);
}

/// The table's address; `schema` None searches main, then other schemas.
pub fn lookup(db: HostDb, schema: Option<&str>, name: &str) -> Option<usize> {
    let r = lock();
    let mut found: Vec<&Entry> = r
        .iter()
        .filter(|e| e.db == db && e.name.eq_ignore_ascii_case(name) && schema.map(|s| e.schema.eq_ignore_ascii_case(s)).unwrap_or(true))
        .collect();
    found.sort_by_key(|e| if e.schema.eq_ignore_ascii_case("main") { 0 } else { 1 });
    found.first().map(|e| e.addr)
}
