#!/usr/bin/env python3
"""Outbox benchmark (issue 6): capture overhead and export speed.

    python3 bench/outbox_bench.py --ext ./libshardvt.so [--rows 100000] [--repeats 3]

Measures, on a hash table with 4 shards (WAL, synchronous=NORMAL, as always):
  1. capture overhead on inserts: the same rows inserted into a table without and with
     outbox=on, (a) in transactions of 1000 rows spread over the 4 shards (each commit writes a
     redo record), (b) in transactions of 1000 rows of one key (one shard), (c) one autocommit
     INSERT per row (--single rows of them); ratio with/without (target <= 1.3x), best of
     --repeats;
  2. export of --rows changes: one shardvt_outbox_export(table, consumer, rows) call, the
     JSON text included (target <= 1 s); JSON parsing in Python is reported separately;
  3. export while another process writes: the writer's commits per second and its slowest
     commit while exports run back to back, against the same writer alone
     (exports must not block writers).
Everything runs in a fresh temp folder; no path of this machine is written anywhere.
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import apsw

REPO = Path(__file__).resolve().parent.parent
COLS = "id INTEGER PRIMARY KEY, k TEXT NOT NULL, v INTEGER, body TEXT"


def connect(path, ext):
    c = apsw.Connection(str(path))
    c.enable_load_extension(True)
    c.load_extension(str(ext))
    c.setbusytimeout(10000)
    return c


def make(conn, name, outbox):
    conn.execute(f"CREATE VIRTUAL TABLE {name} USING sharded({COLS}, shard_key=k, shards=4, outbox={'on' if outbox else 'off'})")


def rows(n, start=0):
    return [(start + i + 1, f"user{(start + i) % 5000}", i * 7, f"payload-{i:012d}") for i in range(n)]


def insert_batched(conn, name, data, batch=1000):
    t0 = time.perf_counter()
    for i in range(0, len(data), batch):
        with conn:
            conn.executemany(f"INSERT INTO {name}(id, k, v, body) VALUES (?, ?, ?, ?)", data[i:i + batch])
    return time.perf_counter() - t0


def insert_single(conn, name, data):
    t0 = time.perf_counter()
    for r in data:
        conn.execute(f"INSERT INTO {name}(id, k, v, body) VALUES (?, ?, ?, ?)", r)
    return time.perf_counter() - t0


WRITER = """
import apsw, sys, time
ext, db, seconds, start = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
c = apsw.Connection(db); c.enable_load_extension(True); c.load_extension(ext); c.setbusytimeout(10000)
n, worst, t_end = 0, 0.0, time.perf_counter() + seconds
while time.perf_counter() < t_end:
    t0 = time.perf_counter()
    c.execute("INSERT INTO w(id, k, v, body) VALUES (?, ?, 1, 'x')", (start + n, "user%d" % (n % 97)))
    worst = max(worst, time.perf_counter() - t0)
    n += 1
print(n / seconds, worst * 1000)
"""


def writer_run(ext, db, seconds, start):
    p = subprocess.run([sys.executable, "-c", WRITER, str(ext), str(db), str(seconds), str(start)], capture_output=True, text=True, check=True)
    rate, worst_ms = map(float, p.stdout.split())
    return rate, worst_ms


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ext", default=str(REPO / "libshardvt.so"))
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--single", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    ext = Path(a.ext).resolve()
    work = Path(tempfile.mkdtemp(prefix="shardvt-outbox-bench-"))
    try:
        print(f"outbox bench: {a.rows} rows, 4 shards, SQLite {apsw.sqlite_lib_version()}, best of {a.repeats}")
        # 1. capture overhead
        data = rows(a.rows)
        single = rows(a.single)
        # the same rows, but every transaction of 1000 writes one key (one shard: no redo log)
        one_shard = [(i, f"user{(i - 1) // 1000}", v, body) for i, _, v, body in data]
        res = {}
        for r in range(a.repeats):
            for outbox in (False, True):
                conn = connect(work / f"ins{r}{int(outbox)}.db", ext)
                make(conn, "b", outbox)
                make(conn, "s", outbox)
                make(conn, "o", outbox)
                tb = insert_batched(conn, "b", data)
                to = insert_batched(conn, "o", one_shard)
                ts = insert_single(conn, "s", single)
                res.setdefault(("batched", outbox), []).append(tb)
                res.setdefault(("one_shard", outbox), []).append(to)
                res.setdefault(("single", outbox), []).append(ts)
                conn.close()
        labels = {
            "batched": "transactions of 1000 rows over 4 shards (redo-logged)",
            "one_shard": "transactions of 1000 rows of one key (one shard, no redo log)",
            "single": "autocommit, one row each",
        }
        for kind, n in (("batched", a.rows), ("one_shard", a.rows), ("single", a.single)):
            off, on = min(res[(kind, False)]), min(res[(kind, True)])
            label = labels[kind]
            print(f"insert {n} rows, {label}: without outbox {off:.3f} s ({n / off:,.0f}/s), "
                  f"with outbox {on:.3f} s ({n / on:,.0f}/s), ratio {on / off:.2f}x")

        # 2. export of N changes (the table from the last repeat holds them, no consumer yet)
        db = work / f"ins{a.repeats - 1}1.db"
        conn = connect(db, ext)
        times, parse = [], []
        for r in range(a.repeats):
            t0 = time.perf_counter()
            (text,), = conn.execute("SELECT shardvt_outbox_export('b', ?, ?)", (f"bench{r}", a.rows))
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            n = len(json.loads(text))
            parse.append(time.perf_counter() - t0)
        assert n == a.rows, n
        print(f"export {a.rows} changes in one call: {min(times):.3f} s ({a.rows / min(times):,.0f} changes/s, "
              f"{len(text) / 1e6:.1f} MB of JSON); json.loads in Python {min(parse):.3f} s")
        last = json.loads(text)[-1]["cursor"]
        t0 = time.perf_counter()
        (cur,), = conn.execute("SELECT shardvt_outbox_ack('b', 'bench0', ?)", (last,))
        print(f"ack of {a.rows} changes (other consumers still hold them: no purge): {time.perf_counter() - t0:.3f} s")

        # 3. exports do not block a concurrent writer
        make(conn, "w", True)
        alone = writer_run(ext, db, 2.0, 10_000_000)
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(ext), str(db), "3.0", str(20_000_000)], stdout=subprocess.PIPE, text=True)
        exports, t_end = 0, time.perf_counter() + 2.5
        while time.perf_counter() < t_end:
            conn.execute("SELECT shardvt_outbox_export('b', 'busy', ?)", (a.rows,)).fetchall()
            exports += 1
        out, _ = p.communicate()
        rate, worst = map(float, out.split())
        print(f"writer alone: {alone[0]:,.0f} commits/s, slowest {alone[1]:.1f} ms; "
              f"with {exports} exports of {a.rows} changes running meanwhile: {rate:,.0f} commits/s, slowest {worst:.1f} ms")
        conn.close()
    finally:
        if a.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
