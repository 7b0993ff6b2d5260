"""Exact cross-shard aggregation: `sharded_agg` and `shardvt_aggregate(sql)` against native SQLite.

Differential: a sharded table and a native table hold the same rows (same rowids); many random
aggregate queries (NULLs, negative numbers, reals, text, blobs, mixed types, NOCASE, empty groups,
empty shards, empty results) must give the same rows, value types included, and the same errors.
Reals in the data are multiples of 0.25 so every sum is exact in both orders of addition.
Values that compare equal but differ in form ('p'/'P' under NOCASE, 2/2.0) check that a group's
value and min()/max() come from the first row holding them, as in a native scan.
group_concat is compared as is: a native full scan concatenates in rowid order, as sharded_agg does.
"""
import json
import random

import apsw
import pytest

from conftest import rows

SCHEMA = "id INTEGER PRIMARY KEY, k TEXT, g INTEGER, x INTEGER, y REAL, z, s TEXT COLLATE NOCASE"
COLS = "id, k, g, x, y, z, s"


def make_tables(db, strategy="hash", shards=4):
    opts = "shard_key=k, shards=%d" % shards if strategy == "hash" else "shard_key=k, strategy=prefix, prefix_len=1"
    db.execute(f"CREATE VIRTUAL TABLE t USING sharded({SCHEMA}, {opts})")
    db.execute(f"CREATE TABLE n({SCHEMA})")


def random_row(r):
    z = r.choice([None, r.randint(-50, 50), r.randint(-8, 8) / 4, "txt", "12", b"ab", r.randint(0, 9)])
    return (
        r.choice([None] + ["k%d" % i for i in range(10)] + ["a1", "b2"]),
        r.choice([None, 0, 1, 2, 3]),
        r.choice([None, r.randint(-1000, 1000), r.randint(-5, 5)]),
        r.choice([None, r.randint(-400, 400) / 4, float(r.randint(-3, 3))]),
        z,
        r.choice([None, "p", "P", "q", "R", "r", "s"]),
    )


def fill(db, r, count):
    db.execute("BEGIN")
    for i in range(1, count + 1):
        row = (i * 3,) + random_row(r)
        db.execute(f"INSERT INTO t({COLS}) VALUES (?,?,?,?,?,?,?)", row)
        db.execute(f"INSERT INTO n({COLS}) VALUES (?,?,?,?,?,?,?)", row)
    db.execute("COMMIT")


AGGS = [
    "count(*)", "count()", "count(x)", "count(z)", "count(DISTINCT g)", "count(DISTINCT s)", "count(DISTINCT z)",
    "sum(x)", "sum(y)", "sum(z)", "sum(DISTINCT x)", "total(x)", "total(z)", "total(DISTINCT y)",
    "avg(x)", "avg(y)", "avg(z)", "avg(DISTINCT y)", "min(x)", "max(x)", "min(z)", "max(z)", "min(s)", "max(s)",
    "min(k)", "max(y)", "group_concat(k)", "group_concat(s, '-')", "group_concat(DISTINCT s)",
    "group_concat(z, ';')", "group_concat(x, k)", "sum(x) / count(*)", "max(x) - min(x)", "coalesce(sum(x), 0) + 1",
    "total(y) * 2", "avg(x + y)", "sum(CASE WHEN x > 0 THEN 1 ELSE 0 END)", "abs(sum(x))", "count(*) + count(DISTINCT k)",
    "max(s COLLATE BINARY)", "min(upper(k))", "min(rowid)", "max(id)",
]
GROUPS = [[], [], ["g"], ["s"], ["k"], ["g", "s"], ["x % 3"], ["substr(k, 1, 1)"], ["typeof(z)"], ["y > 0"], ["z"],
          ["upper(s)"], ["s COLLATE BINARY"]]
WHERES = [None, None, "x > 0", "g IS NOT NULL", "k IN ('k1', 'k2', 'k3')", "y < 10 OR z IS NULL", "0",
          "id % 2 = 0", "s = 'P'", "x BETWEEN -10 AND 10"]
HAVINGS = [None, None, None, "count(*) > 2", "sum(x) IS NOT NULL", "min(x) < 0 OR max(y) > 5"]


def random_query(r, table):
    groups = r.choice(GROUPS)
    aggs = r.sample(AGGS, r.randint(1, 4))
    items = groups + aggs
    sql = "SELECT " + ", ".join(items) + f" FROM {table}"
    w = r.choice(WHERES)
    if w:
        sql += f" WHERE {w}"
    if groups:
        sql += " GROUP BY " + ", ".join(groups)
    h = r.choice(HAVINGS)
    if h:
        sql += f" HAVING {h}"
    ordered = False
    if groups and r.random() < 0.6:
        first = r.randint(len(groups) + 1, len(items))
        keys = ["%d %s" % (first, r.choice(["", "DESC"]))] + [str(i + 1) for i in range(len(groups))]
        sql += " ORDER BY " + ", ".join(keys)
        ordered = True
        if r.random() < 0.5:
            sql += r.choice([" LIMIT 3", " LIMIT 2 OFFSET 1", " LIMIT 1, 2"])
    return sql, ordered or not groups


def norm(v):
    if isinstance(v, bytes):
        return ("str", v.hex().upper())  # shardvt_aggregate writes blobs as hex strings
    return (type(v).__name__, v)


def native(db, sql):
    try:
        return [tuple(norm(v) for v in r) for r in db.execute(sql)], None
    except apsw.Error as e:
        return None, str(e)


def via_function(db, sql):
    try:
        out = json.loads(db.execute("SELECT shardvt_aggregate(?)", (sql,)).fetchall()[0][0])
    except apsw.Error as e:
        return None, str(e)
    return [tuple(norm(v) for v in o.values()) for o in out], None


def via_table(db, sql):
    try:
        db.execute("DROP TABLE IF EXISTS temp.agg")
        db.execute("CREATE VIRTUAL TABLE temp.agg USING sharded_agg('%s')" % sql.replace("'", "''"))
        return [tuple(norm(v) for v in r) for r in db.execute("SELECT * FROM temp.agg")], None
    except apsw.Error as e:
        return None, str(e)


def check(db, sql_t, ordered, table_too=False):
    sql_n = sql_t.replace(" FROM t", " FROM n")
    want, werr = native(db, sql_n)
    runs = [via_function] + ([via_table] if table_too else [])
    for run in runs:
        got, gerr = run(db, sql_t)
        if werr is not None:
            assert gerr is not None and werr.split(":")[-1].strip() in gerr, (sql_t, werr, gerr)
            continue
        assert gerr is None, (sql_t, gerr)
        if not ordered:
            want, got = sorted(want, key=repr), sorted(got, key=repr)
        assert got == want, (run.__name__, sql_t)


@pytest.mark.parametrize("strategy,seed,index", [("hash", 1, False), ("hash", 2, True), ("prefix", 3, False)])
def test_random_queries_match_native(db, strategy, seed, index):
    r = random.Random(seed)
    make_tables(db, strategy, shards=r.choice([3, 8]))
    if index:
        # shard scans in index order must not change which of equal values a group shows
        db.execute("SELECT shardvt_create_index('t', 't_s', 's')")
        db.execute("SELECT shardvt_create_index('t', 't_gz', 'g, z')")
    fill(db, r, 150)
    for i in range(150):
        sql, ordered = random_query(r, "t")
        check(db, sql, ordered, table_too=(i % 5 == 0))


def test_brief_example_and_table_use(db):
    make_tables(db)
    fill(db, random.Random(7), 80)
    q = "SELECT g, count(*) AS n, avg(x) AS avg_x FROM {} WHERE x > 5 GROUP BY g"
    db.execute("CREATE VIRTUAL TABLE temp.stats USING sharded_agg('%s')" % q.format("t"))
    names = [d[0] for d in db.execute("SELECT * FROM stats").getdescription()]
    assert names == ["g", "n", "avg_x"]
    assert sorted(rows(db, "SELECT * FROM stats"), key=repr) == sorted(rows(db, q.format("n")), key=repr)
    # further SQL over it: WHERE on its columns, joins
    assert rows(db, "SELECT g FROM stats WHERE n > 3 ORDER BY g") == rows(db, q.format("n") + " HAVING count(*) > 3 ORDER BY g")
    j = rows(db, "SELECT a.g, b.n FROM stats a JOIN stats b ON a.g IS b.g ORDER BY a.g")
    assert j == rows(db, "SELECT g, count(*) FROM n WHERE x > 5 GROUP BY g ORDER BY g")
    # every scan recomputes, and a transaction sees its own writes
    db.execute("BEGIN")
    db.execute("INSERT INTO t(k, g, x) VALUES ('new', 99, 50)")
    assert rows(db, "SELECT n, avg_x FROM stats WHERE g = 99") == [(1, 50.0)]
    # the read transactions it held on the shards this transaction had not written are over:
    # the transaction can write them now (20 keys: every shard)
    for i in range(20):
        db.execute("INSERT INTO t(k, g, x) VALUES (?, 98, 10)", (f"more{i}",))
    assert rows(db, "SELECT n FROM stats WHERE g = 98") == [(20,)]
    db.execute("ROLLBACK")
    assert rows(db, "SELECT n FROM stats WHERE g = 99") == []


def test_column_names_match_native(db):
    make_tables(db)
    fill(db, random.Random(5), 3)
    for sql in ["SELECT g, count( * ), sum(x) AS total_x, a.s, max(y)/2 FROM t a GROUP BY g, s",
                "SELECT count(*), count(*) FROM t"]:
        db.execute("DROP TABLE IF EXISTS temp.a")
        db.execute("CREATE VIRTUAL TABLE temp.a USING sharded_agg('%s')" % sql)
        got = [d[0] for d in db.execute("SELECT * FROM temp.a").getdescription()]
        want = [d[0] for d in db.execute(sql.replace("FROM t", "FROM n")).getdescription()]
        if len(set(want)) == len(want):
            assert got == want
        else:
            assert got == ["count(*)", "count(*):1"]  # unique like a view's columns
        keys = list(json.loads(db.execute("SELECT shardvt_aggregate(?)", (sql,)).fetchall()[0][0])[0].keys())
        assert keys == got


def test_empty_table_and_empty_shards(db, tmp):
    make_tables(db, shards=8)
    q = ("SELECT count(*), count(x), sum(x), total(x), avg(x), min(x), max(z), group_concat(k), "
         "count(DISTINCT k), sum(DISTINCT x), total(DISTINCT y), avg(DISTINCT y) FROM {}")
    empty = [(0, 0, None, 0.0, None, None, None, None, 0, None, 0.0, None)]
    assert rows(db, q.format("n")) == empty
    db.execute("CREATE VIRTUAL TABLE temp.e USING sharded_agg('%s')" % q.format("t"))
    assert json.loads(db.execute("SELECT shardvt_aggregate(?)", (q.format("t") + " WHERE 0",)).fetchall()[0][0]) == [
        dict(zip([d[0] for d in db.execute("SELECT * FROM temp.e").getdescription()], empty[0]))]
    assert rows(db, "SELECT * FROM temp.e") == empty
    # GROUP BY over nothing: no rows; HAVING without GROUP BY: zero or one row
    assert json.loads(db.execute("SELECT shardvt_aggregate('SELECT g, count(*) FROM t GROUP BY g')").fetchall()[0][0]) == []
    check(db, "SELECT count(*) FROM t HAVING count(*) > 0", True)
    # one row: seven of eight shards empty
    db.execute("INSERT INTO t(id, k, x) VALUES (1, 'only', 5)")
    db.execute("INSERT INTO n(id, k, x) VALUES (1, 'only', 5)")
    check(db, q.format("t"), True)
    check(db, "SELECT k, count(*), sum(x) FROM t GROUP BY k", True)
    # a prefix table that has no shard file yet
    db.execute(f"CREATE VIRTUAL TABLE p USING sharded({SCHEMA}, shard_key=k, strategy=prefix, prefix_len=1)")
    out = json.loads(db.execute("SELECT shardvt_aggregate(?)", (q.format("p"),)).fetchall()[0][0])
    assert list(out[0].values()) == list(empty[0])


BIG = 2 ** 62


@pytest.mark.parametrize("values,overflows", [
    ([BIG, BIG, 1], True),
    ([-BIG, -BIG, -1], False),          # exactly -2**63 + ... -1 < -2**63: see below
    ([-BIG, -BIG], False),              # -2**63 fits
    ([-BIG, -BIG, -1, -5], True),
    ([BIG, BIG - 1, 2 ** 63 - 1 - (2 * BIG - 1)], False),  # exactly 2**63-1
    ([BIG, BIG, -7, 8], True),
    ([BIG, 5, 2.5], False),             # a REAL makes the sum REAL
    ([2 ** 63 - 1, 0, 0], False),
])
def test_integer_overflow_matches_native(db, values, overflows):
    if values == [-BIG, -BIG, -1]:
        overflows = True  # -2**63 - 1 does not fit
    make_tables(db, shards=4)
    for i, v in enumerate(values):
        # every value in its own key so the values spread over shards
        for tbl in ("t", "n"):
            db.execute(f"INSERT INTO {tbl}(id, k, g, x) VALUES (?, ?, 1, ?)", (i + 1, "key%d" % (i * 7), v))
    for sql in ["SELECT sum(x) FROM t", "SELECT g, sum(x), total(x), avg(x), count(*) FROM t GROUP BY g",
                "SELECT total(x), avg(x) FROM t", "SELECT sum(x) / 2 FROM t"]:
        want, werr = native(db, sql.replace("FROM t", "FROM n"))
        assert (werr is not None) == (overflows and "sum" in sql), (sql, werr)
        check(db, sql, True, table_too=True)


def test_sum_type_rules(db):
    make_tables(db)
    data = [(1, "a", 1, 5, None, "7", None), (2, "b", 1, -3, 0.5, " 8 ", None), (3, "c", 2, None, None, "abc", None),
            (4, "d", 2, 2, None, 3, None), (5, "e", 3, None, None, b"12", None), (6, "f", 4, None, None, "3.0", None),
            (7, "g", 5, None, None, None, None)]
    for row in data:
        db.execute(f"INSERT INTO t({COLS}) VALUES (?,?,?,?,?,?,?)", row)
        db.execute(f"INSERT INTO n({COLS}) VALUES (?,?,?,?,?,?,?)", row)
    # text that looks like an integer sums as an integer; other text, blobs and reals make it REAL
    check(db, "SELECT g, sum(z), total(z), avg(z), sum(x), typeof(sum(z)) FROM t GROUP BY g ORDER BY g", True, table_too=True)
    check(db, "SELECT sum(z), total(z), avg(z), sum(y), avg(y) FROM t", True, table_too=True)


def test_group_concat_order_is_rowid_order(db):
    make_tables(db, shards=5)
    r = random.Random(11)
    ids = r.sample(range(1, 1000), 60)
    for i in ids:
        row = (i, "k%d" % r.randint(0, 30), r.randint(0, 2), i, None, None, r.choice(["p", "q"]))
        db.execute(f"INSERT INTO t({COLS}) VALUES (?,?,?,?,?,?,?)", row)
        db.execute(f"INSERT INTO n({COLS}) VALUES (?,?,?,?,?,?,?)", row)
    check(db, "SELECT group_concat(x), group_concat(DISTINCT s) FROM t", True)
    check(db, "SELECT g, group_concat(x, '+'), group_concat(k) FROM t GROUP BY g ORDER BY g", True, table_too=True)


REFUSED = [
    ("SELECT count(*) FROM t JOIN n ON t.id = n.id", "join"),
    ("SELECT count(*) FROM t WHERE x IN (SELECT x FROM n)", "subquery"),
    ("SELECT sum(x) OVER () FROM t", "window function"),
    ("SELECT DISTINCT count(*) FROM t GROUP BY g", "SELECT DISTINCT"),
    ("SELECT json_group_array(x) FROM t", "json_group_array()"),
    ("SELECT k, count(*) FROM t GROUP BY g", 'column "k"'),
    ("SELECT count(*) FILTER (WHERE x > 0) FROM t", "FILTER"),
    ("SELECT count(*) FROM t UNION ALL SELECT 1 FROM t", "compound SELECT"),
    ("SELECT sum(count(*)) FROM t", "misuse of aggregate"),  # SQLite itself says so first
    ("SELECT x FROM t", "no aggregate function"),
]


@pytest.mark.parametrize("sql,word", REFUSED)
def test_refusals_name_the_construct(db, sql, word):
    make_tables(db)
    with pytest.raises(apsw.Error) as e:
        db.execute("SELECT shardvt_aggregate(?)", (sql,)).fetchall()
    assert word in str(e.value)
    with pytest.raises(apsw.Error) as e:
        db.execute("CREATE VIRTUAL TABLE temp.r USING sharded_agg('%s')" % sql.replace("'", "''"))
    assert word in str(e.value)


def test_errors_are_sqlite_errors(db):
    make_tables(db)
    with pytest.raises(apsw.Error, match="no such column: nope"):
        db.execute("SELECT shardvt_aggregate('SELECT sum(nope) FROM t')").fetchall()
    with pytest.raises(apsw.Error, match="not a sharded table"):
        db.execute("SELECT shardvt_aggregate('SELECT count(*) FROM n')").fetchall()
    with pytest.raises(apsw.Error, match="one quoted string"):
        db.execute("CREATE VIRTUAL TABLE temp.q USING sharded_agg(SELECT 1)")


def test_aggregate_function_is_direct_only(db):
    make_tables(db)
    flags = dict(rows(db, "SELECT name, flags FROM pragma_function_list WHERE name = 'shardvt_aggregate'"))
    assert flags["shardvt_aggregate"] & 0x080000
    db.execute("CREATE TABLE trig(x)")
    db.execute("CREATE TRIGGER tr AFTER INSERT ON trig BEGIN SELECT shardvt_aggregate('SELECT count(*) FROM t'); END")
    with pytest.raises(apsw.Error, match="unsafe use of shardvt_aggregate"):
        db.execute("INSERT INTO trig VALUES (1)")
