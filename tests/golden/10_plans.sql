.load ./libshardvt
.headers off
-- Plans of the main query shapes (shards visited, merge order, per-shard LIMIT, SQL per shard).
-- Prefix table: one file per tenant.
CREATE VIRTUAL TABLE docs USING sharded(id INTEGER PRIMARY KEY, path TEXT NOT NULL, size INTEGER,
  shard_key=path, strategy=prefix, prefix_sep='/', dir='docs.shards');
INSERT INTO docs(path, size) VALUES ('acme/a', 1), ('acme/b', 2), ('beta/x', 3), ('cern/y', 4), ('beta/z', 5);
SELECT shard, prefix, rows FROM shardvt_shards('docs');
-- equality on the key: one file
SELECT shardvt_explain('SELECT * FROM docs WHERE path = ''beta/x''');
-- LIKE with a literal prefix: the files whose prefix agrees with it
SELECT shardvt_explain('SELECT * FROM docs WHERE path LIKE ''be%''');
-- a range on the key: only files whose keys can fall in it
SELECT shardvt_explain('SELECT * FROM docs WHERE path >= ''beta'' AND path < ''c''');
-- a constraint on another column: every file, the constraint pushed down
SELECT shardvt_explain('SELECT * FROM docs WHERE size > 2');
SELECT id, path FROM docs WHERE path LIKE 'be%' ORDER BY id;
SELECT id, path FROM docs WHERE path >= 'beta' AND path < 'c' ORDER BY id;
-- Hash table with an INTEGER key: '7' and 7.0 route like 7; a NOCASE text column.
CREATE VIRTUAL TABLE nums USING sharded(n INTEGER, label TEXT COLLATE NOCASE, shard_key=n, shards=4, dir='nums.shards');
INSERT INTO nums VALUES (7, 'Seven'), (8, 'eight'), (9, 'NINE');
SELECT shardvt_route('nums', 7) = shardvt_route('nums', '7') AND shardvt_route('nums', 7) = shardvt_route('nums', 7.0);
SELECT shardvt_explain('SELECT * FROM nums WHERE n = ''7''');
SELECT * FROM nums WHERE n = '7';
-- ORDER BY a column: every shard sorts (its index if any), the cursor merges; LIMIT pushed down
SELECT shardvt_create_index('nums', 'nums_label', 'label');
SELECT shardvt_explain('SELECT * FROM nums ORDER BY label DESC LIMIT 2');
SELECT * FROM nums ORDER BY label DESC LIMIT 2;
-- an ORDER BY the shards cannot produce (an expression): SQLite sorts, no LIMIT pushed down
SELECT shardvt_explain('SELECT * FROM nums ORDER BY n % 2, n LIMIT 2');
SELECT * FROM nums ORDER BY n % 2, n LIMIT 2;
