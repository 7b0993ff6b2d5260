"""attach=on: a second database (or a per-process :memory: host) uses an existing sharded
table's folder; both see each other's commits; dropping the attached table keeps the files;
a mismatching declaration is refused."""
import apsw
import pytest

from conftest import open_db, rows

COLS = "id INTEGER PRIMARY KEY, k TEXT NOT NULL, v INTEGER, shard_key=k, shards=4"


def test_attach_shares_rows_and_keeps_files(so_path, tmp):
    d = tmp / "ev.shards"
    owner = open_db(tmp / "owner.db")
    owner.execute(f"CREATE VIRTUAL TABLE ev USING sharded({COLS}, dir='{d}')")
    owner.execute("INSERT INTO ev(k, v) VALUES ('a', 1), ('b', 2)")
    other = open_db(":memory:")
    other.execute(f"CREATE VIRTUAL TABLE temp.ev USING sharded({COLS}, dir='{d}', attach=on)")
    assert rows(other, "SELECT k, v FROM ev ORDER BY k") == [("a", 1), ("b", 2)]
    other.execute("BEGIN; INSERT INTO ev(k, v) VALUES ('c', 3), ('d', 4); COMMIT;")
    assert rows(owner, "SELECT count(*) FROM ev") == [(4,)]
    ids = [r[0] for r in rows(owner, "SELECT id FROM ev")]
    assert len(ids) == len(set(ids)), "auto ids collide across hosts"
    other.execute("DROP TABLE temp.ev")
    assert d.exists() and rows(owner, "SELECT count(*) FROM ev") == [(4,)]
    with pytest.raises(apsw.Error) as e:
        other.execute(f"CREATE VIRTUAL TABLE temp.ev USING sharded(id INTEGER PRIMARY KEY, k TEXT, shard_key=k, dir='{d}', attach=on)")
    assert "was created with columns" in str(e.value)
    with pytest.raises(apsw.Error) as e:
        other.execute(f"CREATE VIRTUAL TABLE temp.nope USING sharded({COLS}, dir='{tmp / 'missing'}', attach=on)")
    assert "no catalog" in str(e.value)
    assert not (tmp / "missing").exists()
