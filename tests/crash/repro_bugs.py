#!/usr/bin/env python3
"""Minimal reproductions of the problems found by harness.py and soak.py (exit 1: reproduced).

  cross-table      A transaction writes acct (2 shards) and xfer (1 shard) and the process dies
                   after xSync, before anything committed (simulated with os._exit in the commit
                   hook). Recovery rolls acct forward from its redo log; xfer and a native table
                   written in the same transaction are lost: the transaction is half visible.
  reader-deadlock  Host database in rollback-journal mode (the default). A reader's scan resolves
                   the in-doubt log entry of a concurrent multi-shard COMMIT under BEGIN IMMEDIATE
                   on a shard while holding its SHARED lock on the host file; the committer holds
                   the shard lock and waits for the host file's EXCLUSIVE lock. The COMMIT stalls
                   for the 5 s shard busy timeout and the reader's SELECT fails with SQLITE_BUSY.
  powerloss-image  Power loss (the shardvt VFS's `powerloss` model) after two acknowledged
                   transactions on one connection: T1 moves 10 from account 1 to account 2 (both
                   in shard X: one shard, no log record, synchronous=NORMAL); T2 moves 1 from
                   account 2 (shard X) to account 3 (shard Y): logged, its redo image of account
                   2 is the row as T2 left it, i.e. including T1's +10. The power loss drops both
                   unsynced shard commits; recovery re-applies T2's images: account 2 gets T1's
                   +10 while account 1 never lost its 10 (T1 is half visible, money is created).

Usage: python3 tests/crash/repro_bugs.py cross-table|reader-deadlock|powerloss-image
"""
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import apsw

SO_PATH = pathlib.Path(__file__).resolve().parents[2] / "libshardvt.so"


def connect(path, journal=None):
    c = apsw.Connection(str(path))
    c.enable_load_extension(True)
    c.load_extension(str(SO_PATH))
    c.setbusytimeout(10000)
    if journal:
        c.execute(f"PRAGMA journal_mode={journal}")
    return c


def cross_table(tmp):
    db = tmp / "bank.db"
    if len(sys.argv) > 2 and sys.argv[2] == "--child":
        c = connect(db)
        c.execute("BEGIN")
        c.execute("UPDATE acct SET balance = balance - 10 WHERE id = 1")
        c.execute("UPDATE acct SET balance = balance + 10 WHERE id = 3")
        c.execute("INSERT INTO xfer VALUES (1, 1, 3, 10)")
        c.execute("INSERT INTO native VALUES (1)")
        c.set_commit_hook(lambda: os._exit(0))  # dies after every xSync, before any commit
        c.execute("COMMIT")
        return 0
    c = connect(db)
    c.execute("CREATE VIRTUAL TABLE acct USING sharded(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, "
              "balance INTEGER NOT NULL, shard_key=owner, shards=4, dir='acct.shards')")
    c.execute("CREATE VIRTUAL TABLE xfer USING sharded(tid INTEGER PRIMARY KEY, src, dst, amount, "
              "shard_key=tid, shards=4, dir='xfer.shards')")
    c.execute("CREATE TABLE native(tid INTEGER PRIMARY KEY)")
    c.execute("INSERT INTO acct VALUES (1, 'u1', 1000), (2, 'u2', 1000), (3, 'u3', 1000)")
    routes = c.execute("SELECT id, shardvt_route('acct', owner) FROM acct WHERE id IN (1, 3)").fetchall()
    assert routes[0][1] != routes[1][1], routes
    c.close()
    subprocess.run([sys.executable, __file__, "cross-table", "--child", str(tmp)], check=True)
    c = connect(db)  # recovery
    acct = c.execute("SELECT id, balance FROM acct ORDER BY id").fetchall()
    xfer = c.execute("SELECT * FROM xfer").fetchall()
    native = c.execute("SELECT * FROM native").fetchall()
    print("after crash + recovery: acct", acct, "xfer", xfer, "native", native)
    half = (acct[0][1] == 990) != bool(xfer)
    print("REPRODUCED: half of the transaction is visible" if half else "not reproduced")
    return 1 if half else 0


def reader_deadlock(tmp):
    db = tmp / "rd.db"
    if len(sys.argv) > 2 and sys.argv[2] == "--reader":
        c = connect(db)
        end, n = time.monotonic() + 4, 0
        while time.monotonic() < end:
            try:
                c.execute("SELECT * FROM kv").fetchall()
            except apsw.BusyError as e:
                print(f"reader: SELECT failed: {e}", flush=True)
            n += 1
        return 0
    c = connect(db, journal="delete")
    c.execute("CREATE VIRTUAL TABLE kv USING sharded(id INTEGER PRIMARY KEY, k TEXT NOT NULL, v INTEGER NOT NULL, "
              "shard_key=k, shards=4, dir='kv.shards')")
    c.execute("INSERT INTO kv VALUES (1, 'key-00', 0), (2, 'key-01', 0)")
    assert len({r for (r,) in c.execute("SELECT shardvt_route('kv', k) FROM kv")}) == 2
    r = subprocess.Popen([sys.executable, __file__, "reader-deadlock", "--reader", str(tmp)])
    time.sleep(0.5)
    worst = 0.0
    for _ in range(20):
        t = time.monotonic()
        c.execute("BEGIN")
        c.execute("UPDATE kv SET v = v + 1 WHERE id = 1")
        c.execute("UPDATE kv SET v = v + 1 WHERE id = 2")
        c.execute("COMMIT")
        worst = max(worst, time.monotonic() - t)
    r.wait()
    print(f"slowest multi-shard transaction with a concurrent reader: {worst * 1000:.0f} ms")
    print("REPRODUCED: COMMIT stalled" if worst > 1 else "not reproduced")
    return 1 if worst > 1 else 0


def powerloss_image(tmp):
    db = tmp / "pl.db"
    if len(sys.argv) > 2 and sys.argv[2] == "--child":
        c = connect(db)
        c.execute("SELECT shardvt_fault('powerloss')")  # writes stay in memory until synced
        c.execute("BEGIN")  # T1: one shard
        c.execute("UPDATE acct SET balance = balance - 10 WHERE id = 1")
        c.execute("UPDATE acct SET balance = balance + 10 WHERE id = 2")
        c.execute("COMMIT")
        c.execute("BEGIN")  # T2: two shards, logged with synchronous=FULL
        c.execute("UPDATE acct SET balance = balance - 1 WHERE id = 2")
        c.execute("UPDATE acct SET balance = balance + 1 WHERE id = 3")
        c.execute("COMMIT")
        print("child: both committed:", c.execute("SELECT id, balance FROM acct ORDER BY id").fetchall(), flush=True)
        os.kill(os.getpid(), 9)  # the power loss: every unsynced write is gone
    c = connect(db)
    c.execute("CREATE VIRTUAL TABLE acct USING sharded(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, "
              "balance INTEGER NOT NULL, shard_key=owner, shards=4, dir='acct.shards')")
    route = dict(c.execute("SELECT value, shardvt_route('acct', value) FROM json_each(?)",
                           ('[' + ','.join(f'"o{i}"' for i in range(64)) + ']',)))
    x = route["o0"]
    same = next(o for o in route if o != "o0" and route[o] == x)
    other = next(o for o in route if route[o] != x)
    c.execute("INSERT INTO acct VALUES (1, 'o0', 1000), (2, ?, 1000), (3, ?, 1000)", (same, other))
    c.close()
    subprocess.run([sys.executable, __file__, "powerloss-image", "--child", str(tmp)])
    for f in list(tmp.glob("*-shm")) + list((tmp / "acct.shards").glob("*-shm")):
        f.unlink()  # the wal-index still describes the lost WAL frames
    c = connect(db)  # recovery
    acct = dict(c.execute("SELECT id, balance FROM acct"))
    print("after power loss + recovery:", sorted(acct.items()), "sum", sum(acct.values()))
    bad = sum(acct.values()) != 3000
    print("REPRODUCED: T1 is half visible (sum != 3000)" if bad else "not reproduced")
    return 1 if bad else 0


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if len(sys.argv) > 3:
        tmp = pathlib.Path(sys.argv[3])
    else:
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="shardvt-repro-"))
    if what == "cross-table":
        return cross_table(tmp)
    if what == "reader-deadlock":
        return reader_deadlock(tmp)
    if what == "powerloss-image":
        return powerloss_image(tmp)
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
