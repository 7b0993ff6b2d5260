-- Transactions and savepoints spanning several shards.
.load ./libshardvt
.headers on
.mode quote
.echo on
CREATE VIRTUAL TABLE t USING sharded(id INTEGER PRIMARY KEY, k TEXT NOT NULL, v,
  shard_key=k, shards=4);
-- Five keys over four shards: the transactions below touch several shards.
SELECT count(DISTINCT shardvt_route('t', k)) > 1 AS spans_shards
  FROM (SELECT 'a' AS k UNION SELECT 'b' UNION SELECT 'c' UNION SELECT 'd' UNION SELECT 'e');
BEGIN;
INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3), (4, 'd', 4), (5, 'e', 5);
SELECT count(*) FROM t;
ROLLBACK;
SELECT count(*) FROM t;
BEGIN;
INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3), (4, 'd', 4), (5, 'e', 5);
COMMIT;
SELECT * FROM t;
BEGIN;
UPDATE t SET v = v * 10;
SAVEPOINT s1;
DELETE FROM t WHERE k IN ('a', 'b');
INSERT INTO t VALUES (6, 'f', 6);
UPDATE t SET k = 'moved' WHERE id = 3;
SELECT * FROM t;
ROLLBACK TO s1;
SELECT * FROM t;
SAVEPOINT s2;
UPDATE t SET k = 'zz' WHERE id = 4;
RELEASE s2;
RELEASE s1;
COMMIT;
SELECT * FROM t;
-- A failing statement inside a transaction undoes only itself.
BEGIN;
INSERT INTO t VALUES (7, 'g', 7);
INSERT INTO t VALUES (8, 'h', 8), (1, 'dup', 0);
UPDATE t SET id = 2 WHERE id = 1;
SELECT * FROM t;
COMMIT;
SELECT * FROM t;
-- A SAVEPOINT outside BEGIN starts a transaction; RELEASE of it commits.
SAVEPOINT outer_sp;
INSERT INTO t VALUES (9, 'i', 9);
SAVEPOINT inner_sp;
DELETE FROM t WHERE id = 9;
ROLLBACK TO inner_sp;
RELEASE outer_sp;
SELECT * FROM t WHERE id = 9;
SAVEPOINT outer_sp;
INSERT INTO t VALUES (10, 'j', 10);
ROLLBACK TO outer_sp;
RELEASE outer_sp;
SELECT count(*) FROM t WHERE id = 10;
-- A shard-key update rolled back leaves the row where it was.
BEGIN;
UPDATE t SET k = 'elsewhere' WHERE id = 2;
SELECT * FROM t WHERE k = 'elsewhere';
ROLLBACK;
SELECT * FROM t WHERE id = 2;
SELECT * FROM t WHERE k = 'b';
SELECT count(*) FROM t WHERE k = 'elsewhere';
-- INSERT OR ROLLBACK ends the whole transaction.
BEGIN;
INSERT INTO t VALUES (11, 'k', 11);
INSERT OR ROLLBACK INTO t VALUES (1, 'x', 0);
SELECT count(*) FROM t WHERE id = 11;
COMMIT;
-- Committed state survives reopening.
.open test.db
.load ./libshardvt
SELECT * FROM t;
