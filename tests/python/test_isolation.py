"""What other connections observe (README "Isolation"; issue 3 items 3 and 5):
- a multi-shard commit interrupted between its shard commits (here: an injected write error on
  the second shard) is completed from the log before any connection's next write or scan, so no
  reader is left seeing half of it;
- a transaction's own writes are visible to itself, not to others before COMMIT;
- catalog changes by one connection (a new prefix shard, an index) are seen by the others."""
import apsw
import pytest

from conftest import open_db, rows


def two_keys_on_different_shards(conn):
    seen = {}
    for i in range(100):
        s = rows(conn, "SELECT shardvt_route('acct', ?)", (f"o{i}",))[0][0]
        seen.setdefault(s, f"o{i}")
        if len(seen) == 2:
            return list(seen.items())
    raise AssertionError


def test_interrupted_commit_is_completed_before_the_next_scan(so_path, tmp):
    a = open_db(tmp / "x.db")
    a.execute("CREATE VIRTUAL TABLE acct USING sharded(id INTEGER PRIMARY KEY, owner TEXT, bal INTEGER, "
              "shard_key=owner, shards=4, dir='acct.shards')")
    (s1, k1), (s2, k2) = sorted(two_keys_on_different_shards(a))
    a.execute("INSERT INTO acct(id, owner, bal) VALUES (1, ?, 100), (2, ?, 100)", (k1, k2))
    reader = open_db(tmp / "x.db")
    assert rows(reader, "SELECT sum(bal) FROM acct") == [(200,)]
    # Shards commit in id order: fail the WAL write of the higher one, after the lower committed.
    a.execute("SELECT shardvt_fault(?)", (f"path:shard-{s2:04d}.db,full:1",))
    a.execute("BEGIN")
    a.execute("UPDATE acct SET bal = bal - 30 WHERE id = 1")
    a.execute("UPDATE acct SET bal = bal + 30 WHERE id = 2")
    try:
        a.execute("COMMIT")  # the log record (commit point) is durable before the shard commits
    except apsw.Error:
        pass
    # the injected error also stops the committer's own immediate repair
    # (read the shard with apsw's own SQLite: a second SQLite library in this process would
    # break the POSIX locks of the open connections on close)
    raw = apsw.Connection(str(tmp / "acct.shards" / f"shard-{s2:04d}.db"))
    assert rows(raw, "SELECT bal FROM data WHERE rowid = 2") == [(100,)], "shard 2 should lag"
    raw.close()
    a.execute("SELECT shardvt_fault('off')")
    # an already-open connection's next scan completes the transaction first
    assert rows(reader, "SELECT id, bal FROM acct ORDER BY id") == [(1, 70), (2, 130)]
    assert rows(open_db(tmp / "x.db"), "SELECT sum(bal) FROM acct") == [(200,)]


def test_uncommitted_writes_are_private(so_path, tmp):
    a = open_db(tmp / "x.db")
    a.execute("CREATE VIRTUAL TABLE t USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k, dir='t.shards')")
    b = open_db(tmp / "x.db")
    a.execute("BEGIN")
    a.execute("INSERT INTO t(k) VALUES ('a'), ('b'), ('c')")
    assert rows(a, "SELECT count(*) FROM t") == [(3,)]
    assert rows(b, "SELECT count(*) FROM t") == [(0,)]
    a.execute("COMMIT")
    assert rows(b, "SELECT count(*) FROM t") == [(3,)]


def test_catalog_changes_are_seen_by_other_connections(so_path, tmp):
    a = open_db(tmp / "x.db")
    a.execute("CREATE VIRTUAL TABLE p USING sharded(id INTEGER PRIMARY KEY, k TEXT, v, strategy=prefix, "
              "prefix_sep=':', shard_key=k, dir='p.shards')")
    b = open_db(tmp / "x.db")
    assert rows(b, "SELECT count(*) FROM shardvt_shards('p')") == [(0,)]
    a.execute("INSERT INTO p(k, v) VALUES ('acme:1', 1), ('beta:1', 2)")  # two new prefix shards
    assert rows(b, "SELECT count(*) FROM shardvt_shards('p')") == [(2,)]
    assert rows(b, "SELECT k FROM p ORDER BY k") == [("acme:1",), ("beta:1",)]
    a.execute("SELECT shardvt_create_index('p', 'p_v', 'v', 1)")
    with pytest.raises(apsw.ConstraintError):
        b.execute("INSERT INTO p(k, v) VALUES ('gamma:1', 1)")  # v=1 exists in another shard
    b.execute("INSERT INTO p(k, v) VALUES ('gamma:1', 3)")  # a third shard, created by b
    assert rows(a, "SELECT count(*) FROM shardvt_shards('p')") == [(3,)]
