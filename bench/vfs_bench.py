#!/usr/bin/env python3
"""CPU overhead of the `shardvt` VFS (issue 5 item 4: "Overhead <= 2% CPU").

    python3 bench/vfs_bench.py --ext ./libshardvt.so [--rounds 5]

The same workload runs on a plain WAL database opened through SQLite's default VFS and through
the `shardvt` pass-through VFS (registered by loading the extension; it counts every read,
write, sync and truncate per file class and checks its fault plan on each call), in fresh
processes, rounds interleaved: 20,000 autocommit single-row INSERTs (synchronous=NORMAL),
100,000 point lookups by rowid, 40 full scans (cold page cache of the connection: every page read
goes through the VFS). Reported: the process's CPU time (user + system) per workload, median
over the rounds, and the ratio shardvt / default. The checkpoint manager is not involved (plain
host connection, SQLite's own auto-checkpoint in both). Data in a temp folder, removed after.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def child(ext, path, vfs):
    import apsw

    boot = apsw.Connection(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(ext)  # registers the shardvt VFS in this process
    db = apsw.Connection(path, vfs=vfs) if vfs else apsw.Connection(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v INTEGER, body TEXT)")
    out = {}
    body = "x" * 100

    def measure(name, fn):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        out[name] = {"cpu": time.process_time() - c0, "wall": time.perf_counter() - w0}

    measure("insert", lambda: [db.execute("INSERT INTO t(k, v, body) VALUES (?, ?, ?)", (f"k{i}", i, body))
                               for i in range(20000)])
    measure("lookup", lambda: [db.execute("SELECT v FROM t WHERE id = ?", (1 + (i * 7919) % 20000,)).fetchall()
                               for i in range(100000)])

    def scans():
        for _ in range(40):
            db.execute("PRAGMA cache_size=10")  # small cache: pages come through the VFS again
            db.execute("SELECT sum(length(body) + v) FROM t").fetchall()
    measure("scan", scans)
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ext", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "libshardvt.so"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    ext = os.path.abspath(a.ext)
    if a.child:
        child(ext, a.child[0], a.child[1] if a.child[1] != "-" else None)
        return
    work = tempfile.mkdtemp(prefix="shardvt-vfsbench-")
    res = {"default": [], "shardvt": []}
    try:
        for r in range(a.rounds):
            order = ["default", "shardvt"] if r % 2 == 0 else ["shardvt", "default"]
            for which in order:
                path = os.path.join(work, f"{which}-{r}.db")
                p = subprocess.run([sys.executable, os.path.abspath(__file__), "--ext", ext, "--child", path,
                                    "shardvt" if which == "shardvt" else "-"], capture_output=True, text=True)
                if p.returncode != 0:
                    sys.exit(f"child failed: {p.stderr[-2000:]}")
                res[which].append(json.loads(p.stdout))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"## shardvt VFS CPU overhead ({a.rounds} rounds, interleaved; medians)\n")
    print("| workload | default VFS CPU (ms) | shardvt VFS CPU (ms) | ratio | target |")
    print("|---|---:|---:|---:|---:|")
    for w in ("insert", "lookup", "scan"):
        d = statistics.median(x[w]["cpu"] for x in res["default"]) * 1000
        s = statistics.median(x[w]["cpu"] for x in res["shardvt"]) * 1000
        print(f"| {w} | {d:.1f} | {s:.1f} | {s / d:.3f}× | ≤ 1.02× |")
    print("\nworkloads: 20,000 autocommit INSERTs; 100,000 rowid lookups; 40 full scans with a 10-page cache")


if __name__ == "__main__":
    main()
