"""The transactional outbox (outbox=on): capture of every write kind, one update per shard-key
move, nothing from rolled-back work, cursors/acks/purge, several consumers, order, recovery of
outbox rows with the redo log, and crashes (SIGKILL) in the middle of transactions.

Invariant used throughout (`replay`): applying every exported change in order to an empty dict
reproduces the table exactly, and no change is exported twice."""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import apsw
import pytest

from conftest import SO_PATH, rows

DDL = (
    "CREATE VIRTUAL TABLE t USING sharded(id INTEGER PRIMARY KEY, k TEXT, v TEXT DEFAULT 'dv', "
    "n INTEGER, email TEXT UNIQUE, shard_key=k, shards=4, outbox=on)"
)


def export(conn, consumer="c", max_changes=100000, table="t"):
    return json.loads(conn.execute("SELECT shardvt_outbox_export(?, ?, ?)", (table, consumer, max_changes)).fetchall()[0][0])


def ack(conn, cursor, consumer="c", table="t"):
    return conn.execute("SELECT shardvt_outbox_ack(?, ?, ?)", (table, consumer, cursor)).fetchall()[0][0]


def stats(conn, table="t"):
    return json.loads(conn.execute("SELECT shardvt_outbox_stats(?)", (table,)).fetchall()[0][0])


def ops(changes):
    return [c["op"] for c in changes]


def apply(state, changes, key="id"):
    for c in changes:
        if c["op"] in ("u", "d"):
            state.pop(c["before"][key], None)
        if c["op"] in ("c", "u"):
            state[c["after"][key]] = c["after"]
    return state


def table_state(conn, table="t"):
    cur = conn.execute(f"SELECT * FROM {table}")
    out = {}
    for r in cur:
        names = [d[0] for d in cur.getdescription()]
        row = dict(zip(names, r))
        out[row["id"]] = row
    return out


def replay(conn, consumer, table="t"):
    """Exports everything for a fresh consumer and checks the replay invariant."""
    changes = export(conn, consumer, 10_000_000, table)
    positions = [(c["source"]["csn"], c["source"]["tn"]) for c in changes]
    assert positions == sorted(positions), "export is not in (csn, tn) order"
    assert len(set(positions)) == len(positions), "a change was exported twice"
    assert apply({}, changes) == table_state(conn, table)
    return changes


@pytest.fixture
def t(connect, tmp):
    conn = connect(tmp / "o.db")
    conn.execute(DDL)
    return conn


def test_option_values_and_catalog(connect, tmp):
    conn = connect(tmp / "a.db")
    conn.execute("CREATE VIRTUAL TABLE off1 USING sharded(a, shard_key=a, outbox=off)")
    with pytest.raises(apsw.SQLError, match="has no outbox"):
        export(conn, table="off1")
    with pytest.raises(apsw.SQLError, match="expected on or off"):
        conn.execute("CREATE VIRTUAL TABLE bad USING sharded(a, shard_key=a, outbox=maybe)")
    conn.execute("CREATE VIRTUAL TABLE on1 USING sharded(id INTEGER PRIMARY KEY, a, shard_key=a, outbox=on)")
    conn.execute("INSERT INTO on1(a) VALUES (1)")
    conn.close()
    conn = connect(tmp / "a.db")  # reconnect: the catalog fingerprint includes outbox=on
    assert ops(export(conn, table="on1")) == ["c"]
    assert rows(conn, "SELECT count(*) FROM off1") == [(0,)]


def test_capture_every_write_kind(t):
    t.execute("INSERT INTO t(id, k, n) VALUES (1, 'a', 10)")          # DEFAULT applied in the image
    t.execute("INSERT INTO t(id, k, v, n) VALUES (2, 'b', 'x', '20')")  # affinity applied
    t.execute("UPDATE t SET n = n + 1 WHERE id = 1")
    t.execute("DELETE FROM t WHERE id = 2")
    t.execute("INSERT OR IGNORE INTO t(id, k) VALUES (1, 'zzz')")      # ignored: nothing
    ch = export(t)
    assert ops(ch) == ["c", "c", "u", "d"]
    assert ch[0]["before"] is None and ch[0]["after"] == {"id": 1, "k": "a", "v": "dv", "n": 10, "email": None}
    assert ch[1]["after"]["n"] == 20
    assert ch[2]["before"]["n"] == 10 and ch[2]["after"]["n"] == 11
    assert ch[3]["before"]["id"] == 2 and ch[3]["after"] is None
    src = ch[0]["source"]
    assert src["table"] == "t" and src["rowid"] == 1 and len(src["txid"]) == 16
    assert src["shard"] == rows(t, "SELECT shardvt_route('t', 'a')")[0][0]
    assert ch[0]["cursor"].startswith("v1.") and ch[0]["ts_ms"] == src["ts_ms"]
    replay(t, "check")


def test_or_replace_records_the_replaced_rows(t):
    keys = [f"k{i}" for i in range(40)]
    route = {k: rows(t, "SELECT shardvt_route('t', ?)", (k,))[0][0] for k in keys}
    same = [k for k in keys if route[k] == route["k0"]][1]
    other = next(k for k in keys if route[k] != route["k0"])
    t.execute("INSERT INTO t(id, k, email) VALUES (1, 'k0', 'a@x'), (2, ?, 'b@x'), (3, ?, 'c@x')", (same, other))
    ack(t, export(t)[-1]["cursor"])
    # same rowid, same shard: the old row is deleted, the new one created
    t.execute("INSERT OR REPLACE INTO t(id, k, v) VALUES (1, 'k0', 'new')")
    ch = export(t)
    assert [(c["op"], (c["before"] or c["after"])["id"]) for c in ch] == [("d", 1), ("c", 1)]
    assert ch[0]["before"]["email"] == "a@x" and ch[1]["after"]["v"] == "new"
    ack(t, ch[-1]["cursor"])
    # UNIQUE conflict with a row of the same shard, then of another shard
    t.execute("INSERT OR REPLACE INTO t(id, k, email) VALUES (4, 'k0', 'b@x')")
    t.execute("INSERT OR REPLACE INTO t(id, k, email) VALUES (5, 'k0', 'c@x')")
    ch = export(t)
    assert [(c["op"], (c["before"] or c["after"])["id"]) for c in ch] == [("d", 2), ("c", 4), ("d", 3), ("c", 5)]
    ack(t, ch[-1]["cursor"])
    # UPDATE OR REPLACE: the row whose email is taken is deleted, then the update
    t.execute("UPDATE OR REPLACE t SET email = 'c@x' WHERE id = 4")
    ch = export(t)
    assert [(c["op"], (c["before"] or c["after"])["id"]) for c in ch] == [("d", 5), ("u", 4)]
    # explicit rowid taken in another shard
    t.execute("INSERT OR REPLACE INTO t(id, k) VALUES (4, ?)", (other,))
    ch = export(t)[2:]
    assert [(c["op"], (c["before"] or c["after"])["id"]) for c in ch] == [("d", 4), ("c", 4)]
    # no REPLACE victim is left behind for later deletes (the capture is disarmed)
    t.execute("DELETE FROM t")
    replay(t, "check")


def test_shard_key_move_is_one_update(t):
    t.execute("INSERT INTO t(id, k, n) VALUES (7, 'a', 1)")
    dest = next(k for k in (f"m{i}" for i in range(100)) if rows(t, "SELECT shardvt_route('t', ?)", (k,)) != rows(t, "SELECT shardvt_route('t', 'a')"))
    ack(t, export(t)[-1]["cursor"])
    t.execute("UPDATE t SET k = ?, n = 2 WHERE id = 7", (dest,))
    ch = export(t)
    assert ops(ch) == ["u"]
    assert ch[0]["before"]["k"] == "a" and ch[0]["after"]["k"] == dest and ch[0]["after"]["n"] == 2
    assert ch[0]["source"]["shard"] == rows(t, "SELECT shardvt_route('t', ?)", (dest,))[0][0]
    # a move that also changes the rowid
    t.execute("UPDATE t SET k = 'a', id = 8 WHERE id = 7")
    ch = export(t)[1:]
    assert ops(ch) == ["u"] and ch[0]["before"]["id"] == 7 and ch[0]["after"]["id"] == 8
    replay(t, "check")


def test_rolled_back_work_exports_nothing(t):
    t.execute("INSERT INTO t(id, k) VALUES (1, 'a')")
    t.execute("BEGIN; INSERT INTO t(id, k) VALUES (2, 'b'); UPDATE t SET n = 5 WHERE id = 1; ROLLBACK")
    t.execute("BEGIN; INSERT INTO t(id, k) VALUES (3, 'c'); SAVEPOINT s1; INSERT INTO t(id, k) VALUES (4, 'd'); "
              "DELETE FROM t WHERE id = 1; ROLLBACK TO s1; INSERT INTO t(id, k) VALUES (5, 'e'); COMMIT")
    t.execute("SAVEPOINT outer_sp; INSERT INTO t(id, k) VALUES (6, 'f'); ROLLBACK TO outer_sp; RELEASE outer_sp")
    with pytest.raises(apsw.ConstraintError):
        # a failing statement: the rows it inserted before the error are undone
        t.execute("INSERT INTO t(id, k, email) VALUES (9, 'x', 'dup'), (10, 'y', 'dup')")
    ch = export(t)
    assert [(c["op"], c["after"]["id"]) for c in ch] == [("c", 1), ("c", 3), ("c", 5)]
    assert ch[1]["source"]["txid"] == ch[2]["source"]["txid"] != ch[0]["source"]["txid"]
    assert (ch[1]["source"]["tn"], ch[2]["source"]["tn"]) < (ch[2]["source"]["tn"] + 1, 0)
    replay(t, "check")


def test_statement_rollback_and_nested_savepoints_inside_a_transaction(t):
    """Changes are staged in memory until COMMIT: a failing statement, ROLLBACK TO and RELEASE
    must drop exactly the staged changes they undo, across several shards."""
    t.execute("BEGIN")
    t.execute("INSERT INTO t(id, k, email) VALUES (1, 'a', 'e1'), (2, 'b', 'e2')")
    with pytest.raises(apsw.ConstraintError):  # rows 3 and 4 are undone with their statement
        t.execute("INSERT INTO t(id, k, email) VALUES (3, 'c', 'x'), (4, 'd', 'y'), (5, 'e', 'e1')")
    t.execute("SAVEPOINT a")
    t.execute("INSERT INTO t(id, k) VALUES (6, 'f')")
    t.execute("SAVEPOINT b")
    t.execute("UPDATE t SET n = 7 WHERE id = 1")
    t.execute("RELEASE b")
    t.execute("SAVEPOINT c")
    t.execute("DELETE FROM t WHERE id = 2")
    t.execute("ROLLBACK TO c")                  # the delete is undone, 6 and the update stay
    t.execute("INSERT INTO t(id, k) VALUES (8, 'h')")
    t.execute("RELEASE a")
    t.execute("SAVEPOINT d")
    t.execute("INSERT INTO t(id, k) VALUES (9, 'i')")
    t.execute("ROLLBACK TO d")
    t.execute("RELEASE d")
    t.execute("COMMIT")
    ch = export(t)
    assert [(c["op"], (c["after"] or c["before"])["id"]) for c in ch] == [("c", 1), ("c", 2), ("c", 6), ("u", 1), ("c", 8)]
    tns = [c["source"]["tn"] for c in ch]
    assert tns == sorted(tns) and len({c["source"]["txid"] for c in ch}) == 1
    replay(t, "check")


def test_rollback_to_a_savepoint_opened_before_the_table_joined(t):
    """SQLite reports to a table only the savepoints opened after it joined the transaction (the
    DELETE's statement savepoint comes first here, then is released): ROLLBACK TO the outer
    savepoint must still drop the staged delete, as the shard drops the row's deletion."""
    t.execute("INSERT INTO t(id, k) VALUES (1, 'a'), (2, 'b')")
    t.execute("BEGIN; SAVEPOINT sp; DELETE FROM t WHERE id = 1; ROLLBACK TO sp; RELEASE sp; COMMIT")
    t.execute("BEGIN; SAVEPOINT sp; UPDATE t SET n = 5 WHERE id = 2; SAVEPOINT inner; "
              "DELETE FROM t WHERE id = 2; RELEASE inner; ROLLBACK TO sp; INSERT INTO t(id, k) VALUES (3, 'c'); COMMIT")
    ch = export(t)
    assert [(c["op"], (c["after"] or c["before"])["id"]) for c in ch] == [("c", 1), ("c", 2), ("c", 3)]
    replay(t, "check")


def test_large_transaction_spills_and_still_commits_exactly(t):
    """Past SPILL_BYTES (8 MB) of staged images the changes are written to the shards at once,
    unsealed; savepoint rollbacks after the spill and the seal at COMMIT must still export
    exactly the committed changes, with one csn."""
    big = "x" * 2000
    t.execute("BEGIN")
    for i in range(1, 5001):                    # ~10 MB of after images over 4 shards
        t.execute("INSERT INTO t(id, k, v) VALUES (?, ?, ?)", (i, f"k{i % 97}", big))
    t.execute("SAVEPOINT s")
    t.execute("DELETE FROM t WHERE id <= 100")
    t.execute("ROLLBACK TO s")
    t.execute("UPDATE t SET n = 1 WHERE id <= 10")
    t.execute("COMMIT")
    ch = export(t)
    assert len(ch) == 5010 and len({c["source"]["csn"] for c in ch}) == 1
    assert [c["source"]["tn"] for c in ch] == sorted(c["source"]["tn"] for c in ch)
    replay(t, "check")
    # a whole spilled transaction rolled back leaves nothing
    t.execute("BEGIN")
    for i in range(10001, 15001):
        t.execute("INSERT INTO t(id, k, v) VALUES (?, ?, ?)", (i, f"k{i % 97}", big))
    t.execute("ROLLBACK")
    assert len(export(t, "after_rollback")) == 5010


def test_spilled_transaction_is_recovered_with_its_outbox_rows(connect, tmp, monkeypatch):
    """The redo record of a spilled multi-shard transaction reads the spilled rows back (the
    spill threshold is lowered so that the rows still fit the shards' page caches and the
    fault hits the victim's COMMIT)."""
    monkeypatch.setenv("SHARDVT_OUTBOX_SPILL_BYTES", "5000")
    t = connect(tmp / "spill.db")
    t.execute(DDL)
    test_failed_shard_commit_is_recovered_with_its_outbox_rows(t)
    t.execute("BEGIN")  # and a spilled transaction that commits normally, with a savepoint rollback
    for i in range(100, 140):
        t.execute("INSERT INTO t(id, k, v) VALUES (?, ?, ?)", (i, f"s{i % 7}", "z" * 900))
        if i == 120:
            t.execute("SAVEPOINT p")
    t.execute("ROLLBACK TO p")
    t.execute("COMMIT")
    assert rows(t, "SELECT count(*) FROM t WHERE id >= 100") == [(21,)]
    replay(t, "check2")


ODD_VALUES = [None, 0, -7, 2**62, 5.0, 5.5, -0.25, 1e300, 2.0**60, float(2**53), "12", " 12 ", "1e3", "5.0",
              "abc", "", "0x10", "9223372036854775808", b"\x00\xff", b""]


def strict(v):
    """A value with its type, as SQLite returns it and as the JSON image carries it (blobs are
    base64 text in images)."""
    import base64
    if isinstance(v, bytes):
        return ("blob", base64.b64encode(v).decode())
    return (type(v).__name__, v)


def test_after_images_equal_the_native_row(connect, tmp):
    """The after image of an INSERT is built from the inserted values when the column affinity's
    effect is certain and read back otherwise: either way it must equal, type for type, the row
    a native table with the same declared types stores."""
    conn = connect(tmp / "img.db")
    cols = "id INTEGER PRIMARY KEY, k TEXT, i INTEGER, r REAL, tx TEXT, b BLOB, nu NUMERIC, nt"
    conn.execute(f"CREATE TABLE native({cols})")
    conn.execute(f"CREATE VIRTUAL TABLE t USING sharded({cols}, shard_key=k, shards=3, outbox=on)")
    rid = 0
    conn.execute("BEGIN")
    for v in ODD_VALUES:
        rid += 1
        args = (rid, f"k{rid}", v, v, v, v, v, v)
        conn.execute("INSERT INTO native VALUES (?, ?, ?, ?, ?, ?, ?, ?)", args)
        conn.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?)", args)
    conn.execute("COMMIT")
    rid += 1  # and through OR REPLACE in autocommit
    conn.execute("INSERT INTO native VALUES (?, 'z', '7', 7, 7.5, 'q', '3.0', 1)", (rid,))
    conn.execute("INSERT OR REPLACE INTO t VALUES (?, 'z', '7', 7, 7.5, 'q', '3.0', 1)", (rid,))
    cur = conn.execute("SELECT * FROM native ORDER BY id")
    names = [d[0] for d in cur.getdescription()]
    native = {r[0]: {n: strict(x) for n, x in zip(names, r)} for r in cur}
    ch = export(conn)
    assert len(ch) == len(native)
    for c in ch:
        img = c["after"]
        want = native[img["id"]]
        got = {n: (want[n][0], img[n]) if want[n][0] == "blob" else strict(img[n]) for n in names}
        assert got == want, (img["id"], got, want)
    assert table_state(conn).keys() == native.keys()


def test_multi_shard_transaction_has_one_txid_in_program_order(t):
    keys = [f"key{i}" for i in range(12)]
    t.execute("BEGIN")
    for i, k in enumerate(keys):
        t.execute("INSERT INTO t(id, k) VALUES (?, ?)", (i + 1, k))
    t.execute("UPDATE t SET n = 1 WHERE id = 3")
    t.execute("UPDATE t SET k = 'moved' WHERE id = 3")
    t.execute("DELETE FROM t WHERE id = 3")
    t.execute("COMMIT")
    ch = export(t)
    assert len({c["source"]["shard"] for c in ch}) > 1
    assert len({c["source"]["txid"] for c in ch}) == 1 and len({c["source"]["csn"] for c in ch}) == 1
    assert [c["source"]["tn"] for c in ch] == list(range(1, 16))
    assert [(c["op"], (c["after"] or c["before"])["id"]) for c in ch][-3:] == [("u", 3), ("u", 3), ("d", 3)]
    replay(t, "check")


def test_cursor_ack_purge_and_repeat(t):
    for i in range(10):
        t.execute("INSERT INTO t(id, k) VALUES (?, ?)", (i + 1, f"k{i}"))
    first = export(t, max_changes=4)
    assert [c["after"]["id"] for c in first] == [1, 2, 3, 4]
    assert export(t, max_changes=4) == first  # no ack: the same changes again
    assert ack(t, first[1]["cursor"]) == first[1]["cursor"]
    assert [c["after"]["id"] for c in export(t, max_changes=3)] == [3, 4, 5]
    assert ack(t, first[0]["cursor"]) == first[1]["cursor"]  # never moves back
    s = stats(t)
    assert s["retained"] == 8 and s["consumers"][0]["lag"] == 8 and s["consumers"][0]["cursor"] == first[1]["cursor"]
    rest = export(t)
    ack(t, rest[-1]["cursor"])
    assert export(t) == [] and stats(t)["retained"] == 0
    with pytest.raises(apsw.SQLError, match="not an outbox cursor"):
        ack(t, "garbage")
    with pytest.raises(apsw.SQLError, match="ahead of every change"):
        ack(t, "v1.99999999999999999.1")
    with pytest.raises(apsw.SQLError, match="max_changes"):
        export(t, max_changes=0)
    t.execute("INSERT INTO t(id, k) VALUES (11, 'z')")
    assert [c["after"]["id"] for c in export(t)] == [11]
    # functions that write are direct-only
    flags = dict(rows(t, "SELECT name, flags FROM pragma_function_list WHERE name LIKE 'shardvt_outbox%'"))
    assert len(flags) == 4 and all(f & 0x080000 for f in flags.values())


def test_consumers_keep_their_own_cursor_and_purge_waits_for_all(t):
    for i in range(6):
        t.execute("INSERT INTO t(id, k) VALUES (?, ?)", (i + 1, f"k{i}"))
    a, b = export(t, "a"), export(t, "b")
    assert a == b and len(a) == 6
    ack(t, a[-1]["cursor"], "a")
    assert export(t, "a") == [] and len(export(t, "b")) == 6
    s = stats(t)
    assert s["retained"] == 6  # b has not acknowledged: nothing purged, writers not blocked
    assert {c["name"]: c["lag"] for c in s["consumers"]} == {"a": 0, "b": 6}
    t.execute("INSERT INTO t(id, k) VALUES (7, 'x')")
    ack(t, b[2]["cursor"], "b")
    assert stats(t)["retained"] == 4
    assert [c["after"]["id"] for c in export(t, "b")] == [4, 5, 6, 7]
    assert [c["after"]["id"] for c in export(t, "a")] == [7]


def test_drop_consumer_releases_its_changes(t):
    for i in range(5):
        t.execute("INSERT INTO t(id, k) VALUES (?, ?)", (i + 1, f"k{i}"))
    a, b = export(t, "a"), export(t, "slow")
    ack(t, a[-1]["cursor"], "a")
    assert stats(t)["retained"] == 5  # "slow" never acks: kept for it
    drop = lambda name: t.execute("SELECT shardvt_outbox_drop_consumer('t', ?)", (name,)).fetchall()[0][0]
    assert drop("slow") == 1
    s = stats(t)
    assert [c["name"] for c in s["consumers"]] == ["a"] and s["retained"] == 0  # purged at once
    assert drop("slow") == 0  # unknown consumer: nothing to do
    assert export(t, "a") == []
    t.execute("INSERT INTO t(id, k) VALUES (6, 'x')")
    assert [c["after"]["id"] for c in export(t, "slow")] == [6]  # a new consumer of that name starts over
    with pytest.raises(apsw.SQLError, match="argument 2 \\(consumer\\) must not be NULL"):
        t.execute("SELECT shardvt_outbox_drop_consumer('t', NULL)")
    with pytest.raises(apsw.SQLError, match="no such|not a sharded|unknown"):
        t.execute("SELECT shardvt_outbox_drop_consumer('nope', 'a')")


def test_retention_keeps_acknowledged_changes(connect, tmp):
    c = connect(tmp / "r.db")
    c.execute(DDL.replace("outbox=on)", "outbox=on, outbox_retention='2s')"))
    for i in range(4):
        c.execute("INSERT INTO t(id, k) VALUES (?, ?)", (i + 1, f"k{i}"))
    ch = export(c, "a")
    ack(c, ch[-1]["cursor"], "a")
    s = stats(c)
    assert s["retained"] == 4 and s["retention_s"] == 2 and s["consumers"][0]["lag"] == 0
    # a consumer that joins within the retention window still sees them (replay)
    assert [x["after"]["id"] for x in export(c, "late")] == [1, 2, 3, 4]
    ack(c, ch[1]["cursor"], "late")
    time.sleep(2.2)
    c.execute("INSERT INTO t(id, k) VALUES (5, 'k5')")
    ack(c, ch[-1]["cursor"], "late")  # purge: acknowledged by all AND older than 2 s
    assert stats(c)["retained"] == 1
    assert [x["after"]["id"] for x in export(c, "a")] == [5]
    # bad values are refused in SQLite's voice
    for bad, msg in [("outbox_retention='1w'", "outbox_retention=1w is not valid"), ("outbox_retention=-5", "not valid")]:
        with pytest.raises(apsw.SQLError, match=msg):
            c.execute(DDL.replace("CREATE VIRTUAL TABLE t", "CREATE VIRTUAL TABLE t2").replace("outbox=on)", f"outbox=on, {bad})"))
    with pytest.raises(apsw.SQLError, match="outbox_retention needs outbox=on"):
        c.execute(DDL.replace("CREATE VIRTUAL TABLE t", "CREATE VIRTUAL TABLE t3").replace("outbox=on)", "outbox_retention=3600)"))


def test_clock_is_shared_and_survives_a_lost_clock_file(connect, tmp):
    """csns come from <dir>/outbox.clock (a counter every process maps). Two connections
    interleave increasing csns; a deleted clock file is re-created above every acknowledged
    position, so exports after it never go backwards."""
    c1 = connect(tmp / "k.db")
    c1.execute(DDL)
    c2 = connect(tmp / "k.db")
    for i in range(20):
        (c1 if i % 2 else c2).execute("INSERT INTO t(id, k) VALUES (?, ?)", (i + 1, f"k{i % 7}"))
    ch = export(c1, "a")
    csns = [int(x["cursor"].split(".")[1]) for x in ch]
    assert csns == sorted(csns) and len(set(csns)) == 20
    ack(c1, ch[-1]["cursor"], "a")
    folder = [p for p in tmp.iterdir() if p.name.endswith(".shards")][0]
    assert (folder / "outbox.clock").stat().st_size == 4096
    c1.close(); c2.close()
    (folder / "outbox.clock").unlink()  # as if a power loss had dropped it
    c3 = connect(tmp / "k.db")
    c3.execute("INSERT INTO t(id, k) VALUES (100, 'z')")
    nxt = export(c3, "a")
    assert [x["after"]["id"] for x in nxt] == [100]
    assert int(nxt[0]["cursor"].split(".")[1]) > csns[-1]


def test_order_across_connections_follows_commits(connect, tmp):
    c1 = connect(tmp / "o.db")
    c1.execute(DDL)
    c2 = connect(tmp / "o.db")
    assert export(c1, "check") == []  # registered now: "mid"'s acks cannot purge what it has not seen
    rnd = random.Random(5)
    for step in range(300):
        conn = rnd.choice([c1, c2])
        rid = rnd.randint(1, 30)
        op = rnd.random()
        if op < 0.4:
            conn.execute("INSERT OR REPLACE INTO t(id, k, n) VALUES (?, ?, ?)", (rid, f"k{rnd.randint(0, 9)}", step))
        elif op < 0.8:
            conn.execute("UPDATE t SET n = ?, k = ? WHERE id = ?", (step, f"k{rnd.randint(0, 9)}", rid))
        else:
            conn.execute("DELETE FROM t WHERE id = ?", (rid,))
        if step % 50 == 0:
            ch = export(c2, "mid")
            if ch:
                ack(c2, ch[len(ch) // 2]["cursor"], "mid")
    replay(c1, "check")


def test_failed_shard_commit_is_recovered_with_its_outbox_rows(t):
    """A shard whose COMMIT fails after the redo record was written gets data AND outbox rows
    from the log (the redo record carries the outbox rows)."""
    keys = [f"r{i}" for i in range(30)]
    shard_of = {k: rows(t, "SELECT shardvt_route('t', ?)", (k,))[0][0] for k in keys}
    victim = shard_of["r0"]
    t.execute("BEGIN")
    for i, k in enumerate(keys):
        t.execute("INSERT INTO t(id, k, v) VALUES (?, ?, ?)", (i + 1, k, "x" * 2000))
    t.execute(f"SELECT shardvt_fault('path:shard-{victim:04d},write:1')")
    try:
        t.execute("COMMIT")
    except apsw.Error:
        pass
    t.execute("SELECT shardvt_fault('off')")
    assert rows(t, "SELECT count(*) FROM t") == [(30,)]
    ch = replay(t, "check")
    assert len(ch) == 30 and len({c["source"]["csn"] for c in ch}) == 1
    assert any(c["source"]["shard"] == victim for c in ch)



def test_recovered_commit_exports_what_an_unfailed_commit_exports(connect, tmp):
    """Every form an outbox row takes in the redo record (after image from the row's data image,
    packed from the inserted values, JSON read back for a DEFAULT, before/after of an update, a
    delete) comes back from recovery exactly: the same transaction on a twin table whose commit
    did not fail exports the same changes, field for field."""
    conn = connect(tmp / "o.db")
    for name in ("t", "twin"):
        conn.execute(DDL.replace("VIRTUAL TABLE t ", f"VIRTUAL TABLE {name} "))
        conn.execute(f"INSERT INTO {name}(id, k, v, n) VALUES (900, 'old', 'gone', 1), (901, 'old2', 'upd', 2)")
    keys = [f"r{i}" for i in range(24)]
    victim = rows(conn, "SELECT shardvt_route('t', 'r0')")[0][0]
    assert rows(conn, "SELECT shardvt_route('twin', 'r0')")[0][0] == victim
    for name in ("twin", "t"):
        conn.execute("BEGIN")
        for i, k in enumerate(keys):
            if i % 3 == 0:
                conn.execute(f"INSERT INTO {name}(id, k, n) VALUES (?, ?, ?)", (i + 1, k, i))  # DEFAULT v: read back
            else:
                conn.execute(f"INSERT INTO {name}(id, k, v, n) VALUES (?, ?, ?, ?)", (i + 1, k, "x" * 1500, 2.0))
        conn.execute(f"UPDATE {name} SET n = n + 100 WHERE id IN (2, 5)")  # inserted, then changed
        conn.execute(f"UPDATE {name} SET v = 'u2', k = 'r0' WHERE id = 901")  # a move to the victim
        conn.execute(f"DELETE FROM {name} WHERE id = 900")
        if name == "t":
            conn.execute(f"SELECT shardvt_fault('path:shard-{victim:04d},write:1')")
        # The victim's shard COMMIT fails; SQLite ignores an xCommit error, and the table
        # re-applies the durable redo record to that shard at once (outbox rows included).
        # (Breaking any after-image form in `outbox::apply_redo` makes this test fail.)
        conn.execute("COMMIT")
        conn.execute("SELECT shardvt_fault('off')")
    assert rows(conn, "SELECT * FROM t ORDER BY id") == rows(conn, "SELECT * FROM twin ORDER BY id")
    got = replay(conn, "a", "t")
    want = replay(conn, "a", "twin")

    def strip(ch):
        return [(c["op"], c["before"], c["after"], c["source"]["shard"], c["source"]["tn"], c["source"]["rowid"]) for c in ch]

    assert strip(got) == strip(want)
    assert any(c["source"]["shard"] == victim and c["op"] == "c" for c in got)
    assert {c["op"] for c in got} == {"c", "u", "d"}
    last = [c for c in got if c["source"]["csn"] == got[-1]["source"]["csn"]]
    assert len({c["source"]["txid"] for c in last}) == 1 and len(last[0]["source"]["txid"]) == 16


CHILD = textwrap.dedent(
    """
    import apsw, os, random, sys
    so, db, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    conn = apsw.Connection(db)
    conn.enable_load_extension(True)
    conn.load_extension(so)
    conn.setbusytimeout(5000)
    rnd = random.Random(seed)
    n = 0
    while True:
        n += 1
        conn.execute("BEGIN")
        for _ in range(rnd.randint(1, 6)):
            rid = rnd.randint(1, 60)
            r = rnd.random()
            if r < 0.5:
                conn.execute("INSERT OR REPLACE INTO t(id, k, n) VALUES (?, ?, ?)", (rid, "k%d" % rnd.randint(0, 20), n))
            elif r < 0.85:
                conn.execute("UPDATE t SET n = ?, k = ? WHERE id = ?", (n, "k%d" % rnd.randint(0, 20), rid))
            else:
                conn.execute("DELETE FROM t WHERE id = ?", (rid,))
        if rnd.random() < 0.15:
            conn.execute("ROLLBACK")
        else:
            conn.execute("COMMIT")
        os.write(1, b"%d\\n" % n)
        if n == 5 and seed == 0:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t(id, k, n) VALUES (1000, 'never', -1)")
            os.write(1, b"open\\n")
            import time; time.sleep(60)
    """
)


def test_sigkill_mid_transaction_and_resume(connect, tmp):
    db = tmp / "o.db"
    setup = connect(db)
    setup.execute(DDL)
    setup.close()
    delivered = {}  # (csn, tn) -> change, what a consumer that acks each batch has received
    state = {}
    for round_no in range(12):
        p = subprocess.Popen([sys.executable, "-c", CHILD, str(SO_PATH), str(db), str(round_no)], stdout=subprocess.PIPE)
        if round_no == 0:
            # killed while a transaction is open: it must export nothing
            for line in p.stdout:
                if line.strip() == b"open":
                    break
        else:
            # killed at a random point after some committed transactions
            for _ in range(random.Random(round_no).randint(3, 80)):
                if not p.stdout.readline():
                    break
        p.send_signal(signal.SIGKILL)
        p.wait()
        conn = connect(db)
        assert rows(conn, "SELECT count(*) FROM t WHERE id = 1000") == [(0,)]
        batch = export(conn, "resume", 7)  # a consumer that takes small batches, acks each
        while batch:
            for c in batch:
                key = (c["source"]["csn"], c["source"]["tn"])
                assert key not in delivered, "delivered twice after ack"
                delivered[key] = c
            apply(state, batch)
            ack(conn, batch[-1]["cursor"], "resume")
            batch = export(conn, "resume", 7)
        assert state == table_state(conn)
        assert all(c["after"] is None or c["after"]["k"] != "never" for c in delivered.values())
        conn.close()
    conn = connect(db)
    replay_state = {}
    # a fresh consumer only sees what was not purged; the resumed one saw everything once
    assert stats(conn)["consumers"][0]["lag"] == 0
    assert apply(replay_state, sorted(delivered.values(), key=lambda c: (c["source"]["csn"], c["source"]["tn"]))) == table_state(conn)
