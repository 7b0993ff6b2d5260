"""A shard folder that becomes read-only (issue 3: "a read-only shard directory gets a clear
error"): a write fails with an error that names the shard file, nothing is half-written, and once
the folder is writable again the data is what it was before the failed write and writes work.

The folder is made read-only with a read-only bind mount of itself (needs root; skipped where
`mount` is not permitted). Linux checks the mount's read-only flag when a file is opened, not on
every write: shard files a connection opened before the remount stay writable through their
open descriptors. So each test writes to a shard that its connection has not opened yet, or uses
a connection opened after the remount.
"""
import contextlib
import re
import subprocess

import apsw
import pytest

from conftest import open_db, rows

KEYS = [f"user-{i}" for i in range(64)]
SHARD_FILE = re.compile(r"t\.shards/shard-\d{4}\.db")


@contextlib.contextmanager
def read_only(folder):
    """Makes `folder` read-only for files opened from now on; undone on exit (even on failure)."""
    p = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"mount --bind is not permitted here ({p.stderr.strip() or p.returncode}); CI runs as root")
    try:
        p = subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True, text=True)
        if p.returncode != 0:
            pytest.skip(f"mount -o remount,ro,bind is not permitted here ({p.stderr.strip()})")
        yield
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def make_table(tmp):
    """A 4-shard table with two rows in every shard; returns (db path, {shard: [keys]}, rows)."""
    path = tmp / "ro.db"
    c = open_db(path)
    c.execute("CREATE VIRTUAL TABLE t USING sharded(id INTEGER PRIMARY KEY, k TEXT NOT NULL, v INTEGER NOT NULL, "
              "shard_key=k, shards=4, dir='t.shards')")
    by_shard = {}
    for k in KEYS:
        s = rows(c, "SELECT shardvt_route('t', ?)", (k,))[0][0]
        by_shard.setdefault(s, []).append(k)
    assert sorted(by_shard) == [0, 1, 2, 3]
    # One-shard autocommit inserts: no commit-log entries, so a later connection opens no shard
    # file before it needs it (recovery at connect opens the participants of logged entries).
    for s, ks in sorted(by_shard.items()):
        for k in ks[:2]:
            c.execute("INSERT INTO t(k, v) VALUES (?, 100)", (k,))
    before = rows(c, "SELECT id, k, v FROM t ORDER BY id")
    c.close()
    return path, by_shard, before


def check_after(path, tmp, before, by_shard):
    """Folder writable again: the data is as before, every shard takes writes, files are intact."""
    c = open_db(path)
    assert rows(c, "SELECT id, k, v FROM t ORDER BY id") == before
    c.execute("BEGIN")
    for s, ks in sorted(by_shard.items()):
        c.execute("UPDATE t SET v = v + 1 WHERE k = ?", (ks[0],))
    c.execute("COMMIT")
    c.execute("INSERT INTO t(k, v) VALUES (?, 7)", (by_shard[0][3],))
    assert rows(c, "SELECT count(*), sum(v) FROM t") == [(len(before) + 1, sum(r[2] for r in before) + 4 + 7)]
    c.close()
    for f in sorted((tmp / "t.shards").glob("*.db")):
        h = apsw.Connection(str(f))
        assert h.execute("PRAGMA integrity_check").fetchall() == [("ok",)], f
        h.close()


def test_write_to_a_shard_in_a_read_only_folder_fails_cleanly(tmp):
    path, by_shard, before = make_table(tmp)
    x, y = by_shard[0][0], by_shard[1][0]
    c = open_db(path)
    assert rows(c, "SELECT v FROM t WHERE k = ?", (x,)) == [(100,)]  # opens the catalog and shard 0 only
    errors = []
    try:
        with read_only(tmp / "t.shards"):
            # One statement, one shard (shard 1, not open yet).
            with pytest.raises(apsw.Error) as e:
                c.execute("INSERT INTO t(k, v) VALUES (?, 1)", (y,))
            errors.append(str(e.value))
            # A transaction: shard 0 takes its write, shard 1 fails; the whole transaction is undone.
            c.execute("BEGIN")
            c.execute("UPDATE t SET v = v + 5 WHERE k = ?", (x,))
            with pytest.raises(apsw.Error) as e:
                c.execute("UPDATE t SET v = v - 5 WHERE k = ?", (y,))
            errors.append(str(e.value))
            c.execute("ROLLBACK")
            assert rows(c, "SELECT v FROM t WHERE k = ?", (x,)) == [(100,)]
            c.close()
    finally:
        c.close()
    for msg in errors:
        assert SHARD_FILE.search(msg), f"the error does not name the shard file: {msg!r}"
    check_after(path, tmp, before, by_shard)


def test_connection_opened_on_a_read_only_folder(tmp):
    path, by_shard, before = make_table(tmp)
    errors = []
    c = None
    try:
        with read_only(tmp / "t.shards"):
            c = open_db(path)
            for sql, args in (("INSERT INTO t(k, v) VALUES (?, 1)", (by_shard[2][0],)),
                              ("UPDATE t SET v = 0", ())):
                with pytest.raises(apsw.Error) as e:
                    c.execute(sql, args)
                errors.append(str(e.value))
            c.close()
    finally:
        if c is not None:
            c.close()
    assert errors and all(errors)
    check_after(path, tmp, before, by_shard)


def test_read_only_errors_say_what_to_fix(tmp):
    path, by_shard, _ = make_table(tmp)
    c = open_db(path)
    rows(c, "SELECT v FROM t WHERE k = ?", (by_shard[0][0],))
    c2 = None
    msgs = []
    try:
        with read_only(tmp / "t.shards"):
            for conn in (c, None):
                if conn is None:
                    conn = c2 = open_db(path)
                with pytest.raises(apsw.Error) as e:
                    conn.execute("INSERT INTO t(k, v) VALUES (?, 1)", (by_shard[1][0],))
                msgs.append(str(e.value))
            c.close()
            c2.close()
    finally:
        c.close()
        if c2 is not None:
            c2.close()
    for msg in msgs:
        assert "t.shards" in msg and re.search(r"read-?only", msg, re.I), msg
        assert "backup" not in msg, msg
