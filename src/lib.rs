//! libshardvt: sharded tables for SQLite, as a loadable extension.
//!
//! DATA FLOW. `CREATE VIRTUAL TABLE t USING sharded(<columns>, shard_key=k, ...)` parses its
//! arguments (`config`), creates a folder with a catalog (`shard::catalog`) and the shard files
//! (`shard::conn`), each a plain SQLite database in WAL mode holding a table `data` with the
//! user's column definitions. A write routes the shard key, after column affinity, to one shard
//! (`routing::hash`: XXH64 → virtual bucket → shard file; `routing::prefix`: one file per
//! prefix). A read is planned in xBestIndex (`planner`), pruned to the shards that can hold
//! matching keys (`routing::prune`), sent to each shard as SQL, and merged in order (`merge`).
//!
//! FILES ON DISK (see ARCHITECTURE.md): `<dir>/catalog.db`, `<dir>/shard-NNNN.db` (hash) or
//! `<dir>/p-<prefix>-<hash>.db` (prefix), each with its `-wal`/`-shm`.
//!
//! ATOMICITY. Each shard's part of a transaction is atomic and durable per SQLite's WAL rules.
//! A transaction that wrote to several shards commits them one after the other: without a crash
//! it behaves like one transaction (including ROLLBACK, savepoints and statement rollback); a
//! crash between two shard commits can leave a partial transaction (documented in README).
//!
//! CHECKPOINTS (`wal`). Shard connections do not checkpoint inline: a per-process thread drains
//! their WALs in the background, the writer finishes a tiny tail so the WAL rewinds, idle shards
//! are truncated to a 0-byte WAL (modes `managed`/`stock`/`external`, `shardvt_checkpoint_mode`).
//!
//! SAFETY. `#![deny(unsafe_code)]` holds everywhere except `ffi/`, which holds every raw pointer
//! and catches every panic before it can reach SQLite.
#![deny(unsafe_code)]

pub mod agg;
pub mod config;
pub mod entry;
pub mod error;
pub mod ffi;
pub mod functions;
pub mod json;
pub mod merge;
pub mod outbox;
pub mod planner;
pub mod routing;
pub mod shard;
pub mod txn;
pub mod value;
pub mod vfs;
pub mod vtab;
pub mod wal;
