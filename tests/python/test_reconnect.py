"""Sharded tables survive closing the connection and are visible to other connections/processes."""
import json
import subprocess
import sys

from conftest import REPO_ROOT, SO_PATH, rows

DDL = """CREATE VIRTUAL TABLE events USING sharded(
    id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, kind TEXT, ts INTEGER,
    shard_key=user_id, strategy=hash, shards=4)"""


def fill(conn, n=100):
    with conn:  # one transaction
        conn.executemany(
            "INSERT INTO events(id, user_id, kind, ts) VALUES (?,?,?,?)",
            [(i, f"user{i % 13}", "k" + str(i % 3), i * 10) for i in range(1, n + 1)],
        )


def snapshot(conn):
    return {
        "all": rows(conn, "SELECT * FROM events"),
        "shards": rows(conn, "SELECT shard, path, rows FROM shardvt_shards('events') ORDER BY shard"),
        "route": rows(conn, "SELECT shardvt_route('events', 'user7')"),
    }


def test_reopen_sees_rows_and_same_shards(connect, tmp):
    path = tmp / "test.db"
    c1 = connect(path)
    c1.execute(DDL)
    fill(c1)
    c1.execute("UPDATE events SET user_id = 'moved' WHERE id = 5")
    c1.execute("DELETE FROM events WHERE id = 6")
    before = snapshot(c1)
    assert len(before["all"]) == 99
    assert len(before["shards"]) == 4
    c1.close()

    c2 = connect(path)
    after = snapshot(c2)
    assert after == before
    assert rows(c2, "SELECT id, user_id FROM events WHERE user_id = 'moved'") == [(5, "moved")]
    # Writes keep working after reopen, and a new auto id is above every existing one
    # (that it is exactly max+1 is checked by test_differential.test_auto_ids_are_max_plus_one).
    c2.execute("INSERT INTO events(user_id, kind, ts) VALUES ('new', 'x', 0)")
    (new_id,), = rows(c2, "SELECT last_insert_rowid()")
    assert new_id > 100
    assert rows(c2, "SELECT id, user_id FROM events WHERE user_id = 'new'") == [(new_id, "new")]
    assert rows(c2, "SELECT count(*) FROM events") == [(100,)]


def test_reopen_without_extension_fails_cleanly(connect, tmp):
    path = tmp / "test.db"
    c1 = connect(path)
    c1.execute(DDL)
    fill(c1, 5)
    c1.close()
    bare = connect(path, load=False)
    try:
        bare.execute("SELECT * FROM events").fetchall()
        raise AssertionError("reading a sharded table without the extension should fail")
    except Exception as e:  # apsw.SQLError: no such module: sharded
        assert "sharded" in str(e)


def test_second_connection_sees_committed_writes(connect, tmp):
    path = tmp / "test.db"
    a = connect(path)
    a.execute(DDL)
    b = connect(path)
    fill(a, 20)
    assert rows(b, "SELECT count(*) FROM events") == [(20,)]
    assert rows(b, "SELECT * FROM events") == rows(a, "SELECT * FROM events")

    # Uncommitted writes of a are not visible to b; after COMMIT they are.
    a.execute("BEGIN")
    a.execute("INSERT INTO events(id, user_id, kind, ts) VALUES (1000, 'zed', 'k', 1)")
    a.execute("UPDATE events SET user_id = 'user_moved' WHERE id = 3")
    assert rows(a, "SELECT count(*) FROM events") == [(21,)]
    assert rows(b, "SELECT count(*) FROM events") == [(20,)]
    assert rows(b, "SELECT user_id FROM events WHERE id = 3") == [("user3",)]
    a.execute("COMMIT")
    assert rows(b, "SELECT count(*) FROM events") == [(21,)]
    assert rows(b, "SELECT user_id FROM events WHERE id = 3") == [("user_moved",)]
    assert rows(b, "SELECT id FROM events WHERE user_id = 'zed'") == [(1000,)]

    # And b's writes are visible to a.
    b.execute("DELETE FROM events WHERE id <= 10")
    assert rows(a, "SELECT count(*) FROM events") == [(11,)]
    # Auto ids stay unique across connections.
    b.execute("INSERT INTO events(user_id) VALUES ('from_b')")
    a.execute("INSERT INTO events(user_id) VALUES ('from_a')")
    ids = [r[0] for r in rows(a, "SELECT id FROM events")]
    assert len(ids) == len(set(ids)) == 13


CHILD = r"""
import json, sys, apsw
conn = apsw.Connection(sys.argv[1])
conn.enable_load_extension(True)
conn.load_extension(sys.argv[2])
out = {
    "all": [list(r) for r in conn.execute("SELECT * FROM events")],
    "shards": [list(r) for r in conn.execute(
        "SELECT shard, path, rows FROM shardvt_shards('events') ORDER BY shard")],
}
conn.execute("INSERT INTO events(id, user_id, kind, ts) VALUES (5000, 'child', 'c', 5)")
print(json.dumps(out))
"""


def test_new_process_sees_committed_writes(connect, tmp):
    path = tmp / "test.db"
    a = connect(path)
    a.execute(DDL)
    fill(a, 30)
    a.execute("UPDATE events SET user_id = 'moved' WHERE id = 7")
    expected = {
        "all": [list(r) for r in a.execute("SELECT * FROM events")],
        "shards": [list(r) for r in a.execute(
            "SELECT shard, path, rows FROM shardvt_shards('events') ORDER BY shard")],
    }
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(SO_PATH)],
        capture_output=True, text=True, timeout=120, cwd=str(REPO_ROOT),
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got == expected
    # The child's write is visible here.
    assert rows(a, "SELECT user_id FROM events WHERE id = 5000") == [("child",)]
    assert rows(a, "SELECT count(*) FROM events") == [(31,)]
