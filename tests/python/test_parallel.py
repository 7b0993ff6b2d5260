"""Parallel scans (SHARDVT_PARALLEL=1): worker threads stream each shard's rows; answers must
equal the sequential merge and a native table, including early stops and errors."""
import os
import subprocess
import sys

from conftest import REPO_ROOT

SCRIPT = r"""
import apsw, sys
so = sys.argv[1]
c = apsw.Connection("p.db"); c.enable_load_extension(True); c.load_extension(so)
c.execute("CREATE TABLE n(id INTEGER PRIMARY KEY, k TEXT, v INTEGER, body TEXT)")
c.execute("CREATE VIRTUAL TABLE s USING sharded(id INTEGER PRIMARY KEY, k TEXT, v INTEGER, body TEXT, shard_key=k, shards=6)")
c.execute("BEGIN")
c.executemany("INSERT INTO n VALUES (?,?,?,?)", [(i, f"u{i % 97}", i * 7 % 1000, f"b{i * 31 % 211}") for i in range(1, 20001)])
c.execute("COMMIT")
c.execute("INSERT INTO s SELECT * FROM n")
plan = c.execute("SELECT shardvt_explain('SELECT * FROM s')").fetchall()[0][0]
assert "parallel (6 threads)" in plan, plan
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
    env = dict(os.environ, SHARDVT_PARALLEL="1", SHARDVT_PARALLEL_MIN_BYTES="0")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(so_path)], cwd=tmp, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "parallel ok" in out.stdout, out.stdout + out.stderr
