-- Errors: each one must say what is wrong and how to fix it. Nothing is created by a failed CREATE.
.load ./libshardvt
.echo on
CREATE VIRTUAL TABLE e1 USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k, shardz=4);
CREATE VIRTUAL TABLE e2 USING sharded(id INTEGER PRIMARY KEY, k TEXT);
CREATE VIRTUAL TABLE e3 USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=nope);
CREATE VIRTUAL TABLE e4 USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k, shards=0);
CREATE VIRTUAL TABLE e5 USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k, shards=-1);
CREATE VIRTUAL TABLE e6 USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k, shards=1000000);
CREATE VIRTUAL TABLE e7 USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k, shards=four);
CREATE VIRTUAL TABLE e8 USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k, strategy=range);
CREATE VIRTUAL TABLE e9 USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k, strategy=prefix);
CREATE VIRTUAL TABLE e10 USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k, prefix_sep='/');
CREATE VIRTUAL TABLE e11 USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k, shard_key=id);
CREATE VIRTUAL TABLE e12 USING sharded(shard_key=k);
CREATE VIRTUAL TABLE e13 USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k, dir='no/such/parent/dir');
CREATE VIRTUAL TABLE e14 USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k, buckets=2, shards=4);
CREATE VIRTUAL TABLE e15 USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k, strategy=prefix, prefix_sep='');
SELECT count(*) AS tables_created FROM sqlite_master;
.shell ls
-- A :memory: host has no file to put shards beside: it needs an explicit dir.
.open :memory:
.load ./libshardvt
CREATE VIRTUAL TABLE m1 USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k);
CREATE VIRTUAL TABLE m2 USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k, dir='mem_shards');
-- With an absolute dir it works (the path is written by the shell: the CLI cannot see its cwd).
.shell echo "CREATE VIRTUAL TABLE m3 USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k, dir='$PWD/mem_shards');" > m3.sql
.read m3.sql
INSERT INTO m3(k) VALUES ('a'), ('b');
SELECT * FROM m3;
SELECT count(*) FROM shardvt_shards('m3');
-- Functions with bad arguments.
SELECT shardvt_route('no_such_table', 'x');
SELECT shardvt_route('m2');
SELECT * FROM shardvt_shards('no_such_table');
.shell ls
