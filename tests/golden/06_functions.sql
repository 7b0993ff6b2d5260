-- SQL functions: shardvt_version, shardvt_route, shardvt_shards, shardvt_explain, indexes.
.load ./libshardvt
.headers on
.mode quote
.echo on
SELECT shardvt_version() IS NOT NULL AS has_version, shardvt_version() GLOB '[0-9]*.[0-9]*' AS looks_like_version;
SELECT shardvt_debug() IS NOT NULL AS has_debug;
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
SELECT shard, rows, typeof(path), typeof(buckets) FROM shardvt_shards('ev') ORDER BY shard;
SELECT s.shard, s.rows = (SELECT count(*) FROM ev WHERE shardvt_route('ev', user_id) = s.shard) AS rows_match
  FROM shardvt_shards('ev') AS s ORDER BY s.shard;
SELECT sum(rows) FROM shardvt_shards('ev');
SELECT path LIKE '%test.db.ev.shards%' AS in_default_dir FROM shardvt_shards('ev') LIMIT 1;
SELECT count(DISTINCT path) FROM shardvt_shards('ev');
-- shardvt_explain shows a plan.
SELECT shardvt_explain('SELECT * FROM ev WHERE user_id = ''u1''') IS NOT NULL AS has_plan;
-- Indexes on every shard, including an expression index.
SELECT shardvt_create_index('ev', 'ev_type', 'json_extract(body, ''$.type'')');
SELECT id, user_id FROM ev WHERE json_extract(body, '$.type') = 'click' ORDER BY id;
SELECT shardvt_create_index('ev', 'ev_user', 'user_id', 1);
INSERT INTO ev(user_id, body) VALUES ('u1', 'dup');
SELECT count(*) FROM ev WHERE user_id = 'u1';
INSERT INTO ev(user_id, body) VALUES ('u7', '{"type":"click"}');
SELECT id, user_id FROM ev WHERE json_extract(body, '$.type') = 'click' ORDER BY id;
SELECT shardvt_create_index('ev', 'ev_type', 'body');
SELECT shardvt_drop_index('ev', 'ev_user');
INSERT INTO ev(user_id, body) VALUES ('u1', 'dup');
SELECT count(*) FROM ev WHERE user_id = 'u1';
SELECT shardvt_drop_index('ev', 'ev_user');
SELECT shardvt_drop_index('ev', 'ev_type');
SELECT shardvt_create_index('no_such_table', 'i', 'x');
-- A unique index that existing rows violate is refused.
SELECT shardvt_create_index('ev', 'ev_user2', 'user_id', 1);
SELECT id, user_id, body FROM ev ORDER BY id;
