-- Edge values: NULL, REAL, BLOB and INTEGER shard keys in an untyped column, extreme rowids,
-- a TEXT PRIMARY KEY, CHECK and DEFAULT.
.load ./libshardvt
.headers on
.mode quote
.echo on
CREATE VIRTUAL TABLE t USING sharded(id INTEGER PRIMARY KEY, k, v BLOB, shard_key=k, shards=3);
INSERT INTO t VALUES (1, NULL, x'00ff'), (2, 1.5, zeroblob(3)), (3, x'01', 'txt'),
  (-9223372036854775808, 'min', 1), (9223372036854775807, 'max', 2), (4, 7, 7), (5, '7', '7');
SELECT id, k, typeof(k), v, typeof(v) FROM t;
SELECT id FROM t WHERE k IS NULL;
SELECT id FROM t WHERE k = x'01';
SELECT id FROM t WHERE k = 1.5;
SELECT id FROM t WHERE k = 7;
SELECT id FROM t WHERE k = '7';
SELECT id FROM t WHERE k IN (7, 1.5, NULL);
SELECT id FROM t WHERE id = -9223372036854775808;
SELECT max(id), min(id) FROM t;
-- With 9223372036854775807 taken, SQLite picks an unused rowid at random (no error).
INSERT INTO t(k) VALUES ('auto');
SELECT count(*), count(DISTINCT id) FROM t;
SELECT k FROM t WHERE id = last_insert_rowid();
DELETE FROM t WHERE id = 9223372036854775807 OR k = 'auto';
UPDATE t SET k = NULL WHERE id = 2;
UPDATE t SET k = 'was null' WHERE id = 1;
SELECT id, k FROM t ORDER BY id;
-- A TEXT PRIMARY KEY is an ordinary UNIQUE column; OR REPLACE honours it.
CREATE VIRTUAL TABLE w USING sharded(a TEXT PRIMARY KEY, b, shard_key=a);
INSERT INTO w VALUES ('x', 1);
INSERT INTO w VALUES ('x', 2);
INSERT OR REPLACE INTO w VALUES ('x', 3);
INSERT OR IGNORE INTO w VALUES ('x', 4);
SELECT * FROM w;
-- CHECK and DEFAULT are enforced.
CREATE VIRTUAL TABLE ck USING sharded(id INTEGER PRIMARY KEY, k TEXT, n INT DEFAULT 5 CHECK (n > 0),
  shard_key=k);
INSERT INTO ck(k) VALUES ('a');
INSERT INTO ck(k, n) VALUES ('b', -1);
UPDATE ck SET n = 0;
SELECT * FROM ck;
