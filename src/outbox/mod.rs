//! The transactional outbox of a table created with `outbox=on`: every committed INSERT,
//! UPDATE and DELETE, exported in a total order as Debezium-style change envelopes.
//!
//! CAPTURE (`capture`). Each row change also appends a row to `_shardvt_outbox` in the same
//! shard file, in the same shard transaction (staged in memory, written at xSync) (so a change is exported iff it committed;
//! statement rollback, ROLLBACK TO and ROLLBACK undo outbox rows with the data):
//! - INSERT → `c` (after image as stored: built from the inserted values when affinity's effect
//!   is certain, else read back, so DEFAULTs and affinity are applied);
//! - UPDATE → `u` with the before image (read in the transaction before the write) and after;
//! - DELETE → `d` with the before image;
//! - a shard-key UPDATE that moves the row is ONE `u`, recorded in the destination shard (the
//!   move's transaction holds both shards, so no order is lost by choosing either);
//! - rows that `OR REPLACE` deletes (a conflicting rowid or UNIQUE value, in this or another
//!   shard) are each a `d`, recorded before the `c`/`u` of the row that replaced them.
//!
//! ORDER. A table-wide clock (`store`, `outbox.db`) gives each host transaction that wrote
//! outbox rows one commit sequence number, `csn`, in xSync while it still holds the write
//! locks of all its shards; `tn` numbers the transaction's changes 1, 2, … in the order they
//! were made. Export order is `(csn, tn)`:
//! - per shard it is commit order (seq): later transactions on a shard get larger csns;
//! - changes of one row never reorder: a row lives in one shard and every change of it holds
//!   that shard's lock, a move holds both shards; inside a transaction tn is program order;
//! - causally later transactions come later even on other shards (a transaction that read a
//!   committed change takes its csn after that change's csn was allocated).
//!
//! An export reads the clock C first, then waits on each shard for writers that may hold a
//! csn <= C (`feed::barrier`), resolves interrupted multi-shard commits, then returns changes
//! with csn <= C: those are final, so exports never skip or reorder.
//!
//! DELIVERY. `shardvt_outbox_export(table, consumer, max)` returns the next changes after the
//! consumer's acknowledged position; without an ack it returns them again (at-least-once).
//! `shardvt_outbox_ack(table, consumer, cursor)` durably moves the consumer to the cursor's
//! position (never backwards), then deletes the changes every registered consumer has passed.
//! A consumer is registered by its first export or ack; one that never acks keeps changes from
//! being purged (writers are never blocked) and shows its lag in `shardvt_outbox_stats`.
//!
//! REDO COVERAGE. A multi-shard transaction's redo record (`txn`) also carries its outbox rows,
//! sealed with their csn (txlog.db `redo_side`), so recovery restores them with the data.
//!
//! NOT SUPPORTED: filtering by column, schema-change events, snapshots of existing rows (only
//! changes made after the table was created are captured — it has no rows before that), and
//! concurrent exporters sharing one consumer name (each name belongs to one process at a time).

pub mod capture;
pub mod clock;
pub mod envelope;
pub mod feed;
pub mod packed;
pub mod redo;
pub mod store;

pub use capture::{apply_redo, create_tables, Capture, Op, Record};
pub use store::OUTBOX_FILE;

/// The outbox table inside every shard file (`sql/outbox_shard.sql`).
pub const SHARD_DDL: &str = include_str!("../../sql/outbox_shard.sql");
pub const OUTBOX_TABLE: &str = "_shardvt_outbox";
/// Upper bound of `max_changes` in one export.
pub const MAX_EXPORT: i64 = 10_000_000;
