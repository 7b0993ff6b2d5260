-- The outbox inside every shard file of a table created with outbox=on (see ARCHITECTURE.md §8).
-- Written in the same shard transaction as the row change it describes.
CREATE TABLE IF NOT EXISTS _shardvt_outbox(
  seq    INTEGER PRIMARY KEY,                -- per shard: commit order (max + 1; may restart after
                                             -- a purge emptied the outbox: positions are (csn, tn))
  csn    INTEGER NOT NULL,                   -- table-wide commit sequence number of the host
                                             -- transaction; 9223372036854775807 until its COMMIT
                                             -- (xSync) sets it (same size: updated in place)
  tn     INTEGER NOT NULL,                   -- change number inside the host transaction (1, 2, ...)
  txid   TEXT NOT NULL,                      -- host transaction id, same on every shard (8-byte BLOB;
                                             -- 16 hex digits as TEXT in older rows)
  op     TEXT NOT NULL,                      -- 'c' insert, 'u' update, 'd' delete
  rid    INTEGER NOT NULL,                   -- the row's rowid (after the change for 'u')
  before TEXT,                               -- JSON object of the row before ('u', 'd')
  after  TEXT,                               -- JSON object of the row after ('c', 'u'), or its
                                             -- packed image as a BLOB (ARCHITECTURE.md §8)
  ts     REAL NOT NULL                       -- unix time of the change, seconds
);
