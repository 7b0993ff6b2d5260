"""Consistent cuts across shards (src/shard/cut.rs, issue 4 item 1): a statement that reads
several shards sees every multi-shard commit in all of them or in none.

A mover process keeps moving rows between shards (each `UPDATE ... SET k = ...` that changes a
row's shard is a two-shard commit) while a reader process scans the table. Without the cut, a
scan can take one shard's snapshot before a move and the other's after it, and see the row twice
or not at all (`SHARDVT_CUT=0` shows this: run this file's script by hand with it set). With it,
every scan must see each row exactly once, and so must `shardvt_aggregate` (several partial
queries per shard, all on one snapshot set taken as a consistent cut).
"""
import os
import subprocess
import sys

SCRIPT = r"""
import collections, json, os, random, sys, time, apsw
ext, db, role, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
c = apsw.Connection(db)
c.setbusytimeout(10000)
c.enable_load_extension(True)
c.load_extension(ext)
N = 200
if role == "setup":
    c.execute("CREATE VIRTUAL TABLE t USING sharded(id INTEGER PRIMARY KEY, k TEXT, v, shard_key=k, shards=4)")
    c.execute("BEGIN")
    for i in range(1, N + 1):
        c.execute("INSERT INTO t(id, k, v) VALUES (?, ?, ?)", (i, "a%d" % i, i))
    c.execute("COMMIT")
    print("ok")
elif role == "mover":
    route = lambda k: c.execute("SELECT shardvt_route('t', ?)", (k,)).fetchone()[0]
    # two keys per row on different shards
    alt = {}
    for i in range(1, N + 1):
        j = 0
        while route("b%d_%d" % (i, j)) == route("a%d" % i):
            j += 1
        alt[i] = ("a%d" % i, "b%d_%d" % (i, j))
    rng = random.Random(7)
    moves = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        i = rng.randrange(1, N + 1)
        cur = c.execute("SELECT k FROM t WHERE id = ?", (i,)).fetchone()[0]
        new = alt[i][1] if cur == alt[i][0] else alt[i][0]
        c.execute("UPDATE t SET k = ? WHERE id = ?", (new, i))
        moves += 1
    print("moves", moves)
else:
    scans = bad = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ids = collections.Counter(r[0] for r in c.execute("SELECT id FROM t"))
        n = c.execute("SELECT count(*) FROM t").fetchone()[0]
        # the aggregation module: several partial queries per shard, one snapshot set
        agg = json.loads(c.execute(
            "SELECT shardvt_aggregate('SELECT count(*) AS n, count(DISTINCT k) AS d, sum(v) AS s FROM t')").fetchone()[0])
        scans += 1
        if len(ids) != N or any(v != 1 for v in ids.values()) or n != N or agg != [{"n": N, "d": N, "s": N * (N + 1) // 2}]:
            bad += 1
    print("scans", scans, "bad", bad)
"""


def run(so_path, tmp, env, seconds=3.0, name="cut.db"):
    db = str(tmp / name)
    args = [sys.executable, "-c", SCRIPT, str(so_path), db]
    out = subprocess.run(args + ["setup", "0"], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr
    mover = subprocess.Popen(args + ["mover", str(seconds)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reader = subprocess.run(args + ["reader", str(seconds)], env=env, capture_output=True, text=True, timeout=120)
    m_out, m_err = mover.communicate(timeout=120)
    assert mover.returncode == 0 and reader.returncode == 0, m_err + reader.stderr
    moves = int(m_out.split()[1])
    _, scans, _, bad = reader.stdout.split()
    return moves, int(scans), int(bad)


def test_scans_concurrent_with_moves_see_each_row_once(so_path, tmp):
    moves, scans, bad = run(so_path, tmp, dict(os.environ))
    assert moves > 100 and scans > 50, (moves, scans)
    assert bad == 0, f"{bad} of {scans} scans saw a moved row twice or not at all ({moves} moves)"


def test_parallel_scans_take_the_cut_too(so_path, tmp):
    # the same with every scan on worker threads (one and two workers for four shards)
    for workers in ["1", "2"]:
        env = dict(os.environ, SHARDVT_PARALLEL="1", SHARDVT_PARALLEL_MIN_BYTES="0", SHARDVT_SCAN_WORKERS=workers)
        moves, scans, bad = run(so_path, tmp, env, seconds=2.0, name=f"cutp{workers}.db")
        assert moves > 100 and scans > 30, (moves, scans)
        assert bad == 0, f"{workers} worker(s): {bad} of {scans} parallel scans saw a moved row twice or not at all ({moves} moves)"
