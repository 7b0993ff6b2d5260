"""The extension loads into apsw's own (newer, statically linked) SQLite and works there."""
import pathlib

import apsw
import pytest

from conftest import open_db, rows

FUNCTIONS = [
    "shardvt_version",
    "shardvt_debug",
    "shardvt_route",
    "shardvt_explain",
    "shardvt_create_index",
    "shardvt_drop_index",
]


def test_loads_into_apsw_sqlite(db):
    # apsw bundles its own SQLite (3.5x), newer than the Debian CLI's 3.40.1.
    (version,), = rows(db, "SELECT sqlite_version()")
    assert version == apsw.sqlite_lib_version()
    assert tuple(int(p) for p in version.split(".")[:2]) >= (3, 40)


def test_loads_into_memory_connection(connect, so_path):
    conn = connect(":memory:")
    (v,), = rows(conn, "SELECT shardvt_version()")
    assert isinstance(v, str) and v


def test_version(db):
    (v,), = rows(db, "SELECT shardvt_version()")
    assert isinstance(v, str) and v.strip() == v and v != ""
    (d,), = rows(db, "SELECT shardvt_debug()")
    assert d is not None


def test_sql_surface_registered(db):
    names = {r[0] for r in rows(db, "SELECT name FROM pragma_function_list")}
    missing = [f for f in FUNCTIONS if f not in names]
    assert not missing, f"functions not registered: {missing}"
    modules = {r[0] for r in rows(db, "SELECT name FROM pragma_module_list")}
    assert "sharded" in modules
    assert "shardvt_shards" in modules


def test_create_insert_select(db, tmp):
    db.execute(
        """CREATE VIRTUAL TABLE events USING sharded(
             id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, kind TEXT, ts INTEGER, body TEXT,
             shard_key=user_id, strategy=hash, shards=8)"""
    )
    db.execute(
        "INSERT INTO events(user_id, kind, ts, body) VALUES (?,?,?,?)", ("u1", "click", 1, '{"x":1}')
    )
    db.executemany(
        "INSERT INTO events(user_id, kind, ts, body) VALUES (?,?,?,?)",
        [(f"u{i % 5}", "view", i, None) for i in range(2, 42)],
    )
    assert rows(db, "SELECT * FROM events WHERE user_id = 'u1' AND id = 1") == [
        (1, "u1", "click", 1, '{"x":1}')
    ]
    assert rows(db, "SELECT count(*) FROM events") == [(41,)]
    assert rows(db, "SELECT id FROM events") == [(i,) for i in range(1, 42)]
    assert rows(db, "SELECT count(*) FROM events WHERE user_id = 'u3'") == [(8,)]
    # Default shard dir: beside the main db, named <db>.<table>.shards. (Whether <db> is the file
    # name "test.db" or its stem "test" is not settled yet; accept both.)
    dirs = sorted(p.name for p in tmp.glob("*.events.shards") if p.is_dir())
    assert dirs in (["test.db.events.shards"], ["test.events.shards"]), dirs
    paths = [r[0] for r in rows(db, "SELECT path FROM shardvt_shards('events')")]
    assert all(pathlib.Path(p).resolve().parent == (tmp / dirs[0]).resolve() for p in paths), paths
    shards = rows(db, "SELECT shard, rows FROM shardvt_shards('events') ORDER BY shard")
    assert len(shards) == 8
    assert sum(r[1] for r in shards) == 41

    # The row moves shard and keeps its id.
    before = rows(db, "SELECT shardvt_route('events', 'u1'), shardvt_route('events', 'u2')")
    db.execute("UPDATE events SET user_id = 'u2' WHERE id = 1")
    assert rows(db, "SELECT id, user_id, kind FROM events WHERE id = 1") == [(1, "u2", "click")]
    assert (1,) in rows(db, "SELECT id FROM events WHERE user_id = 'u2'")
    assert (1,) not in rows(db, "SELECT id FROM events WHERE user_id = 'u1'")
    assert rows(db, "SELECT count(*) FROM events") == [(41,)]
    assert before[0][0] is not None


def test_load_twice_is_harmless(db):
    db.load_extension(str(__import__("conftest").SO_PATH))
    (v,), = rows(db, "SELECT shardvt_version()")
    assert v


def test_loads_into_a_connection_on_the_shardvt_vfs(db, tmp, so_path):
    """A connection whose own database uses the `shardvt` VFS (registered by the first load)
    can load the extension too: the VFS forwards xDlOpen/xDlSym/xDlClose/xDlError."""
    conn = apsw.Connection(str(tmp / "onvfs.db"), vfs="shardvt")
    conn.enable_load_extension(True)
    conn.load_extension(str(so_path))
    assert rows(conn, "SELECT shardvt_version() IS NOT NULL") == [(1,)]
    with pytest.raises(apsw.ExtensionLoadingError):
        conn.load_extension(str(tmp / "no-such-library.so"))
    conn.execute("CREATE VIRTUAL TABLE t USING sharded(k TEXT, v, shard_key=k, shards=2)")
    conn.execute("INSERT INTO t VALUES ('a', 1), ('b', 2)")
    assert rows(conn, "SELECT k, v FROM t ORDER BY k") == [("a", 1), ("b", 2)]
    conn.close()
