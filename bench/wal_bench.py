#!/usr/bin/env python3
"""Commit latency of one writer on a sharded table: SQLite's stock checkpoints vs the manager.

Each configuration runs in a fresh child process (the checkpoint mode is process-wide, set with
SHARDVT_CHECKPOINT_MODE) on a fresh table `t` with `--shards` shard files (WAL,
synchronous=NORMAL): first `--warmup` commits, then `--commits` timed single-row autocommit
INSERTs with random shard keys (each commit writes one shard). Two loads:

- saturation: commits back to back (as fast as the writer can go);
- paced: commits at `--load` (default 0.5) times the stock configuration's saturation rate,
  measured in the same run, so each commit meets whatever the checkpoints are doing.

Per configuration it reports p50/p99/p99.9/max commit latency (µs, measured in Python around
`execute`), throughput, the peak `-wal` size of any shard (sampled every 25 commits), the total
`-wal` bytes 300 ms after the writer stopped, and the manager's checkpoint counts. The
table's ratios are managed / stock. Rounds alternate stock and managed (`--rounds`, default 2)
and the reported numbers pool every round.

    python3 bench/wal_bench.py --ext ./libshardvt.so [--shards 8] [--commits 40000] [--rounds 2]

Only `apsw` is needed. Data goes to a temp folder (TMPDIR honoured), removed at the end.
"""
import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time

CHILD = "--child"


def child(args):
    import apsw

    random.seed(args.seed)
    db = apsw.Connection(os.path.join(args.dir, "bench.db"))
    db.enable_load_extension(True)
    db.load_extension(os.path.abspath(args.ext))
    mode = db.execute("SELECT shardvt_checkpoint_mode()").fetchone()[0]
    db.execute(
        "CREATE VIRTUAL TABLE t USING sharded(id INTEGER PRIMARY KEY, k TEXT, v INTEGER, body TEXT, "
        f"shard_key=k, shards={args.shards})"
    )
    shard_dir = os.path.join(args.dir, "bench.t.shards")
    wals = [os.path.join(shard_dir, f"shard-{i:04d}.db-wal") for i in range(args.shards)]
    body = "x" * args.row_bytes
    keys = [f"user{random.randrange(10**9)}" for _ in range(args.warmup + args.commits)]
    ins = "INSERT INTO t(k, v, body) VALUES (?, ?, ?)"
    for i in range(args.warmup):
        db.execute(ins, (keys[i], i, body))
    io_before = writer_io_us(db)
    hook_before = hook_us(db)
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    lat = []
    peak = 0
    clock = time.perf_counter
    start = clock()
    next_at = start
    for i in range(args.commits):
        if interval:
            while clock() < next_at:
                pass
            next_at += interval
        t0 = clock()
        db.execute(ins, (keys[args.warmup + i], i, body))
        lat.append(clock() - t0)
        if i % 25 == 0:
            for w in wals:
                try:
                    peak = max(peak, os.path.getsize(w))
                except OSError:
                    pass
    elapsed = clock() - start
    time.sleep(0.3)
    idle_bytes = sum(os.path.getsize(w) for w in wals if os.path.exists(w))
    stats = json.loads(db.execute("SELECT shardvt_wal_stats('bench.t.shards')").fetchone()[0])
    ck = {k: sum(s["checkpoints"][k] for s in stats) for k in ("background", "tail", "inline", "truncate")}
    ck["rewinds"] = sum(s["rewinds"] for s in stats)
    io = json.loads(db.execute("SELECT shardvt_io_stats('bench.t.shards')").fetchone()[0])
    ck["all_checkpoints"] = sum(x["checkpoints"] for x in io if x["class"] == "db")
    # Time the committing thread spent checkpointing during the timed commits. Stock: every
    # checkpoint runs in the writer, and with synchronous=NORMAL shard files are fsynced only by
    # checkpoints and by the WAL-header write after a rewind, so the VFS's sync time (db + wal)
    # plus its copy time (SQLITE_FCNTL_CKPT_START..DONE) is writer time. Managed: the WAL hook
    # times its tail/inline checkpoint calls (this leaves out the post-rewind WAL-header fsync,
    # which both modes pay about equally often).
    ck["writer_us"] = (writer_io_us(db) - io_before) if mode == "stock" else (hook_us(db) - hook_before)
    json.dump({"mode": mode, "lat": lat, "elapsed": elapsed, "peak_wal": peak, "idle_wal": idle_bytes, "ckpt": ck}, sys.stdout)


def writer_io_us(db):
    io = json.loads(db.execute("SELECT shardvt_io_stats('bench.t.shards/shard-')").fetchone()[0])
    return sum(x["sync_us_total"] + (x["checkpoint_us_total"] if x["class"] == "db" else 0) for x in io)


def hook_us(db):
    stats = json.loads(db.execute("SELECT shardvt_wal_stats('bench.t.shards')").fetchone()[0])
    return sum(s["writer_checkpoint_us"] for s in stats)


def run_child(args, mode, rate, workdir):
    d = tempfile.mkdtemp(prefix=f"{mode}-", dir=workdir)
    env = dict(os.environ, SHARDVT_CHECKPOINT_MODE=mode)
    cmd = [sys.executable, __file__, CHILD, "--ext", args.ext, "--dir", d, "--shards", str(args.shards),
           "--commits", str(args.commits), "--warmup", str(args.warmup), "--rate", str(rate),
           "--row-bytes", str(args.row_bytes), "--seed", str(args.seed)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    shutil.rmtree(d, ignore_errors=True)
    return json.loads(out)


def pct(sorted_lat, p):
    return sorted_lat[min(len(sorted_lat) - 1, int(len(sorted_lat) * p))] * 1e6


def summarize(runs):
    lat = sorted(x for r in runs for x in r["lat"])
    n = len(lat)
    return {
        "p50": pct(lat, 0.50), "p99": pct(lat, 0.99), "p99.9": pct(lat, 0.999), "max": lat[-1] * 1e6,
        "tps": n / sum(r["elapsed"] for r in runs),
        "peak_wal_mb": max(r["peak_wal"] for r in runs) / 1e6,
        "idle_wal": max(r["idle_wal"] for r in runs),
        "ckpt": runs[-1]["ckpt"],
        "writer_ckpt_ms": sum(r["ckpt"]["writer_us"] for r in runs) / 1000 / len(runs),
    }


def machine():
    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import apsw
    return f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, Python {platform.python_version()}, apsw SQLite {apsw.sqlite_lib_version()}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ext", default="./libshardvt.so")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--commits", type=int, default=40000)
    ap.add_argument("--warmup", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--load", type=float, default=0.5, help="paced load as a fraction of stock saturation")
    ap.add_argument("--row-bytes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(CHILD, action="store_true")
    ap.add_argument("--dir")
    ap.add_argument("--rate", type=float, default=0.0)
    args = ap.parse_args()
    if args.child:
        return child(args)
    workdir = tempfile.mkdtemp(prefix="shardvt-walbench-")
    try:
        results = {}
        for load_name in ("saturation", "paced"):
            rate = 0.0
            if load_name == "paced":
                rate = results[("saturation", "stock")]["tps"] * args.load
            runs = {"stock": [], "managed": []}
            for r in range(args.rounds):
                order = ("stock", "managed") if r % 2 == 0 else ("managed", "stock")
                for mode in order:
                    print(f"{load_name} round {r + 1}: {mode}", file=sys.stderr)
                    runs[mode].append(run_child(args, mode, rate, workdir))
            for mode in runs:
                results[(load_name, mode)] = summarize(runs[mode])
            results[(load_name, "rate")] = rate
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"## WAL checkpoints: one writer, {args.shards} shards, stock vs managed\n")
    print(f"Machine: {machine()}")
    print(f"Command: python3 bench/wal_bench.py --ext ./libshardvt.so --shards {args.shards} --commits {args.commits} "
          f"--rounds {args.rounds} --load {args.load}")
    print(f"Each configuration: {args.rounds} rounds × {args.commits} single-row autocommit INSERTs "
          f"({args.row_bytes}-byte body, random key) after {args.warmup} warm-up commits, fresh process and table per round.\n")
    for load_name in ("saturation", "paced"):
        s, m = results[(load_name, "stock")], results[(load_name, "managed")]
        title = "back to back" if load_name == "saturation" else f"paced at {results[(load_name, 'rate')]:.0f} commits/s ({args.load:g} × stock saturation)"
        print(f"### {load_name}: {title}\n")
        print("| measure | stock | managed | managed / stock |")
        print("|---|---:|---:|---:|")
        for key, label in (("p50", "commit p50 (µs)"), ("p99", "commit p99 (µs)"), ("p99.9", "commit p99.9 (µs)"),
                           ("max", "commit max (µs)"), ("tps", "commits/s"), ("peak_wal_mb", "peak -wal of one shard (MB)")):
            ratio = m[key] / s[key] if s[key] else float("nan")
            fmt = "{:.1f}" if key == "peak_wal_mb" else "{:.0f}"
            print(f"| {label} | {fmt.format(s[key])} | {fmt.format(m[key])} | {ratio:.2f}× |")
        print(f"| writer time in checkpoints per round (ms) | {s['writer_ckpt_ms']:.1f} | {m['writer_ckpt_ms']:.1f} | "
              f"{m['writer_ckpt_ms'] / s['writer_ckpt_ms'] if s['writer_ckpt_ms'] else float('nan'):.2f}× |")
        print(f"| all -wal bytes 300 ms after the last commit | {s['idle_wal']} | {m['idle_wal']} | |")
        print(f"\nCheckpoints in the last round: stock {s['ckpt']['all_checkpoints']} (all by the committing thread); "
              f"managed {m['ckpt']['all_checkpoints']} = background {m['ckpt']['background']}, tail {m['ckpt']['tail']}, "
              f"inline {m['ckpt']['inline']}, truncate {m['ckpt']['truncate']} (+ checkpoint-on-close); rewinds {m['ckpt']['rewinds']}.\n")


if __name__ == "__main__":
    main()
