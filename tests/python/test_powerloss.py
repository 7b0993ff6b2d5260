"""The shardvt VFS's power-loss model (`shardvt_fault('powerloss')`, issue 3).

- in the process, nothing changes for readers: every connection (and a second handle of the same
  file) sees the unsynced writes; turning the model off writes them out, nothing is lost;
- a process killed with SIGKILL under the model loses exactly what it never synced: one-shard
  commits (synchronous=NORMAL, no checkpoint yet) are gone, a multi-shard commit survives through
  the FULL-synced log, and every file passes integrity_check once the -shm files are deleted.
"""
import os
import subprocess
import sys
import textwrap

import apsw

from conftest import SO_PATH, open_db, rows

DDL = ("CREATE VIRTUAL TABLE t USING sharded(id INTEGER PRIMARY KEY, k TEXT NOT NULL, v INTEGER, "
       "shard_key=k, shards=4, dir='t.shards')")


def shard_files(tmp):
    return sorted((tmp / "t.shards").glob("*.db"))


def test_in_process_reads_see_held_writes_and_off_flushes(tmp):
    path = tmp / "a.db"
    c = open_db(path)
    c.execute(DDL)
    c.execute("INSERT INTO t(id, k, v) VALUES (1, 'a', 1)")
    assert rows(c, "SELECT shardvt_fault('powerloss')") == [("ok",)]
    for i in range(2, 200):
        c.execute("INSERT INTO t(id, k, v) VALUES (?, ?, ?)", (i, f"k{i}", i))
    c.execute("BEGIN; UPDATE t SET v = v + 1000 WHERE id IN (2, 3, 4, 5); COMMIT;")
    want = rows(c, "SELECT id, v FROM t ORDER BY id")
    assert len(want) == 199
    # A second connection in this process (its own shard connections) sees the same data.
    c2 = open_db(path)
    assert rows(c2, "SELECT id, v FROM t ORDER BY id") == want
    # The same shard file through another handle of the shardvt VFS: intact, same rows.
    n = 0
    for f in shard_files(tmp):
        if f.name.startswith("shard-"):
            h = apsw.Connection(str(f), vfs="shardvt")
            assert h.execute("PRAGMA integrity_check").fetchall() == [("ok",)], f
            n += h.execute("SELECT count(*) FROM data").fetchall()[0][0]
            h.close()
    assert n == 199
    c2.close()
    assert rows(c, "SELECT shardvt_fault('off')") == [("ok",)]
    c.execute("INSERT INTO t(id, k, v) VALUES (500, 'z', 5)")  # written out before this write
    c.close()
    c = open_db(path)
    assert rows(c, "SELECT id, v FROM t WHERE id < 500 ORDER BY id") == want
    assert rows(c, "SELECT v FROM t WHERE id = 500") == [(5,)]
    c.close()


CHILD = textwrap.dedent("""
    import apsw, os, sys
    c = apsw.Connection(sys.argv[2])
    c.enable_load_extension(True)
    c.load_extension(sys.argv[1])
    c.execute("SELECT shardvt_fault('powerloss')")
    for i in range(10, 40):
        c.execute("INSERT INTO t(id, k, v) VALUES (?, ?, ?)", (i, 'k%d' % i, i))   # one shard each
    c.execute("BEGIN")
    c.execute("UPDATE t SET v = v - 5 WHERE id = 1")
    c.execute("UPDATE t SET v = v + 5 WHERE id = 2")
    c.execute("COMMIT")                                                         # two shards: logged
    print(c.execute("SELECT count(*) FROM t").fetchall()[0][0], flush=True)
    os.kill(os.getpid(), 9)
""")


def test_sigkill_loses_exactly_the_unsynced_writes(tmp):
    path = tmp / "b.db"
    c = open_db(path)
    c.execute(DDL)
    owners = rows(c, "SELECT value, shardvt_route('t', value) FROM json_each('[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\"]')")
    a = owners[0][0]
    b = next(o for o, s in owners if s != owners[0][1])
    c.execute("INSERT INTO t(id, k, v) VALUES (1, ?, 100), (2, ?, 100)", (a, b))
    c.close()
    p = subprocess.run([sys.executable, "-c", CHILD, str(SO_PATH), str(path)], capture_output=True, text=True)
    assert p.returncode == -9, p.stderr
    assert p.stdout.split() == ["32"], p.stdout  # the child saw all of its writes
    for f in list(tmp.glob("*-shm")) + list((tmp / "t.shards").glob("*-shm")):
        f.unlink()
    c = open_db(path)  # recovery
    got = dict(rows(c, "SELECT id, v FROM t"))
    # The logged transfer is kept. Before writing its record, a multi-shard commit syncs its
    # participants' WALs (its images carry their earlier commits), so the one-shard inserts that
    # went to those two shards are durable too; the ones on other shards are lost.
    participants = {rows(c, "SELECT shardvt_route('t', ?)", (k,))[0][0] for k in (a, b)}
    want = {1: 95, 2: 105}
    for i in range(10, 40):
        if rows(c, "SELECT shardvt_route('t', ?)", (f"k{i}",))[0][0] in participants:
            want[i] = i
    assert len(want) < 32, "some one-shard commits must have been lost"
    assert got == want, got
    c.close()
    for f in shard_files(tmp):
        h = apsw.Connection(str(f))
        assert h.execute("PRAGMA integrity_check").fetchall() == [("ok",)], f
        h.close()


def test_spec_errors(db):
    for bad in ("powerloss:1", "power"):
        try:
            db.execute("SELECT shardvt_fault(?)", (bad,)).fetchall()
        except apsw.Error as e:
            assert "shardvt_fault" in str(e)
        else:
            raise AssertionError(f"{bad!r} was accepted")
    assert rows(db, "SELECT shardvt_fault('path:nothing-matches,powerloss')") == [("ok",)]
    assert rows(db, "SELECT shardvt_fault('off')") == [("ok",)]
