.load ./libshardvt
.headers on
-- ALTER TABLE RENAME keeps the rows; a default-named shard folder moves with the table.
CREATE VIRTUAL TABLE t USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k, shards=2);
INSERT INTO t(k) VALUES ('a'), ('b');
ALTER TABLE t RENAME TO t2;
SELECT * FROM t2;
.shell ls
-- an explicit dir stays where it is
CREATE VIRTUAL TABLE u USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k, dir='fixed');
INSERT INTO u(k) VALUES ('x');
ALTER TABLE u RENAME TO u2;
SELECT * FROM u2;
-- renaming onto an existing folder fails clearly and changes nothing
CREATE VIRTUAL TABLE v USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k);
.shell mkdir test.v2.shards
ALTER TABLE v RENAME TO v2;
SELECT name FROM sqlite_master WHERE name LIKE 'v%' ORDER BY 1;
.shell rmdir test.v2.shards
-- a new connection finds the renamed tables
.open test.db
.load ./libshardvt
SELECT * FROM t2;
SELECT * FROM u2;
-- DROP TABLE removes the folder and everything in it
DROP TABLE t2;
DROP TABLE u2;
DROP TABLE v;
.shell ls
