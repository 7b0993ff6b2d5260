-- INSERT / UPDATE / DELETE, rowids and conflict clauses.
.load ./libshardvt
.headers on
.mode quote
.echo on
CREATE VIRTUAL TABLE t USING sharded(id INTEGER PRIMARY KEY, k TEXT NOT NULL, v INTEGER,
  shard_key=k, shards=4);
INSERT INTO t(k, v) VALUES ('a', 1);
SELECT last_insert_rowid(), changes();
INSERT INTO t VALUES (10, 'b', 2);
SELECT last_insert_rowid(), changes();
-- Auto ids continue after the largest id in any shard.
INSERT INTO t(k, v) VALUES ('c', 3);
SELECT last_insert_rowid();
INSERT INTO t(k, v) VALUES ('d', 4), ('e', 5), ('f', 6);
SELECT last_insert_rowid(), changes();
INSERT INTO t VALUES (NULL, 'g', 7);
SELECT last_insert_rowid();
INSERT INTO t(k, v) SELECT k || '2', v * 10 FROM t WHERE v < 3 ORDER BY id;
SELECT changes();
SELECT * FROM t;
UPDATE t SET v = v + 100 WHERE k IN ('a', 'c');
SELECT changes();
-- Changing the shard key moves the row; it keeps its id.
UPDATE t SET k = 'zz' WHERE id = 10;
SELECT * FROM t WHERE id = 10;
SELECT * FROM t WHERE k = 'zz';
SELECT * FROM t WHERE k = 'b';
UPDATE t SET k = k || '!', v = -v WHERE v BETWEEN 4 AND 6;
SELECT * FROM t;
-- Changing the INTEGER PRIMARY KEY.
UPDATE t SET id = 100 WHERE id = 1;
SELECT rowid AS r, * FROM t WHERE k = 'a';
DELETE FROM t WHERE v > 100;
SELECT changes();
SELECT * FROM t;
-- Conflicts on the INTEGER PRIMARY KEY, including across shards.
INSERT INTO t VALUES (10, 'q', 0);
INSERT OR ABORT INTO t VALUES (10, 'q', 0);
INSERT OR IGNORE INTO t VALUES (10, 'q', 0);
SELECT changes();
SELECT * FROM t WHERE id = 10;
INSERT OR REPLACE INTO t VALUES (10, 'q', 0);
SELECT * FROM t WHERE id = 10;
SELECT * FROM t WHERE k = 'zz';
SELECT count(*) FROM t;
UPDATE t SET id = 12 WHERE id = 10;
UPDATE OR REPLACE t SET id = 12 WHERE id = 10;
SELECT * FROM t ORDER BY id;
-- Multi-row statements: ABORT undoes the whole statement, FAIL keeps the rows before the error,
-- IGNORE skips only the bad row.
INSERT INTO t VALUES (20, 'x', 1), (12, 'y', 2), (21, 'z', 3);
SELECT count(*) FROM t WHERE id IN (20, 21);
INSERT OR FAIL INTO t VALUES (20, 'x', 1), (12, 'y', 2), (21, 'z', 3);
SELECT * FROM t WHERE id >= 20;
INSERT OR IGNORE INTO t VALUES (22, 'x', 1), (12, 'y', 2), (23, 'z', 3);
SELECT * FROM t WHERE id >= 20;
UPDATE t SET id = id + 100 WHERE id >= 20;
SELECT * FROM t WHERE id >= 20;
DELETE FROM t;
SELECT changes(), count(*) FROM t;
