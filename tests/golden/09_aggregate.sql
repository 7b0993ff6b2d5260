-- Exact cross-shard aggregation: sharded_agg (module) and shardvt_aggregate(sql) (JSON).
-- Each query runs first on a native table `nat` holding the same rows (same rowids), then on the
-- sharded table `ev` through sharded_agg: the two outputs must be equal.
.load ./libshardvt
.headers on
.mode quote
.echo on
CREATE VIRTUAL TABLE ev USING sharded(id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, kind TEXT,
  ts INTEGER, amount REAL, tag TEXT COLLATE NOCASE, shard_key=user_id, shards=4);
CREATE TABLE nat(id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, kind TEXT, ts INTEGER, amount REAL,
  tag TEXT COLLATE NOCASE);
INSERT INTO nat VALUES
  (1, 'u1', 'click', 3, 1.5, 'red'), (2, 'u2', 'view', 7, NULL, 'Blue'), (3, 'u3', 'click', 9, 2.25, 'green'),
  (4, 'u4', NULL, -4, -0.5, NULL), (5, 'u5', 'buy', 12, 100.0, 'red'), (6, 'u6', 'view', 6, 0.25, 'blue'),
  (7, 'u1', 'click', NULL, 3.0, 'Red'), (8, 'u2', 'buy', 20, -7.75, 'green'), (9, 'u7', 'view', 15, NULL, NULL),
  (10, 'u8', 'click', 1, 0.5, 'red');
INSERT INTO ev SELECT * FROM nat;
-- The example of the brief.
SELECT kind, count(*) AS n, avg(ts) AS avg_ts FROM nat WHERE ts > 5 GROUP BY kind;
CREATE VIRTUAL TABLE temp.stats USING sharded_agg('SELECT kind, count(*) AS n, avg(ts) AS avg_ts FROM ev WHERE ts > 5 GROUP BY kind');
SELECT * FROM stats;
-- Usable in further SQL; every scan recomputes.
SELECT kind, n FROM stats WHERE n > 1 ORDER BY n DESC, kind;
INSERT INTO ev(user_id, kind, ts) VALUES ('u9', 'view', 30);
SELECT * FROM stats WHERE kind = 'view';
DELETE FROM ev WHERE user_id = 'u9';
SELECT s.kind, s.n, t.n AS all_n FROM stats s JOIN (SELECT kind, count(*) AS n FROM nat GROUP BY kind) t USING (kind) ORDER BY s.kind;
-- Every supported aggregate, without GROUP BY.
SELECT count(*), count(ts), sum(ts), total(ts), avg(ts), min(ts), max(ts), sum(amount), avg(amount), count(DISTINCT kind), group_concat(kind), group_concat(DISTINCT tag) FROM nat;
CREATE VIRTUAL TABLE temp.all_aggs USING sharded_agg('SELECT count(*), count(ts), sum(ts), total(ts), avg(ts), min(ts), max(ts), sum(amount), avg(amount), count(DISTINCT kind), group_concat(kind), group_concat(DISTINCT tag) FROM ev');
SELECT * FROM all_aggs;
-- Types: a sum of integers stays INTEGER; avg and total are REAL.
SELECT typeof(sum(ts)), typeof(total(ts)), typeof(avg(ts)), typeof(sum(amount)) FROM nat;
SELECT shardvt_aggregate('SELECT typeof(sum(ts)), typeof(total(ts)), typeof(avg(ts)), typeof(sum(amount)) FROM ev') AS json;
-- GROUP BY expressions, NOCASE groups, HAVING, ORDER BY, LIMIT/OFFSET after combining.
SELECT tag, count(*), min(tag), group_concat(id, '+') FROM nat GROUP BY tag ORDER BY tag;
SELECT shardvt_aggregate('SELECT tag, count(*), min(tag), group_concat(id, ''+'') FROM ev GROUP BY tag ORDER BY tag') AS json;
SELECT ts % 2 AS odd, sum(ts) / count(*) AS mean_int, max(amount) - min(amount) AS spread FROM nat WHERE ts IS NOT NULL GROUP BY 1 HAVING count(*) > 2 ORDER BY odd;
SELECT shardvt_aggregate('SELECT ts % 2 AS odd, sum(ts) / count(*) AS mean_int, max(amount) - min(amount) AS spread FROM ev WHERE ts IS NOT NULL GROUP BY 1 HAVING count(*) > 2 ORDER BY odd') AS json;
SELECT e.kind, count(*) AS n FROM nat e GROUP BY e.kind ORDER BY n DESC, kind LIMIT 2 OFFSET 1;
SELECT shardvt_aggregate('SELECT e.kind, count(*) AS n FROM ev e GROUP BY e.kind ORDER BY n DESC, kind LIMIT 2 OFFSET 1') AS json;
-- Empty results: one row without GROUP BY, no rows with GROUP BY.
SELECT count(*), sum(ts), total(ts), avg(ts), group_concat(kind) FROM nat WHERE ts > 1000;
SELECT shardvt_aggregate('SELECT count(*), sum(ts), total(ts), avg(ts), group_concat(kind) FROM ev WHERE ts > 1000') AS json;
SELECT shardvt_aggregate('SELECT kind, count(*) FROM ev WHERE ts > 1000 GROUP BY kind') AS json;
-- Integer overflow: native sum() raises it, so the sharded sum must too; total() never does.
INSERT INTO nat(id, user_id, ts) VALUES (100, 'big1', 9223372036854775807), (101, 'big2', 1);
INSERT INTO ev(id, user_id, ts) VALUES (100, 'big1', 9223372036854775807), (101, 'big2', 1);
SELECT sum(ts) FROM nat;
SELECT shardvt_aggregate('SELECT sum(ts) FROM ev');
SELECT total(ts) FROM nat;
SELECT shardvt_aggregate('SELECT total(ts) FROM ev') AS json;
SELECT total(ts) = json_extract(shardvt_aggregate('SELECT total(ts) AS t FROM ev'), '$[0].t') AS same_real,
       avg(ts) = json_extract(shardvt_aggregate('SELECT avg(ts) AS a FROM ev'), '$[0].a') AS same_avg FROM nat;
-- What cannot be combined exactly is refused, naming the construct.
SELECT shardvt_aggregate('SELECT kind, count(*) FROM ev GROUP BY tag');
SELECT shardvt_aggregate('SELECT count(*) FROM ev JOIN nat USING (id)');
SELECT shardvt_aggregate('SELECT count(*) FROM ev WHERE id IN (SELECT id FROM nat)');
SELECT shardvt_aggregate('SELECT DISTINCT kind, count(*) FROM ev GROUP BY kind');
SELECT shardvt_aggregate('SELECT json_group_array(kind) FROM ev');
SELECT shardvt_aggregate('SELECT sum(ts) OVER () FROM ev');
CREATE VIRTUAL TABLE temp.bad USING sharded_agg('SELECT kind FROM ev');
