-- libshardvt quickstart: run with `make demo` (the Debian sqlite3 CLI, a fresh demo.db).
.load ./libshardvt
.headers on
.mode box

-- 8 shard files beside demo.db, rows routed by a stable hash of user_id.
CREATE VIRTUAL TABLE events USING sharded(
  id INTEGER PRIMARY KEY,
  user_id TEXT NOT NULL,
  kind TEXT DEFAULT 'view',
  ts INTEGER,
  body TEXT,
  shard_key=user_id, strategy=hash, shards=8
);

-- Writes: one statement, many shards, one transaction.
BEGIN;
INSERT INTO events(user_id, kind, ts, body) VALUES ('u1', 'click', 1, '{"x":1}');
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
INSERT INTO events(user_id, ts, body)
  SELECT 'u' || (i % 50), i, json_object('type', CASE WHEN i % 3 = 0 THEN 'buy' ELSE 'view' END) FROM n;
COMMIT;

-- Where does a key live, and what do the files hold?
SELECT shardvt_route('events', 'u1') AS shard_of_u1;
SELECT shard, rows, substr(buckets, 1, 24) || '...' AS buckets FROM shardvt_shards('events');

-- A key lookup touches one shard file: the plan says so.
SELECT shardvt_explain('SELECT * FROM events WHERE user_id = ''u1''') AS plan;
SELECT id, user_id, kind, ts FROM events WHERE user_id = 'u1' ORDER BY ts LIMIT 3;

-- Changing the shard key moves the row to its new shard and keeps its id.
UPDATE events SET user_id = 'u2' WHERE id = 1;
SELECT id, user_id, shardvt_route('events', user_id) AS now_in_shard FROM events WHERE id = 1;

-- Indexes go to every shard (and to shards created later).
SELECT shardvt_create_index('events', 'events_type', 'json_extract(body, ''$.type'')');
SELECT json_extract(body, '$.type') AS type, count(*) AS n FROM events GROUP BY 1 ORDER BY 1;

-- Rows come back merged across shards, in order.
SELECT id, user_id, ts FROM events ORDER BY ts DESC LIMIT 5;
