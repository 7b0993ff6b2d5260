//! One error type for the whole extension, and its single mapping to SQLite result codes.
//!
//! Every error carries the message the user will read. Messages speak in SQLite's voice, name the
//! object, and say what to do: `sharded: unknown option "shardz" (expected one of: ...)`.
//! [`Error::code`] is the one exhaustive match from error kind to result code; the FFI shell
//! uses it for every callback return.

use std::fmt;

/// SQLite primary result codes we produce (values from sqlite3.h; stable forever).
pub mod codes {
    pub const ERROR: i32 = 1;
    pub const INTERNAL: i32 = 2;
    pub const BUSY: i32 = 5;
    pub const NOMEM: i32 = 7;
    pub const READONLY: i32 = 8;
    pub const IOERR: i32 = 10;
    pub const CORRUPT: i32 = 11;
    pub const CANTOPEN: i32 = 14;
    pub const CONSTRAINT: i32 = 19;
    pub const MISMATCH: i32 = 20;
    pub const MISUSE: i32 = 21;
}

#[derive(Debug, Clone, PartialEq)]
pub enum ErrorKind {
    /// Bad `USING sharded(...)` arguments or function arguments.
    Config,
    /// An error SQLite itself reported (from a shard or catalog connection), with its code.
    Sqlite(i32),
    /// A uniqueness violation we detected across shards (rowid / INTEGER PRIMARY KEY).
    Constraint,
    /// A value of the wrong type where an integer rowid is required.
    Mismatch,
    /// The catalog is missing, of another table, or of an unknown format version.
    Catalog,
    /// A shard file is missing, replaced or unreadable.
    Shard,
    /// A caller broke an API rule (NUL in a string, wrong argument count...).
    Misuse,
    /// A Rust panic was caught at the boundary.
    Internal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn config(msg: impl Into<String>) -> Self {
        Error { kind: ErrorKind::Config, message: msg.into() }
    }
    pub fn sqlite(code: i32, msg: String) -> Self {
        Error { kind: ErrorKind::Sqlite(code), message: msg }
    }
    pub fn constraint(msg: impl Into<String>) -> Self {
        Error { kind: ErrorKind::Constraint, message: msg.into() }
    }
    /// A row skipped under ON CONFLICT IGNORE: SQLite turns SQLITE_CONSTRAINT into "skip this
    /// row" (not counted in changes(), no last_insert_rowid) when the mode is IGNORE.
    pub fn ignored() -> Self {
        Error { kind: ErrorKind::Constraint, message: String::new() }
    }
    pub fn mismatch() -> Self {
        Error { kind: ErrorKind::Mismatch, message: "datatype mismatch".into() }
    }
    pub fn catalog(msg: impl Into<String>) -> Self {
        Error { kind: ErrorKind::Catalog, message: msg.into() }
    }
    pub fn shard(msg: impl Into<String>) -> Self {
        Error { kind: ErrorKind::Shard, message: msg.into() }
    }
    pub fn misuse(msg: impl Into<String>) -> Self {
        Error { kind: ErrorKind::Misuse, message: msg.into() }
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Error { kind: ErrorKind::Internal, message: msg.into() }
    }
    /// Prefixes the message with context, keeping the kind.
    pub fn context(mut self, ctx: &str) -> Self {
        self.message = format!("{ctx}: {}", self.message);
        self
    }

    /// The SQLite result code for this error (the one exhaustive mapping).
    pub fn code(&self) -> i32 {
        match self.kind {
            ErrorKind::Config => codes::ERROR,
            ErrorKind::Sqlite(c) => c,
            // primary code: SQLite applies ON CONFLICT to a vtab only for exactly SQLITE_CONSTRAINT
            ErrorKind::Constraint => codes::CONSTRAINT,
            ErrorKind::Mismatch => codes::MISMATCH,
            ErrorKind::Catalog => codes::ERROR,
            ErrorKind::Shard => codes::CANTOPEN,
            ErrorKind::Misuse => codes::MISUSE,
            ErrorKind::Internal => codes::INTERNAL,
        }
    }
    pub fn is_constraint(&self) -> bool {
        self.code() & 0xff == codes::CONSTRAINT
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn codes_map() {
        assert_eq!(Error::config("x").code(), codes::ERROR);
        assert_eq!(Error::constraint("x").code() & 0xff, codes::CONSTRAINT);
        assert!(Error::sqlite(2067, "UNIQUE".into()).is_constraint());
        assert_eq!(Error::mismatch().code(), codes::MISMATCH);
        assert_eq!(Error::shard("gone").context("sharded").message, "sharded: gone");
    }
}
