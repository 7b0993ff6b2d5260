-- The README quickstart, plus the basics around it.
.load ./libshardvt
.headers on
.mode quote
.echo on
SELECT shardvt_version() IS NOT NULL AS has_version, typeof(shardvt_version()) AS type;
CREATE VIRTUAL TABLE events USING sharded(
  id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, kind TEXT, ts INTEGER, body TEXT,
  shard_key=user_id, strategy=hash, shards=8);
INSERT INTO events(user_id, kind, ts, body) VALUES ('u1','click',1,'{"x":1}');
INSERT INTO events(user_id, kind, ts, body) VALUES
  ('u2','view',2,'{"x":2}'), ('u3','click',3,NULL), ('u1','buy',4,'{"x":4}'), ('u4','view',5,'{}');
SELECT * FROM events WHERE user_id = 'u1';
-- A full scan without ORDER BY comes back in rowid order, as a native table's does.
SELECT * FROM events;
UPDATE events SET user_id = 'u2' WHERE id = 1;
SELECT * FROM events WHERE id = 1;
SELECT id, user_id FROM events WHERE user_id = 'u2' ORDER BY id;
SELECT id, user_id FROM events WHERE user_id = 'u1';
SELECT count(*) FROM events;
SELECT kind, count(*), sum(ts) FROM events GROUP BY kind ORDER BY kind;
SELECT user_id, json_extract(body, '$.x') AS x FROM events WHERE body IS NOT NULL ORDER BY x;
-- Column affinity: TEXT keys and INTEGER ts are converted as in a native table.
INSERT INTO events(user_id, kind, ts) VALUES (5, 'affinity', '42');
SELECT id, user_id, typeof(user_id), ts, typeof(ts) FROM events WHERE kind = 'affinity';
SELECT id FROM events WHERE user_id = '5';
SELECT id FROM events WHERE user_id = 5;
-- NOT NULL is enforced.
INSERT INTO events(user_id, kind) VALUES (NULL, 'nokey');
SELECT count(*) FROM events WHERE kind = 'nokey';
-- Shards: 8 of them, in a folder beside the database.
SELECT count(*) AS shards, sum(rows) AS rows FROM shardvt_shards('events');
.shell ls -d *.events.shards | wc -l
-- Reopen: the table and its rows are still there.
.open test.db
.load ./libshardvt
SELECT * FROM events ORDER BY id;
DROP TABLE events;
SELECT count(*) FROM sqlite_master WHERE name = 'events';
