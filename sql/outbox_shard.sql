-- The outbox inside every shard file of a table created with outbox=on (see ARCHITECTURE.md §8).
-- Written in the same shard transaction as the row change it describes.
CREATE TABLE IF NOT EXISTS _shardvt_outbox(
  seq    INTEGER PRIMARY KEY AUTOINCREMENT,  -- per shard, commit order; never reused
  txid   TEXT NOT NULL,                      -- host transaction id (16 hex digits), same on every shard
  tn     INTEGER NOT NULL,                   -- change number inside the host transaction (1, 2, ...)
  op     TEXT NOT NULL,                      -- 'c' insert, 'u' update, 'd' delete
  rid    INTEGER NOT NULL,                   -- the row's rowid (after the change for 'u')
  before TEXT,                               -- JSON object of the row before ('u', 'd')
  after  TEXT,                               -- JSON object of the row after ('c', 'u')
  ts     REAL NOT NULL                       -- unix time of the change, seconds
);
-- One row per (host transaction, shard), written at COMMIT (xSync): the rows first_seq..last_seq
-- of this shard belong to the transaction whose table-wide commit sequence number is csn.
CREATE TABLE IF NOT EXISTS _shardvt_outbox_commit(
  last_seq  INTEGER PRIMARY KEY,
  first_seq INTEGER NOT NULL,
  csn       INTEGER NOT NULL,
  txid      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS _shardvt_outbox_commit_csn ON _shardvt_outbox_commit(csn);
