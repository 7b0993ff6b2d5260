"""Pinned read snapshots (`src/shard/pin.rs`): outside a write transaction a shard's read
transaction is kept open across statements while the shard's WAL-index header is unchanged.

What must hold: a read never misses a commit made before it started (by this connection,
another connection, or another process); statements running at once on one shard share one
snapshot; and an idle pin is released within milliseconds, so it does not keep checkpoints from
truncating the WAL."""
import os
import subprocess
import sys
import time

import apsw

from conftest import SO_PATH, rows

DDL = "CREATE VIRTUAL TABLE t USING sharded(id INTEGER PRIMARY KEY, k TEXT, v INTEGER, shard_key=k, shards=4)"


def shard_file(tmp, conn, key):
    sid = rows(conn, "SELECT shardvt_route('t', ?)", (key,))[0][0]
    return tmp / "a.t.shards" / f"shard-{sid:04d}.db"


def test_every_read_sees_commits_made_before_it(connect, tmp):
    a = connect(tmp / "a.db")
    a.execute(DDL)
    b = connect(tmp / "a.db")  # a second host connection: its own table object and shard connections
    a.execute("INSERT INTO t(id, k, v) VALUES (1, 'x', 0)")
    for i in range(1, 200):
        # the pinned snapshot of a's last read must not hide b's commit, nor a's own
        writer = b if i % 2 else a
        writer.execute("UPDATE t SET v = ? WHERE k = 'x'", (i,))
        assert rows(a, "SELECT v FROM t WHERE k = 'x'") == [(i,)]
        assert rows(b, "SELECT v FROM t WHERE k = 'x'") == [(i,)]
        assert rows(a, "SELECT v FROM t ORDER BY v DESC LIMIT 1") == [(i,)]


def test_reads_see_another_process_commit(connect, tmp):
    a = connect(tmp / "a.db")
    a.execute(DDL)
    a.execute("INSERT INTO t(id, k, v) VALUES (1, 'x', 0)")
    assert rows(a, "SELECT v FROM t WHERE k = 'x'") == [(0,)]  # pins the shard's snapshot
    child = (
        "import apsw, sys\n"
        "c = apsw.Connection(sys.argv[2]); c.enable_load_extension(True); c.load_extension(sys.argv[1])\n"
        "c.execute(\"UPDATE t SET v = 7 WHERE k = 'x'\")\n"
        "c.execute(\"INSERT INTO t(id, k, v) VALUES (2, 'y', 8)\")\n"
    )
    for _ in range(3):
        assert rows(a, "SELECT v FROM t WHERE k = 'x'") == [(0,)]
    subprocess.run([sys.executable, "-c", child, str(SO_PATH), str(tmp / "a.db")], check=True)
    assert rows(a, "SELECT v FROM t WHERE k = 'x'") == [(7,)]
    assert rows(a, "SELECT id, v FROM t ORDER BY id") == [(1, 7), (2, 8)]


def test_statements_running_at_once_share_one_snapshot(connect, tmp):
    a = connect(tmp / "a.db")
    a.execute(DDL)
    with a:
        a.executemany("INSERT INTO t(id, k, v) VALUES (?, ?, ?)", [(i, f"k{i % 7}", i) for i in range(1, 301)])
    native = connect(tmp / "n.db", load=False)
    native.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v INTEGER)")
    with native:
        native.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, f"k{i % 7}", i) for i in range(1, 301)])
    q = "SELECT x.k, count(*), sum(y.v) FROM t x JOIN t y ON y.k = x.k AND y.v > x.v GROUP BY x.k ORDER BY x.k"
    assert rows(a, q) == rows(native, q)


def test_an_idle_pin_is_released_within_milliseconds(connect, tmp):
    a = connect(tmp / "a.db")
    a.execute(DDL)
    with a:
        a.executemany("INSERT INTO t(id, k, v) VALUES (?, 'x', ?)", [(i, i) for i in range(1, 500)])
    path = shard_file(tmp, a, "x")
    other = apsw.Connection(str(path))
    other.setbusytimeout(2000)
    other.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # a quiet shard
    assert rows(a, "SELECT v FROM t WHERE id = 1") == [(1,)]  # pins its snapshot (read mark 0)
    other.execute("UPDATE data SET v = v + 1 WHERE rowid = 1")
    # No statement of `a` runs from here on: only the reaper can end the pin. Until it does,
    # the new frames cannot be copied; within a few milliseconds they can.
    deadline = time.monotonic() + 2.0
    while True:
        busy, log, copied = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
        if copied == log or time.monotonic() > deadline:
            break
        time.sleep(0.002)
    assert copied == log > 0
    assert other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()[0][0] == 0
    assert (path.parent / (path.name + "-wal")).stat().st_size == 0
    other.close()
    assert rows(a, "SELECT v FROM t WHERE id = 1") == [(2,)]


PIN_CHILD = """
import apsw, sys
so, db, shard = sys.argv[1], sys.argv[2], sys.argv[3]
a = apsw.Connection(db); a.enable_load_extension(True); a.load_extension(so)
a.execute("CREATE VIRTUAL TABLE t USING sharded(id INTEGER PRIMARY KEY, k TEXT, v INTEGER, shard_key=k, shards=1)")
a.execute("INSERT INTO t(id, k, v) VALUES (1, 'x', 1)")
other = apsw.Connection(shard)
other.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # a quiet shard: nothing left to copy
print(a.execute("SELECT v FROM t WHERE id = 1").fetchall()[0][0])  # pins the snapshot
other.execute("UPDATE data SET v = 2 WHERE rowid = 1")
busy, log, copied = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
print(log, copied)  # the pin (read mark 0) keeps the new frames from being copied
print(a.execute("SELECT v FROM t WHERE id = 1").fetchall()[0][0])  # sees the commit, ends the pin
busy, log, copied = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
print(log, copied)
"""


def test_a_read_of_a_quiet_shard_pins_its_snapshot_until_a_commit(tmp):
    """With the reaper made slow (SHARDVT_PIN_IDLE_US), the pin is observable: it holds read
    mark 0, so another connection's new frames cannot be copied until the next read sees the
    commit and ends the pin. (Proves that reads are pinned at all: a read transaction per
    statement would have ended before the checkpoint.)"""
    env = dict(os.environ, SHARDVT_PIN_IDLE_US="60000000")
    out = subprocess.run(
        [sys.executable, "-c", PIN_CHILD, str(SO_PATH), str(tmp / "p.db"), str(tmp / "p.t.shards" / "shard-0000.db")],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.split("\n")
    assert out[0] == "1"
    log, copied = map(int, out[1].split())
    assert log > 0 and copied == 0, out
    assert out[2] == "2"
    log, copied = map(int, out[3].split())
    assert copied == log > 0, out
