-- SQL functions: shardvt_version, shardvt_debug, shardvt_route, shardvt_shards, shardvt_explain,
-- shardvt_create_index / shardvt_drop_index.
.load ./libshardvt
.headers on
.mode quote
.echo on
SELECT shardvt_version() IS NOT NULL AS has_version,
       shardvt_version() GLOB 'libshardvt [0-9]*.[0-9]*.[0-9]*' AS looks_like_version;
SELECT json_valid(shardvt_debug()) AS debug_is_json,
       json_extract(shardvt_debug(), '$.host_sqlite') = sqlite_version() AS host_version_ok;
CREATE VIRTUAL TABLE ev USING sharded(id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, body TEXT,
  shard_key=user_id, shards=4);
INSERT INTO ev(user_id, body) VALUES
  ('u1', '{"type":"click"}'), ('u2', '{"type":"view"}'), ('u3', '{"type":"click"}'),
  ('u4', NULL), ('u5', '{"type":"buy"}'), ('u6', '{"type":"view"}');
-- shardvt_route: a shard id in 0..shards-1, stable, and where the row really is.
SELECT shardvt_route('ev', 'u1') BETWEEN 0 AND 3 AS in_range,
       shardvt_route('ev', 'u1') = shardvt_route('ev', 'u1') AS stable;
-- Affinity is applied before routing: 5 and '5' route alike.
SELECT shardvt_route('ev', 5) = shardvt_route('ev', '5') AS same_for_5;
SELECT typeof(shardvt_route('ev', 'u1'));
-- shardvt_shards: one row per shard; its rows agree with the routes.
SELECT shard, rows, typeof(path), typeof(buckets), prefix FROM shardvt_shards('ev') ORDER BY shard;
SELECT s.shard, s.rows = (SELECT count(*) FROM ev WHERE shardvt_route('ev', user_id) = s.shard) AS rows_match
  FROM shardvt_shards('ev') AS s ORDER BY s.shard;
SELECT sum(rows) FROM shardvt_shards('ev');
SELECT count(*) AS in_ev_dir FROM shardvt_shards('ev') WHERE path LIKE '%.ev.shards/%';
SELECT count(DISTINCT path) FROM shardvt_shards('ev');
-- shardvt_explain shows the plan: which shards, in what order, what SQL each shard runs.
.headers off
.mode list
SELECT shardvt_explain('SELECT * FROM ev WHERE user_id = ''u1''');
SELECT shardvt_explain('SELECT * FROM ev WHERE user_id IN (''u1'', ''u2'', ''u3'')');
SELECT shardvt_explain('SELECT * FROM ev WHERE id = 3');
SELECT shardvt_explain('SELECT * FROM ev');
SELECT shardvt_explain('SELECT id FROM ev ORDER BY id DESC LIMIT 2');
SELECT shardvt_explain('SELECT * FROM ev WHERE user_id = ''u1'' AND body IS NOT NULL ORDER BY id LIMIT 5');
.headers on
.mode quote
-- Indexes on every shard, including an expression index.
SELECT shardvt_create_index('ev', 'ev_type', 'json_extract(body, ''$.type'')') AS r;
SELECT id, user_id FROM ev WHERE json_extract(body, '$.type') = 'click' ORDER BY id;
SELECT shardvt_create_index('ev', 'ev_user', 'user_id', 1) AS r;
INSERT INTO ev(user_id, body) VALUES ('u1', '{"type":"dup"}');
SELECT count(*) FROM ev WHERE user_id = 'u1';
INSERT INTO ev(user_id, body) VALUES ('u7', '{"type":"click"}');
SELECT user_id FROM ev WHERE json_extract(body, '$.type') = 'click' ORDER BY id;
SELECT shardvt_create_index('ev', 'ev_type', 'body') AS r;
SELECT shardvt_drop_index('ev', 'ev_user') AS r;
INSERT INTO ev(user_id, body) VALUES ('u1', '{"type":"dup"}');
SELECT count(*) FROM ev WHERE user_id = 'u1';
SELECT shardvt_drop_index('ev', 'ev_user') AS r;
SELECT shardvt_drop_index('ev', 'ev_type') AS r;
SELECT shardvt_create_index('no_such_table', 'i', 'x') AS r;
-- A unique index that existing rows violate is refused, on every shard.
SELECT shardvt_create_index('ev', 'ev_user2', 'user_id', 1) AS r;
INSERT INTO ev(user_id, body) VALUES ('u2', '{"type":"dup2"}');
SELECT count(*) FROM ev WHERE user_id = 'u2';
-- No shard kept the refused index: every key can take another row.
INSERT INTO ev(user_id, body) SELECT DISTINCT user_id, '{"type":"again"}' FROM ev ORDER BY user_id;
SELECT changes(), count(*) FROM ev WHERE body = '{"type":"again"}';
SELECT user_id, body FROM ev ORDER BY id;
-- A UNIQUE index on a column other than the shard key: each shard can only check its own rows,
-- so it must not be reported 'ok' while duplicates across shards go through. 'a' and 'b' live on
-- different shards.
CREATE VIRTUAL TABLE u USING sharded(id INTEGER PRIMARY KEY, k TEXT, email TEXT, shard_key=k, shards=4);
SELECT shardvt_route('u', 'a') <> shardvt_route('u', 'b') AS different_shards;
INSERT INTO u(k, email) VALUES ('a', 'x@example.com'), ('b', 'x@example.com'), ('c', 'y@example.com');
SELECT shardvt_create_index('u', 'u_email', 'email', 1) AS r;
DELETE FROM u WHERE k = 'b';
SELECT shardvt_create_index('u', 'u_email', 'email', 1) AS r;
INSERT INTO u(k, email) VALUES ('b', 'x@example.com');
SELECT k, email FROM u ORDER BY id;
