//! `<dir>/outbox.db`: the consumers' positions (schema in `sql/outbox_store.sql`), and the
//! table-wide commit clock (`clock`, `<dir>/outbox.clock`).
//!
//! - Clock: every host transaction that wrote outbox rows takes one commit sequence number (csn)
//!   in xSync, while it still holds the write locks of all its shards:
//!   `csn = max(previous csn + 1, unix time in µs)`, an atomic compare-and-swap on a counter
//!   shared by every process (`clock`). The time term keeps csns increasing even if a power loss
//!   rolled the counter back, and makes a csn readable as a time. When the clock is opened its
//!   counter is raised to every consumer's position and to the `clock` table of older versions.
//! - Consumers: `(name, csn, tn)` = the last acknowledged position. Acks run with
//!   `synchronous=FULL` (an acknowledged position survives a power loss). Positions only move
//!   forward. `drop_consumer` forgets one.
//!
//! Both files are opened lazily and created on first use inside the table's existing folder;
//! `close` lets ALTER TABLE RENAME move the folder.

use std::path::Path;

use crate::error::Result;
use crate::ffi::api::{Connection, OPEN_CREATE, OPEN_READWRITE};
use crate::shard::BUSY_TIMEOUT_MS;
use crate::value::Value;

use super::clock::{Clock, CLOCK_FILE};
use super::envelope::Position;

pub const OUTBOX_FILE: &str = "outbox.db";
const SCHEMA: &str = include_str!("../../sql/outbox_store.sql");
/// The floor of a newly opened clock: the clock row of older versions, every consumer's position.
const CLOCK_FLOOR: &str =
    "SELECT max(coalesce((SELECT max(csn) FROM clock), 0), coalesce((SELECT max(csn) FROM consumers), 0))";

/// A registered consumer as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumer {
    pub name: String,
    pub position: Position,
    pub created: f64,
    pub acked: Option<f64>,
}

#[derive(Default)]
pub struct Store {
    clock: Option<Clock>,
    conn: Option<Connection>,
}

pub fn now_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn now_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

impl Store {
    /// Removes a stale outbox.db (CREATE of a new table in a folder a DROP did not finish).
    pub fn remove_stale(dir: &Path) {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.join(format!("{OUTBOX_FILE}{ext}")));
        }
        let _ = std::fs::remove_file(dir.join(CLOCK_FILE));
    }

    fn conn(&mut self, dir: &Path) -> Result<&Connection> {
        if self.conn.is_none() {
            let conn = Connection::open(&dir.join(OUTBOX_FILE).to_string_lossy(), OPEN_READWRITE | OPEN_CREATE)
                .map_err(|e| e.context("sharded: cannot open the outbox store"))?;
            conn.busy_timeout(BUSY_TIMEOUT_MS);
            conn.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")?;
            conn.exec(SCHEMA)?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_ref().unwrap())
    }

    /// Closes the file (it is reopened on next use, possibly in a moved folder).
    pub fn close(&mut self) {
        self.clock = None;
        self.conn = None;
    }

    fn clock_of(&mut self, dir: &Path) -> Result<&Clock> {
        if self.clock.is_none() {
            let mut st = self.conn(dir)?.prepare(CLOCK_FLOOR)?;
            st.step()?;
            let floor = st.column_i64(0);
            drop(st);
            self.clock = Some(Clock::open(dir, floor)?);
        }
        Ok(self.clock.as_ref().unwrap())
    }

    /// Allocates the next commit sequence number.
    pub fn next_csn(&mut self, dir: &Path) -> Result<i64> {
        Ok(self.clock_of(dir)?.next(now_micros()))
    }

    /// The last allocated csn (0 before the first commit).
    pub fn clock(&mut self, dir: &Path) -> Result<i64> {
        Ok(self.clock_of(dir)?.current())
    }

    /// Forgets a consumer (its position no longer holds changes back). Returns whether it existed.
    pub fn drop_consumer(&mut self, dir: &Path, name: &str) -> Result<bool> {
        let conn = self.conn(dir)?;
        let mut st = conn.prepare("DELETE FROM consumers WHERE name = ?1")?;
        st.bind(1, &Value::text(name))?;
        st.step()?;
        drop(st);
        Ok(conn.changes() > 0)
    }

    pub fn consumers(&mut self, dir: &Path) -> Result<Vec<Consumer>> {
        let mut st = self.conn(dir)?.prepare("SELECT name, csn, tn, created, acked FROM consumers ORDER BY name")?;
        let mut out = Vec::new();
        while st.step()? {
            out.push(Consumer {
                name: String::from_utf8_lossy(&st.column_value(0).to_text()).into_owned(),
                position: Position { csn: st.column_i64(1), tn: st.column_i64(2) },
                created: match st.column_value(3) {
                    Value::Real(f) => f,
                    Value::Integer(i) => i as f64,
                    _ => 0.0,
                },
                acked: match st.column_value(4) {
                    Value::Real(f) => Some(f),
                    Value::Integer(i) => Some(i as f64),
                    _ => None,
                },
            });
        }
        Ok(out)
    }

    /// The consumer's position; registers it at [`Position::ZERO`] when new.
    pub fn position(&mut self, dir: &Path, name: &str) -> Result<Position> {
        let conn = self.conn(dir)?;
        let mut st = conn.prepare("SELECT csn, tn FROM consumers WHERE name = ?1")?;
        st.bind(1, &Value::text(name))?;
        if st.step()? {
            return Ok(Position { csn: st.column_i64(0), tn: st.column_i64(1) });
        }
        drop(st);
        let mut ins = conn.prepare("INSERT OR IGNORE INTO consumers(name, csn, tn, created) VALUES (?1, 0, 0, ?2)")?;
        ins.bind(1, &Value::text(name))?;
        ins.bind(2, &Value::Real(now_secs()))?;
        ins.step()?;
        Ok(Position::ZERO)
    }

    /// Moves the consumer forward to `to` (never back), durably; returns its position after.
    pub fn ack(&mut self, dir: &Path, name: &str, to: Position) -> Result<Position> {
        let conn = self.conn(dir)?;
        conn.exec("PRAGMA synchronous=FULL")?;
        let r = (|| -> Result<Position> {
            let mut st = conn.prepare(
                "INSERT INTO consumers(name, csn, tn, created, acked) VALUES (?1, ?2, ?3, ?4, ?4) \
                 ON CONFLICT(name) DO UPDATE SET csn = excluded.csn, tn = excluded.tn, acked = excluded.acked \
                 WHERE (excluded.csn, excluded.tn) > (consumers.csn, consumers.tn)",
            )?;
            st.bind(1, &Value::text(name))?;
            st.bind_i64(2, to.csn)?;
            st.bind_i64(3, to.tn)?;
            st.bind(4, &Value::Real(now_secs()))?;
            st.step()?;
            drop(st);
            let mut q = conn.prepare("SELECT csn, tn FROM consumers WHERE name = ?1")?;
            q.bind(1, &Value::text(name))?;
            q.step()?;
            Ok(Position { csn: q.column_i64(0), tn: q.column_i64(1) })
        })();
        let _ = conn.exec("PRAGMA synchronous=NORMAL");
        r
    }
}
