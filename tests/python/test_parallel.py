"""Parallel scans (chosen for scans whose shards filter their own rows; SHARDVT_PARALLEL=1 forces
them, =0 forbids them): worker threads stream each shard's rows (a worker may serve several
shards, SHARDVT_SCAN_WORKERS); answers must equal the sequential merge and a native table,
including early stops and errors."""
import os
import subprocess
import sys

from conftest import REPO_ROOT

# A native table n and a sharded table s with the same rows (script prologue; DB, SHARDS, ROWS
# and SUFFIX are filled in per test).
SETUP = r"""
import apsw, sys
so = sys.argv[1]
c = apsw.Connection("DB"); c.enable_load_extension(True); c.load_extension(so)
c.execute("CREATE TABLE n(id INTEGER PRIMARY KEY, k TEXT, v INTEGER, body TEXT)")
c.execute("CREATE VIRTUAL TABLE s USING sharded(id INTEGER PRIMARY KEY, k TEXT, v INTEGER, body TEXT, shard_key=k, shards=SHARDS)")
c.execute("BEGIN")
c.executemany("INSERT INTO n VALUES (?,?,?,?)", [(i, f"u{i % 97}", i * 7 % 1000, f"b{i * 31 % 211}SUFFIX") for i in range(1, ROWS + 1)])
c.execute("COMMIT")
c.execute("INSERT INTO s SELECT * FROM n")
"""


def setup(db, shards, rows, suffix=""):
    return SETUP.replace("DB", db).replace("SHARDS", str(shards)).replace("ROWS", str(rows)).replace("SUFFIX", suffix)


SCRIPT = setup("p.db", 6, 20000) + r"""
plan = c.execute("SELECT shardvt_explain('SELECT * FROM s')").fetchall()[0][0]
assert "parallel (WORKERS)" in plan, plan
for q in ["SELECT * FROM {}", "SELECT id, v FROM {} WHERE body LIKE 'b1%'", "SELECT count(*), sum(v) FROM {}",
          "SELECT * FROM {} ORDER BY v DESC, id", "SELECT group_concat(id) FROM {} WHERE v < 20",
          "SELECT k, count(*) FROM {} GROUP BY k ORDER BY k"]:
    a = c.execute(q.format("n")).fetchall()
    b = c.execute(q.format("s")).fetchall()
    assert a == b, q
# an early stop leaves no worker behind that could block later statements
for r in c.execute("SELECT * FROM s"):
    break
c.execute("BEGIN; DELETE FROM s WHERE id % 2 = 0; COMMIT;")
assert c.execute("SELECT count(*) FROM s").fetchall() == [(10000,)]
# inside a write transaction the scan stays on the transaction's own connections
c.execute("BEGIN; INSERT INTO s(k, v, body) VALUES ('new', 1, 'x');")
assert "sequential" in c.execute("SELECT shardvt_explain('SELECT * FROM s')").fetchall()[0][0]
assert c.execute("SELECT count(*) FROM s").fetchall() == [(10001,)]
c.execute("ROLLBACK")
print("parallel ok")
"""


def test_parallel_scans_equal_native(so_path, tmp):
    # 6 shards on 6, 4 (two serve two shards each) and 1 worker thread(s)
    for workers, shown in [("6", "6 threads"), ("4", "4 threads"), ("1", "1 thread")]:
        env = dict(os.environ, SHARDVT_PARALLEL="1", SHARDVT_PARALLEL_MIN_BYTES="0", SHARDVT_SCAN_WORKERS=workers)
        script = SCRIPT.replace("p.db", f"p{workers}.db").replace("WORKERS", shown)
        out = subprocess.run([sys.executable, "-c", script, str(so_path)], cwd=tmp, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and "parallel ok" in out.stdout, workers + out.stdout + out.stderr


BROKEN = setup("EDB.db", 4, 4000) + r"""
import glob
c.close()
# one shard file loses its table: its worker fails to prepare the shard SQL
victim = sorted(glob.glob("EDB.s.shards/shard-*.db"))[2]
x = apsw.Connection(victim); x.execute("DROP TABLE data"); x.close()
c = apsw.Connection("EDB.db"); c.enable_load_extension(True); c.load_extension(so)
for q in ["SELECT * FROM s", "SELECT count(*) FROM s WHERE body LIKE '%1'"]:
    try:
        c.execute(q).fetchall()
        raise SystemExit("no error from " + q)
    except apsw.SQLError as e:
        assert "no such table" in str(e), e
# the workers are gone and nothing is left blocked: the native table still answers
assert c.execute("SELECT count(*) FROM n").fetchall() == [(4000,)]
print("error ok")
"""


def test_a_failing_shard_fails_the_parallel_scan_with_its_error(so_path, tmp):
    for workers in ["1", "2", "4"]:
        env = dict(os.environ, SHARDVT_PARALLEL="1", SHARDVT_PARALLEL_MIN_BYTES="0", SHARDVT_SCAN_WORKERS=workers)
        script = BROKEN.replace("EDB", f"e{workers}")
        out = subprocess.run([sys.executable, "-c", script, str(so_path)], cwd=tmp, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "error ok" in out.stdout, workers + out.stdout + out.stderr


AUTO = setup("a.db", 4, 8000, "x") + r"""
import os
MULTICORE = (os.cpu_count() or 1) >= 2
c.execute("SELECT shardvt_create_index('s', 's_v', 'v')")
c.execute("CREATE INDEX n_v ON n(v)")
def plan(q):
    return c.execute("SELECT shardvt_explain(?)", (q.format("s"),)).fetchall()[0][0]
cases = [
    # (query, parallel?) -- parallel only when each shard filters rows no index can find
    ("SELECT count(*) FROM {} WHERE body LIKE '%1x'", True),
    ("SELECT id, v FROM {} WHERE body GLOB '*7x' ORDER BY v, id", True),
    ("SELECT count(*) FROM {} WHERE v <> 5", True),
    ("SELECT count(*) FROM {}", MULTICORE),                       # a full scan: every row crosses
    ("SELECT * FROM {} WHERE (v + 1) % 3 = 0", MULTICORE),        # nothing the shards can apply
    ("SELECT sum(v) FROM {} WHERE v BETWEEN 10 AND 20", False),    # an index range
    ("SELECT count(*) FROM {} WHERE body LIKE 'b1%'", True),       # a prefix, but body has no index
    ("SELECT count(*) FROM {} WHERE k LIKE 'u1%'", False),         # a prefix of an indexed column
    ("SELECT * FROM {} WHERE k = 'u5' AND body LIKE '%1x'", False),  # one shard
    ("SELECT * FROM {} WHERE body LIKE '%1x' ORDER BY v LIMIT 3", False),  # LIMIT pushed down
]
for q, want in cases:
    p = plan(q)
    assert (("parallel" in p) == want), (q, p)
    assert c.execute(q.format("n")).fetchall() == c.execute(q.format("s")).fetchall(), q
# more shards than MAX_AUTO_SCAN_THREADS (16): not threaded unless forced
c.execute("CREATE VIRTUAL TABLE wide USING sharded(id INTEGER PRIMARY KEY, k TEXT, body TEXT, shard_key=k, shards=20)")
c.execute("INSERT INTO wide SELECT id, k, body FROM n")
wq = "SELECT count(*) FROM {} WHERE body LIKE '%1x'"
p = c.execute("SELECT shardvt_explain(?)", (wq.format("wide"),)).fetchall()[0][0]
assert "parallel" not in p, p
assert c.execute(wq.format("wide")).fetchall() == c.execute(wq.format("n")).fetchall()
print("auto ok")
"""


def test_parallel_is_chosen_for_scans_the_shards_filter(so_path, tmp):
    env = {k: v for k, v in os.environ.items() if k != "SHARDVT_PARALLEL"}
    env["SHARDVT_PARALLEL_MIN_BYTES"] = "0"
    out = subprocess.run([sys.executable, "-c", AUTO, str(so_path)], cwd=tmp, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "auto ok" in out.stdout, out.stdout + out.stderr
    env["SHARDVT_PARALLEL"] = "0"  # and never with SHARDVT_PARALLEL=0
    off = AUTO.replace('assert (("parallel" in p) == want), (q, p)', 'assert "parallel" not in p, (q, p)')
    off = off.replace('"a.db"', '"b.db"', 1)
    out = subprocess.run([sys.executable, "-c", off, str(so_path)], cwd=tmp, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "auto ok" in out.stdout, out.stdout + out.stderr
