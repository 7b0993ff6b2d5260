-- The catalog of one sharded table: <dir>/catalog.db (format 1, see ARCHITECTURE.md).
CREATE TABLE IF NOT EXISTS meta(
  key   TEXT PRIMARY KEY,
  value ANY
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS shards(
  shard   INTEGER PRIMARY KEY,          -- ShardId
  file    TEXT NOT NULL UNIQUE,         -- file name inside dir
  prefix  TEXT,                         -- prefix strategy: the prefix (NULL for the NULL shard)
  is_null INTEGER NOT NULL DEFAULT 0,   -- prefix strategy: 1 for the NULL-key shard
  dev     INTEGER,                      -- file identity (device, inode) recorded at creation:
  ino     INTEGER                       -- a replaced or hard-linked shard file is refused
);
CREATE TABLE IF NOT EXISTS buckets(
  bucket INTEGER PRIMARY KEY,           -- BucketId (hash strategy)
  shard  INTEGER NOT NULL REFERENCES shards(shard)
);
CREATE TABLE IF NOT EXISTS indexes(
  name       TEXT PRIMARY KEY,
  definition TEXT NOT NULL,             -- what goes between the parentheses of CREATE INDEX ... ON data(...)
  is_unique  INTEGER NOT NULL
);
