"""Bad and hostile states get clear errors, create nothing, and lose no data (issue 2 item 10)."""
import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys

import apsw
import pytest

from conftest import REPO_ROOT, SO_PATH, open_db, rows

DDL = "CREATE VIRTUAL TABLE t USING sharded(id INTEGER PRIMARY KEY, k TEXT, v, shard_key=k, shards=4, dir='t_shards')"


def make_table(path):
    conn = open_db(path)
    conn.execute(DDL)
    conn.execute("INSERT INTO t(k, v) VALUES ('a', 1), ('b', 2), ('c', 3), ('d', 4)")
    return conn


def test_copied_database_never_creates_files(so_path, tmp):
    """A database file that names a sharded table, opened elsewhere: connecting must not create
    the folder it points to (a hostile schema cannot make us write where it likes)."""
    (tmp / "a").mkdir()
    (tmp / "b").mkdir()
    make_table(tmp / "a" / "x.db").close()
    shutil.copy(tmp / "a" / "x.db", tmp / "b" / "x.db")
    conn = open_db(tmp / "b" / "x.db")
    with pytest.raises(apsw.Error) as e:
        rows(conn, "SELECT * FROM t")
    assert "no catalog for table \"t\"" in str(e.value)
    assert not (tmp / "b" / "t_shards").exists()
    # the original is untouched and still readable
    assert rows(open_db(tmp / "a" / "x.db"), "SELECT count(*) FROM t") == [(4,)]


def test_catalog_of_another_table_is_refused(so_path, tmp):
    make_table(tmp / "x.db").close()
    conn = open_db(tmp / "y.db")
    with pytest.raises(apsw.Error) as e:
        conn.execute(DDL.replace("VIRTUAL TABLE t", "VIRTUAL TABLE t").replace("'t_shards'", f"'{tmp / 't_shards'}'"))
    assert "already holds the catalog" in str(e.value)
    # and the data of the first table is still there
    assert rows(open_db(tmp / "x.db"), "SELECT count(*) FROM t") == [(4,)]


def test_catalog_format_version_and_schema_mismatch(so_path, tmp):
    make_table(tmp / "x.db").close()
    cat = apsw.Connection(str(tmp / "t_shards" / "catalog.db"))
    cat.execute("UPDATE meta SET value = 99 WHERE key = 'format_version'")
    cat.close()
    conn = open_db(tmp / "x.db")
    with pytest.raises(apsw.Error) as e:
        rows(conn, "SELECT * FROM t")
    assert "format version 99" in str(e.value) and "reads version 1" in str(e.value)


def test_missing_and_corrupt_shard_files(so_path, tmp):
    make_table(tmp / "x.db").close()
    shard = tmp / "t_shards" / "shard-0002.db"
    os.rename(shard, tmp / "saved.db")
    conn = open_db(tmp / "x.db")
    with pytest.raises(apsw.Error) as e:
        rows(conn, "SELECT * FROM t")
    assert "shard-0002.db is missing" in str(e.value)
    conn.close()
    # restoring the file restores the table
    os.rename(tmp / "saved.db", shard)
    assert rows(open_db(tmp / "x.db"), "SELECT count(*) FROM t") == [(4,)]
    # a file that is not a database
    data = shard.read_bytes()
    shard.write_bytes(b"this is not a database" * 100)
    for ext in ("-wal", "-shm"):
        p = tmp / "t_shards" / ("shard-0002.db" + ext)
        if p.exists():
            p.unlink()
    conn = open_db(tmp / "x.db")
    with pytest.raises(apsw.Error) as e:
        rows(conn, "SELECT * FROM t")
    assert "shard-0002.db" in str(e.value)
    conn.close()
    shard.write_bytes(data)


def test_dir_that_is_a_file(so_path, tmp):
    (tmp / "afile").write_text("x")
    conn = open_db(tmp / "x.db")
    with pytest.raises(apsw.Error) as e:
        conn.execute(DDL.replace("'t_shards'", "'afile'"))
    assert "not a directory" in str(e.value)
    with pytest.raises(apsw.Error) as e:
        conn.execute(DDL.replace("'t_shards'", "'afile/sub'"))
    assert "cannot create shard directory" in str(e.value)


def test_shard_files_are_plain_sqlite(so_path, tmp):
    make_table(tmp / "x.db").close()
    total = 0
    for f in sorted((tmp / "t_shards").glob("shard-*.db")):
        c = apsw.Connection(str(f))  # plain SQLite, no extension
        assert c.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert c.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
        total += c.execute("SELECT count(*) FROM data").fetchall()[0][0]
        c.close()
    assert total == 4


SECOND_LIB = r"""
import ctypes, ctypes.util, sys, apsw
so = sys.argv[1]
a = apsw.Connection(":memory:")
a.enable_load_extension(True)
a.load_extension(so)                     # first library: apsw's own SQLite
lib = ctypes.CDLL(ctypes.util.find_library("sqlite3"))   # second library: the system one
db = ctypes.c_void_p()
assert lib.sqlite3_open(b":memory:", ctypes.byref(db)) == 0
lib.sqlite3_enable_load_extension(db, 1)
err = ctypes.c_char_p()
rc = lib.sqlite3_load_extension(db, so.encode(), None, ctypes.byref(err))
print("rc", rc)
print("msg", err.value.decode() if err.value else "")
"""


def test_second_sqlite_library_is_refused(so_path, tmp):
    if not ctypes.util.find_library("sqlite3"):
        pytest.fail("the system libsqlite3 is needed for this test (apt-get install libsqlite3-0)")
    out = subprocess.run([sys.executable, "-c", SECOND_LIB, str(SO_PATH)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "rc 1" in out.stdout, out.stdout
    assert "already loaded by another SQLite library" in out.stdout, out.stdout


def test_drop_and_recreate_in_same_dir_starts_clean(so_path, tmp):
    """DROP TABLE removes every file of the table, including the commit log: a table created
    again in the same folder must never see rows of the old one (regression: stale redo records
    were re-applied by recovery)."""
    conn = make_table(tmp / "x.db")
    conn.execute("BEGIN; INSERT INTO t(k, v) VALUES ('e', 5), ('f', 6), ('g', 7); COMMIT;")
    conn.execute("DROP TABLE t")
    assert not (tmp / "t_shards").exists()
    conn.execute(DDL)
    conn.execute("INSERT INTO t(k, v) VALUES ('z', 26)")
    conn.close()
    conn = open_db(tmp / "x.db")
    assert rows(conn, "SELECT k, v FROM t") == [("z", 26)]


def test_replaced_or_hard_linked_shard_is_refused(so_path, tmp):
    """A shard file is identified by (device, inode) recorded at creation: a file copied over it
    (a restore of the wrong file, a second writer's copy) or an extra hard link is refused, so two
    processes can never keep two WAL files for one shard."""
    make_table(tmp / "x.db").close()
    shard = tmp / "t_shards" / "shard-0001.db"
    # a replaced file: same content, new inode
    shutil.copy(shard, tmp / "copy.db")
    os.replace(tmp / "copy.db", shard)
    conn = open_db(tmp / "x.db")
    with pytest.raises(apsw.Error) as e:
        rows(conn, "SELECT * FROM t")
    assert "shard-0001.db was replaced" in str(e.value)
    conn.close()
    # a hard link to a shard file (a fresh table, so only the link is wrong)
    conn = open_db(tmp / "h.db")
    conn.execute(DDL.replace("'t_shards'", "'h_shards'"))
    conn.close()
    os.link(tmp / "h_shards" / "shard-0002.db", tmp / "alias.db")
    conn = open_db(tmp / "h.db")
    with pytest.raises(apsw.Error) as e:
        rows(conn, "SELECT * FROM t")
    assert "shard-0002.db has 2 hard links" in str(e.value)
    conn.close()
    os.unlink(tmp / "alias.db")
    assert rows(open_db(tmp / "h.db"), "SELECT count(*) FROM t") == [(0,)]
