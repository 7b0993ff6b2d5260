-- strategy=prefix: one shard per key prefix (prefix_sep + prefix_depth, or prefix_len).
.load ./libshardvt
.headers on
.mode quote
.echo on
CREATE VIRTUAL TABLE docs USING sharded(id INTEGER PRIMARY KEY, path TEXT NOT NULL, size INTEGER,
  shard_key=path, strategy=prefix, prefix_sep='/', prefix_depth=1);
INSERT INTO docs(path, size) VALUES
  ('us/ny/1', 10), ('us/ca/2', 20), ('eu/fr/3', 30), ('eu/de/4', 40), ('us/ny/5', 50), ('asia/jp/6', 60);
SELECT * FROM docs;
-- Same first component, same shard; different first component, different shard.
SELECT shardvt_route('docs', 'us/ny/1') = shardvt_route('docs', 'us/ca/2') AS same_us,
       shardvt_route('docs', 'us/ny/1') = shardvt_route('docs', 'eu/fr/3') AS us_eq_eu;
SELECT prefix, rows FROM shardvt_shards('docs') ORDER BY prefix;
SELECT * FROM docs WHERE path = 'us/ny/5';
SELECT id, path FROM docs WHERE path LIKE 'eu/%' ORDER BY id;
SELECT id, path FROM docs WHERE path >= 'eu/' AND path < 'eu0' ORDER BY id;
SELECT substr(path, 1, instr(path, '/') - 1) AS p, count(*), sum(size) FROM docs GROUP BY p ORDER BY p;
-- Moving a row to another prefix.
UPDATE docs SET path = 'eu/it/7' WHERE id = 1;
SELECT * FROM docs WHERE id = 1;
SELECT prefix, rows FROM shardvt_shards('docs') ORDER BY prefix;
-- A key without the separator: the whole key is its prefix.
INSERT INTO docs(path, size) VALUES ('solo', 1);
SELECT * FROM docs WHERE path = 'solo';
SELECT prefix, rows FROM shardvt_shards('docs') WHERE prefix = 'solo';
DELETE FROM docs WHERE path LIKE 'us/%';
SELECT * FROM docs;
SELECT prefix, rows FROM shardvt_shards('docs') ORDER BY prefix;

-- prefix_depth=2 keeps two components.
CREATE VIRTUAL TABLE d2 USING sharded(id INTEGER PRIMARY KEY, path TEXT NOT NULL,
  shard_key=path, strategy=prefix, prefix_sep='/', prefix_depth=2);
INSERT INTO d2(path) VALUES ('us/ny/1'), ('us/ny/2'), ('us/ca/3'), ('eu/fr/4');
SELECT shardvt_route('d2', 'us/ny/1') = shardvt_route('d2', 'us/ny/2') AS same_ny,
       shardvt_route('d2', 'us/ny/1') = shardvt_route('d2', 'us/ca/3') AS ny_eq_ca;
SELECT prefix, rows FROM shardvt_shards('d2') ORDER BY prefix;
SELECT * FROM d2;

-- A multi-character separator.
CREATE VIRTUAL TABLE d3 USING sharded(id INTEGER PRIMARY KEY, k TEXT NOT NULL,
  shard_key=k, strategy=prefix, prefix_sep='::');
INSERT INTO d3(k) VALUES ('tenant1::a'), ('tenant1::b'), ('tenant2::c');
SELECT prefix, rows FROM shardvt_shards('d3') ORDER BY prefix;

-- prefix_len=2: the first two characters.
CREATE VIRTUAL TABLE codes USING sharded(id INTEGER PRIMARY KEY, code TEXT NOT NULL, v,
  shard_key=code, strategy=prefix, prefix_len=2);
INSERT INTO codes(code, v) VALUES ('abc', 1), ('abd', 2), ('xyz', 3), ('x', 4), ('abzz', 5);
SELECT shardvt_route('codes', 'abc') = shardvt_route('codes', 'abd') AS same_ab,
       shardvt_route('codes', 'abc') = shardvt_route('codes', 'xyz') AS ab_eq_xy;
SELECT prefix, rows FROM shardvt_shards('codes') ORDER BY prefix;
SELECT * FROM codes WHERE code = 'abd';
SELECT * FROM codes;
UPDATE codes SET code = 'xy1' WHERE code = 'abc';
SELECT prefix, rows FROM shardvt_shards('codes') ORDER BY prefix;
SELECT * FROM codes ORDER BY code;
