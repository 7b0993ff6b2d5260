"""No deadlock between writers (issue 3 item 5): a transaction waits for a shard's lock only in
ascending shard order; needing a lower-numbered shard that another writer holds fails at once
with SQLITE_BUSY and a message that says to retry, and the other writer then completes."""
import time

import apsw
import pytest

from conftest import open_db, rows

COLS = "id INTEGER PRIMARY KEY, k TEXT NOT NULL, v INTEGER, shard_key=k, shards=2"


def test_opposite_lock_order_fails_fast_instead_of_deadlocking(so_path, tmp):
    d = tmp / "t.shards"
    a = open_db(tmp / "a.db")
    a.execute(f"CREATE VIRTUAL TABLE t USING sharded({COLS}, dir='{d}')")
    b = open_db(":memory:")  # a second writer with its own host database (no host write lock)
    b.execute(f"CREATE VIRTUAL TABLE temp.t USING sharded({COLS}, dir='{d}', attach=on)")
    key = {}
    for i in range(50):
        key.setdefault(rows(a, "SELECT shardvt_route('t', ?)", (f"k{i}",))[0][0], f"k{i}")
    a.execute("BEGIN")
    a.execute("INSERT INTO t(k, v) VALUES (?, 1)", (key[1],))   # a holds shard 1
    b.execute("BEGIN")
    b.execute("INSERT INTO t(k, v) VALUES (?, 2)", (key[0],))   # b holds shard 0
    t0 = time.monotonic()
    with pytest.raises(apsw.BusyError) as e:
        a.execute("INSERT INTO t(k, v) VALUES (?, 3)", (key[0],))  # a needs shard 0 < 1: no waiting
    assert time.monotonic() - t0 < 1.0, "waited instead of failing fast"
    msg = str(e.value)
    assert "shard 0" in msg and "waiting longer could deadlock" in msg and "retry" in msg, msg
    a.execute("ROLLBACK")
    b.execute("INSERT INTO t(k, v) VALUES (?, 4)", (key[1],))   # b may now take shard 1 (ascending)
    b.execute("COMMIT")
    assert sorted(rows(a, "SELECT k, v FROM t")) == sorted([(key[0], 2), (key[1], 4)])
    # the retried transaction of a now succeeds
    a.execute("BEGIN")
    a.execute("INSERT INTO t(k, v) VALUES (?, 1)", (key[1],))
    a.execute("INSERT INTO t(k, v) VALUES (?, 3)", (key[0],))
    a.execute("COMMIT")
    assert rows(b, "SELECT count(*) FROM t") == [(4,)]


def test_writers_on_different_shards_do_not_wait_for_each_other(so_path, tmp):
    d = tmp / "t.shards"
    a = open_db(tmp / "a.db")
    a.execute(f"CREATE VIRTUAL TABLE t USING sharded({COLS}, dir='{d}')")
    b = open_db(":memory:")
    b.execute(f"CREATE VIRTUAL TABLE temp.t USING sharded({COLS}, dir='{d}', attach=on)")
    key = {}
    for i in range(50):
        key.setdefault(rows(a, "SELECT shardvt_route('t', ?)", (f"k{i}",))[0][0], f"k{i}")
    a.execute("BEGIN")
    a.execute("INSERT INTO t(k, v) VALUES (?, 1)", (key[0],))  # a's transaction stays open on shard 0
    t0 = time.monotonic()
    for i in range(20):
        b.execute("INSERT INTO t(k, v) VALUES (?, ?)", (key[1], i))  # b commits on shard 1 meanwhile
    assert time.monotonic() - t0 < 1.0
    assert rows(b, "SELECT count(*) FROM t") == [(20,)]  # a's uncommitted row is not visible
    a.execute("COMMIT")
    assert rows(b, "SELECT count(*) FROM t") == [(21,)]
