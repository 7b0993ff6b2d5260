#!/usr/bin/env python3
"""Commit latency of one writer: SQLite's stock checkpoints vs libshardvt's checkpoint manager.

What `make bench-wal` runs (issue 5). Every measurement runs in a fresh child process on a fresh
database (the checkpoint mode is process-wide, set with SHARDVT_CHECKPOINT_MODE=stock|managed),
and each configuration runs `--rounds` times, alternating which mode goes first; the reported
numbers pool every round. Ratios are managed / stock.

Configurations (all WAL, synchronous=NORMAL on the shard files, single-row autocommit INSERTs of
a `--row-bytes` body with a random shard key, after `--warmup` untimed commits):

- "8 shards": `CREATE VIRTUAL TABLE t USING sharded(..., shards=8)`, each commit writes one shard.
- "one file": the same table with `shards=1`.
- "plain host file" (only if the loaded library has `shardvt_manage_wal`): a native table
  `n(id INTEGER PRIMARY KEY, k TEXT, v INTEGER, body TEXT)` in a WAL database of the host
  connection (synchronous=NORMAL); stock = SQLite's auto-checkpoint, managed = after
  `shardvt_manage_wal`. The database is ATTACHed as `h` through the `shardvt` VFS (so its syncs
  are counted and slowed like the shards'), not opened as `main`: loading the library into a
  connection whose main database uses that VFS crashes (the VFS has no xDlOpen).

Loads, per configuration:

- saturation: `--commits` commits back to back;
- paced: `--commits` commits at `--load` (default 0.5) × that configuration's stock saturation
  rate measured earlier in the same run (busy-wait pacing, so each commit meets whatever the
  checkpoints are doing);
- paced + reader: as paced, while a second process (`--child reader`, its own connection; for a
  sharded table a `:memory:` host with `attach=on`) repeatedly runs `BEGIN`, a `SELECT *` over
  the table stepped to its first row (which keeps every shard's read transaction open: the
  merge has stepped each shard's statement), holds it for a random 200–500 ms, closes the
  cursor, `COMMIT`s and pauses 20 ms. The writer starts only after the reader's first read
  transaction is open; the report gives the number of read transactions and the time they held
  inside the writer's timed window.

Per run: commit latency (µs, measured in Python around `execute`; p50/p99/p99.9/max), throughput,
the peak `-wal` size of any one file (sampled every 25 commits), the total `-wal` bytes 200 ms
after the last commit and when it first reaches 0 (polled every 5 ms for 1 s), the time the
committing thread spent checkpointing (see `writer_checkpoint_us`), the manager's checkpoint
counts, and the number and mean latency of the syncs of the table's files (which shows that
`--slow-device` applies to both modes).

Durable multi-shard commits: `--durable-commits` transactions of 8 INSERTs whose keys route
(`shardvt_route`) to 8 different shards of an 8-shard table, each followed by an idle gap as
long as the transaction took (≈ 50 % load). libshardvt always makes such a commit durable (the
participants' WALs are fsynced in parallel, then a redo record is committed to `txlog.db` with
synchronous=FULL; the shards themselves commit at NORMAL). The target's comparison, "the same
with every shard at synchronous=FULL", is the same table with `shardvt_wal_config('durable_commit',
2)` (the shard connections then run synchronous=FULL: each shard's commit fsyncs its WAL, one
after the other). For reference the bench also runs the same transactions on 8 plain WAL files
ATTACHed to one connection, each at synchronous=FULL (not atomic across files, no redo log),
through the same `shardvt` VFS, reported separately, never as the target's number.

`--slow-device [D]`: every child calls `SELECT shardvt_fault('sync_delay_us:D')` (default D =
2000) before opening any file: every sync of a file opened through the `shardvt` VFS (all shard,
catalog and log connections, the manager's own connections, the plain host file and the proxy's
files) first sleeps D µs, a repeatable slow-device model. Default: the real device.

    python3 bench/wal_bench.py --ext ./libshardvt.so [--slow-device [2000]] [--commits 40000]
        [--rounds 3] [--durable-commits 1500 (400 with --slow-device)] [--load 0.5]

The report (markdown) goes to stdout, progress to stderr; it ends with the issue's target table
(measure | target | stock | managed | ratio | met?). About 4 minutes on 2 cores by default, about
9 with --slow-device. Only `apsw` is needed. Data goes to a temp folder (TMPDIR honoured),
removed at the end. The library is copied there once, so a rebuild during the run cannot mix two
builds; `os.sync()` runs before every child, so none inherits another's dirty pages. A child that
fails is retried twice.
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
COLUMNS = "id INTEGER PRIMARY KEY, k TEXT, v INTEGER, body TEXT"
READER_HOLD_S = (0.2, 0.5)
READER_PAUSE_S = 0.02
IDLE_POLL_S, IDLE_WATCH_S, IDLE_AT_S = 0.005, 1.0, 0.2


# ---------------------------------------------------------------------------------------------
# children


def load_ext(db, args):
    db.enable_load_extension(True)
    db.load_extension(os.path.abspath(args.ext))
    if args.slow_device:
        db.execute("SELECT shardvt_fault(?)", (f"sync_delay_us:{args.slow_device}",))


def open_writer_db(args):
    """The writer's connection, its table's files (path filter, -wal paths) and INSERT."""
    import apsw

    host = os.path.join(args.dir, "bench.db")
    if args.kind == "plain":
        # The native table lives in the host connection's database `h`, a file opened through
        # the shardvt VFS (so its syncs are counted and slowed like the shards'). It is ATTACHed
        # rather than opened as `main` because a connection whose main database uses the shardvt
        # VFS cannot load the library (that VFS has no xDlOpen; loading crashes).
        flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI
        db = apsw.Connection(os.path.join(args.dir, "main.db"), flags=flags)
        load_ext(db, args)
        db.execute(f"ATTACH 'file:{os.path.abspath(host)}?vfs=shardvt' AS h")
        db.execute("PRAGMA h.journal_mode=WAL")
        db.execute("PRAGMA h.synchronous=NORMAL")
        db.execute(f"CREATE TABLE h.n({COLUMNS})")
        db.execute("CREATE INDEX h.n_k ON n(k)")  # like a shard's data_shard_key index
        if db.execute("SELECT shardvt_checkpoint_mode()").fetchone()[0] == "managed":
            db.execute("SELECT shardvt_manage_wal('h')")
        return db, "bench.db", [host + "-wal"], "INSERT INTO h.n(k, v, body) VALUES (?, ?, ?)"
    db = apsw.Connection(host)
    load_ext(db, args)
    db.execute(f"CREATE VIRTUAL TABLE t USING sharded({COLUMNS}, shard_key=k, shards={args.shards})")
    shard_dir = os.path.join(args.dir, "bench.t.shards")
    wals = [os.path.join(shard_dir, f"shard-{i:04d}.db-wal") for i in range(args.shards)]
    return db, "bench.t.shards/shard-", wals, "INSERT INTO t(k, v, body) VALUES (?, ?, ?)"


def io_totals(db, flt):
    """(syncs, sync µs, checkpoint copy µs) of the files whose path contains flt."""
    io = json.loads(db.execute("SELECT shardvt_io_stats(?)", (flt,)).fetchone()[0])
    return (sum(x["syncs"] for x in io), sum(x["sync_us_total"] for x in io),
            sum(x["checkpoint_us_total"] for x in io if x["class"] == "db"))


def hook_us(db, flt):
    return sum(s["writer_checkpoint_us"] for s in json.loads(db.execute("SELECT shardvt_wal_stats(?)", (flt,)).fetchone()[0]))


def start_reader(args):
    stop = os.path.join(args.dir, "reader.stop")
    cmd = [sys.executable, os.path.abspath(__file__), CHILD, "reader", "--ext", args.ext, "--dir", args.dir,
           "--kind", args.kind, "--shards", str(args.shards), "--seed", str(args.seed),
           "--slow-device", str(args.slow_device)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "ready":
        p.kill()
        raise RuntimeError("reader did not start")
    return p, stop


def writer_child(args):
    random.seed(args.seed)
    db, flt, wals, ins = open_writer_db(args)
    mode = db.execute("SELECT shardvt_checkpoint_mode()").fetchone()[0]
    body = "x" * args.row_bytes
    keys = [f"user{random.randrange(10**9)}" for _ in range(args.warmup + args.commits)]
    for i in range(args.warmup):
        db.execute(ins, (keys[i], i, body))
    reader = start_reader(args) if args.reader else None
    io_before = io_totals(db, flt)
    hook_before = hook_us(db, flt)
    interval = 1.0 / args.rate if args.rate > 0 else 0.0
    lat = []
    peak = 0
    clock = time.perf_counter
    window_start = time.monotonic()
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
    window_end = time.monotonic()
    io_after = io_totals(db, flt)
    writer_hook = hook_us(db, flt) - hook_before
    pinned = None
    if mode == "managed":
        stats = json.loads(db.execute("SELECT shardvt_wal_stats(?)", (flt,)).fetchone()[0])
        pinned = sum(s.get("unbackfillable_frames", 0) for s in stats)
    reader_out = None
    if reader:
        proc, stop = reader
        open(stop, "w").close()
        reader_out = json.loads(proc.communicate()[0])
        reader_out["window"] = [window_start, window_end]
    # Idle: -wal bytes over time from the end of the last commit (with a reader: from its exit).
    idle0 = clock() if reader else start + elapsed
    idle_at = None
    idle_zero_ms = None
    while clock() - idle0 < IDLE_WATCH_S:
        t = clock() - idle0
        total = sum(os.path.getsize(w) for w in wals if os.path.exists(w))
        if idle_at is None and t >= IDLE_AT_S:
            idle_at = total
        if total == 0 and idle_zero_ms is None:
            idle_zero_ms = t * 1000
        if idle_at is not None and idle_zero_ms is not None:
            break
        t = clock() - idle0
        # every 5 ms, and once on the 200 ms mark itself
        time.sleep(min(IDLE_POLL_S, IDLE_AT_S - t) if idle_at is None and t < IDLE_AT_S else IDLE_POLL_S)
    stats = json.loads(db.execute("SELECT shardvt_wal_stats(?)", (flt,)).fetchone()[0])
    ck = {k: sum(s["checkpoints"][k] for s in stats) for k in ("background", "tail", "inline", "truncate")}
    ck["rewinds"] = sum(s["rewinds"] for s in stats)
    ck["pin_warnings"] = sum(s.get("pin_warnings", 0) for s in stats)
    io = json.loads(db.execute("SELECT shardvt_io_stats(?)", (flt,)).fetchone()[0])
    ck["all_checkpoints"] = sum(x["checkpoints"] for x in io if x["class"] == "db")
    # Time the committing thread spent checkpointing during the timed commits. Stock: every
    # checkpoint runs in the writer, and with synchronous=NORMAL the files are fsynced only by
    # checkpoints and by the WAL-header write after a rewind, so the VFS's sync time (db + wal)
    # plus its copy time (SQLITE_FCNTL_CKPT_START..DONE) is writer time. Managed: the WAL hook
    # times its tail/inline checkpoint calls (this leaves out the post-rewind WAL-header fsync,
    # which both modes pay about equally often).
    if mode == "stock":
        writer_us = (io_after[1] - io_before[1]) + (io_after[2] - io_before[2])
    else:
        writer_us = writer_hook
    ck["writer_us"] = writer_us
    json.dump({"mode": mode, "lat": lat, "elapsed": elapsed, "peak_wal": peak, "idle_at": idle_at,
               "idle_zero_ms": idle_zero_ms, "ckpt": ck, "syncs": io_after[0] - io_before[0],
               "sync_us": io_after[1] - io_before[1], "pinned_frames": pinned, "reader": reader_out}, sys.stdout)


def reader_child(args):
    """Holds read transactions on the writer's table until the stop file appears."""
    import apsw

    rnd = random.Random(args.seed + 1)
    if args.kind == "plain":
        db = apsw.Connection(os.path.join(args.dir, "bench.db"))
        query = "SELECT * FROM n"
    else:
        db = apsw.Connection(":memory:")
        load_ext(db, args)
        shard_dir = os.path.join(os.path.abspath(args.dir), "bench.t.shards").replace("'", "''")
        db.execute(f"CREATE VIRTUAL TABLE temp.t USING sharded({COLUMNS}, shard_key=k, shards={args.shards}, "
                   f"dir='{shard_dir}', attach=on)")
        query = "SELECT * FROM t"
    stop = os.path.join(args.dir, "reader.stop")
    holds = []
    rows = 0
    while not os.path.exists(stop):
        db.execute("BEGIN")
        cur = db.cursor()
        if next(cur.execute(query), None) is not None:
            rows += 1
        t0 = time.monotonic()
        if not holds:
            print("ready", flush=True)
        time.sleep(rnd.uniform(*READER_HOLD_S))
        cur.close()
        db.execute("COMMIT")
        holds.append((t0, time.monotonic()))
        time.sleep(READER_PAUSE_S)
    json.dump({"holds": holds, "rows": rows}, sys.stdout)


def durable_child(args):
    """8-row transactions over 8 shards (kind=ext) or 8 ATTACHed files at synchronous=FULL."""
    import apsw

    random.seed(args.seed)
    n = 8
    total = args.warmup + args.commits
    body = "x" * args.row_bytes
    if args.kind == "ext":
        db = apsw.Connection(os.path.join(args.dir, "bench.db"))
        load_ext(db, args)
        db.execute("SELECT shardvt_wal_config('durable_commit', ?)", (args.durable_mode,))
        db.execute(f"CREATE VIRTUAL TABLE t USING sharded({COLUMNS}, shard_key=k, shards={n})")
        by_shard = [[] for _ in range(n)]
        while min(len(b) for b in by_shard) < total:
            k = f"user{random.randrange(10**12)}"
            s = db.execute("SELECT shardvt_route('t', ?)", (k,)).fetchone()[0]
            if len(by_shard[s]) < total:
                by_shard[s].append(k)
        stmts = ["INSERT INTO t(k, v, body) VALUES (?, ?, ?)"] * n
        flt = "bench.t.shards/"
        stats_db = db
    else:
        boot = apsw.Connection(":memory:")
        load_ext(boot, args)  # registers the shardvt VFS (and sets the fault plan)
        flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI
        db = apsw.Connection(os.path.join(args.dir, "main.db"), flags=flags, vfs="shardvt")
        for i in range(n):
            path = os.path.join(os.path.abspath(args.dir), f"file-{i:04d}.db")
            db.execute(f"ATTACH 'file:{path}?vfs=shardvt' AS s{i}")
            db.execute(f"PRAGMA s{i}.journal_mode=WAL")
            db.execute(f"PRAGMA s{i}.synchronous=FULL")
            db.execute(f"CREATE TABLE s{i}.data({COLUMNS})")
            db.execute(f"CREATE INDEX s{i}.data_k ON data(k)")
        by_shard = [[f"user{random.randrange(10**12)}" for _ in range(total)] for _ in range(n)]
        stmts = [f"INSERT INTO s{i}.data(k, v, body) VALUES (?, ?, ?)" for i in range(n)]
        flt = "file-"
        stats_db = boot  # the library's functions live there
    mode = db.execute("SELECT shardvt_checkpoint_mode()").fetchone()[0] if args.kind == "ext" else "stock"
    clock = time.perf_counter
    lat = []
    io_before = None
    for j in range(total):
        if j == args.warmup:
            io_before = io_totals(stats_db, flt)
        t0 = clock()
        db.execute("BEGIN")
        for i in range(n):
            db.execute(stmts[i], (by_shard[i][j], j, body))
        db.execute("COMMIT")
        dt = clock() - t0
        if j >= args.warmup:
            lat.append(dt)
        time.sleep(dt)  # idle as long as the transaction took: about 50 % load
    io_after = io_totals(stats_db, flt)
    json.dump({"mode": mode, "lat": lat, "elapsed": sum(lat), "syncs": io_after[0] - io_before[0],
               "sync_us": io_after[1] - io_before[1]}, sys.stdout)


def probe_child(args):
    import apsw

    db = apsw.Connection(":memory:")
    load_ext(db, args)
    names = [r[0] for r in db.execute("SELECT DISTINCT name FROM pragma_function_list WHERE name LIKE 'shardvt%'")]
    json.dump({"functions": sorted(names), "version": db.execute("SELECT shardvt_version()").fetchone()[0],
               "debug": json.loads(db.execute("SELECT shardvt_debug()").fetchone()[0])}, sys.stdout)


# ---------------------------------------------------------------------------------------------
# parent


def run_child(args, role, mode, workdir, **opts):
    """Runs one child process; retried twice (the library may be being replaced)."""
    for attempt in range(3):
        d = tempfile.mkdtemp(prefix=f"{role}-{mode}-", dir=workdir)
        env = dict(os.environ, SHARDVT_CHECKPOINT_MODE=mode)
        cmd = [sys.executable, os.path.abspath(__file__), CHILD, role, "--ext", args.ext, "--dir", d,
               "--row-bytes", str(args.row_bytes), "--seed", str(args.seed), "--slow-device", str(args.slow_device)]
        for k, v in opts.items():
            if v is True:
                cmd.append("--" + k.replace("_", "-"))
            elif v is not False and v is not None:
                cmd += ["--" + k.replace("_", "-"), str(v)]
        os.sync()  # start every child with no dirty pages left by the previous one (WALs up to 370 MB)
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        shutil.rmtree(d, ignore_errors=True)
        if p.returncode == 0:
            return json.loads(p.stdout)
        print(f"child {role}/{mode} failed (attempt {attempt + 1}): {p.stderr.strip()[-2000:]}", file=sys.stderr)
        time.sleep(2)
    raise RuntimeError(f"child {role}/{mode} failed 3 times")


def pct(sorted_lat, p):
    return sorted_lat[min(len(sorted_lat) - 1, int(len(sorted_lat) * p))] * 1e6


def summarize(runs):
    lat = sorted(x for r in runs for x in r["lat"])
    n = len(lat)
    s = {
        "n": n, "p50": pct(lat, 0.50), "p99": pct(lat, 0.99), "p99.9": pct(lat, 0.999), "max": lat[-1] * 1e6,
        "tps": n / sum(r["elapsed"] for r in runs),
        "syncs": sum(r["syncs"] for r in runs),
        "sync_mean_us": sum(r["sync_us"] for r in runs) / max(1, sum(r["syncs"] for r in runs)),
    }
    if "peak_wal" not in runs[0]:
        return s
    zeros = [r["idle_zero_ms"] for r in runs]
    s.update({
        "peak_wal_mb": max(r["peak_wal"] for r in runs) / 1e6,
        "idle_at": max(r["idle_at"] for r in runs),
        "idle_zero_ms": None if any(z is None for z in zeros) else max(zeros),
        "ckpt": runs[-1]["ckpt"],
        "writer_ckpt_ms": sum(r["ckpt"]["writer_us"] for r in runs) / 1000 / len(runs),
        "pinned_frames": runs[-1]["pinned_frames"],
    })
    if runs[0]["reader"]:
        held = inside = window = 0.0
        count = 0
        for r in runs:
            w0, w1 = r["reader"]["window"]
            window += w1 - w0
            for a, b in r["reader"]["holds"]:
                held += b - a
                ov = min(b, w1) - max(a, w0)
                if ov > 0:
                    inside += ov
                    count += 1
        s["reader"] = {"holds": count, "held_s": inside, "window_s": window, "all_holds": sum(len(r["reader"]["holds"]) for r in runs)}
    return s


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
    return (f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, Python {platform.python_version()}, "
            f"apsw {apsw.apsw_version()} with SQLite {apsw.sqlite_lib_version()}")


def loadavg():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def ratio(m, s):
    return m / s if s else float("nan")


def fmt_ratio(r):
    return f"{r:.2f}×"


def fmt_mb(b):
    return f"{b:.1f}"


def detail_table(title, s, m, note=""):
    print(f"### {title}\n")
    print("| measure | stock | managed | managed / stock |")
    print("|---|---:|---:|---:|")
    for key, label, f in (("p50", "commit p50 (µs)", "{:.0f}"), ("p99", "commit p99 (µs)", "{:.0f}"),
                          ("p99.9", "commit p99.9 (µs)", "{:.0f}"), ("max", "commit max (µs)", "{:.0f}"),
                          ("tps", "commits/s", "{:.0f}"), ("peak_wal_mb", "peak -wal of one file (MB)", "{:.1f}"),
                          ("writer_ckpt_ms", "writer time in checkpoints per round (ms)", "{:.1f}")):
        print(f"| {label} | {f.format(s[key])} | {f.format(m[key])} | {fmt_ratio(ratio(m[key], s[key]))} |")
    print(f"| all -wal bytes {IDLE_AT_S * 1000:.0f} ms after the last commit (worst round) | {s['idle_at']} | {m['idle_at']} | |")
    z = lambda v: "not within 1 s" if v is None else f"{v:.0f} ms"
    print(f"| -wal bytes reach 0 after (worst round) | {z(s['idle_zero_ms'])} | {z(m['idle_zero_ms'])} | |")
    print(f"| syncs of the table's files during the timed commits; mean sync (µs) | {s['syncs']}; {s['sync_mean_us']:.0f} | "
          f"{m['syncs']}; {m['sync_mean_us']:.0f} | |")
    ck_s, ck_m = s["ckpt"], m["ckpt"]
    print(f"\nCheckpoints in the last round: stock {ck_s['all_checkpoints']} (all by the committing thread); "
          f"managed {ck_m['all_checkpoints']} = background {ck_m['background']}, tail {ck_m['tail']}, "
          f"inline {ck_m['inline']}, truncate {ck_m['truncate']} (+ checkpoint-on-close); rewinds {ck_m['rewinds']}.")
    for name, x in (("stock", s), ("managed", m)):
        if "reader" in x:
            r = x["reader"]
            print(f"Reader ({name}): {r['holds']} read transactions overlapped the timed commits, holding "
                  f"{r['held_s']:.1f} s of the writer's {r['window_s']:.1f} s ({100 * r['held_s'] / r['window_s']:.0f} %)"
                  + (f"; frames a reader kept from being copied at the end of the last round: {x['pinned_frames']}, "
                     f"pin warnings {x['ckpt']['pin_warnings']}" if name == "managed" else "") + ".")
    if note:
        print(note)
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ext", default="./libshardvt.so")
    ap.add_argument("--commits", type=int, default=40000, help="timed commits per run")
    ap.add_argument("--warmup", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--load", type=float, default=0.5, help="paced load as a fraction of stock saturation")
    ap.add_argument("--durable-commits", type=int, help="timed 8-shard transactions per run (default 1500, "
                    "400 with --slow-device)")
    ap.add_argument("--row-bytes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--slow-device", type=int, nargs="?", const=2000, default=0, metavar="D",
                    help="every sync sleeps D µs first (shardvt_fault sync_delay_us; default D 2000)")
    ap.add_argument(CHILD, choices=("writer", "reader", "durable", "probe"))
    ap.add_argument("--dir")
    ap.add_argument("--kind", default="sharded")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--reader", action="store_true")
    ap.add_argument("--durable-mode", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return {"writer": writer_child, "reader": reader_child, "durable": durable_child, "probe": probe_child}[args.child](args)

    if args.durable_commits is None:
        args.durable_commits = 400 if args.slow_device else 1500
    t_start = time.monotonic()
    load_start = loadavg()
    workdir = tempfile.mkdtemp(prefix="shardvt-walbench-")
    try:
        # Every child loads one private copy of the library, so a rebuild during the run cannot
        # mix two builds (the file name, hence the entry point, stays the same).
        lib = os.path.join(workdir, os.path.basename(args.ext))
        shutil.copyfile(args.ext, lib)
        args.lib_built = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.stat(args.ext).st_mtime))
        args.ext = lib
        probe = run_child(args, "probe", "managed", workdir)
        plain = "shardvt_manage_wal" in probe["functions"]
        configs = [("8 shards", "sharded", 8), ("one file", "sharded", 1)]
        if plain:
            configs.append(("plain host file", "plain", 1))
        res = {}

        def interleave(key, role, **opts):
            runs = {"stock": [], "managed": []}
            for r in range(args.rounds):
                for mode in (("stock", "managed") if r % 2 == 0 else ("managed", "stock")):
                    print(f"[{time.monotonic() - t_start:5.0f} s] {key} round {r + 1}: {mode}", file=sys.stderr)
                    runs[mode].append(run_child(args, role, mode, workdir, **opts))
            res[key] = {mode: summarize(runs[mode]) for mode in runs}

        for load in ("saturation", "paced", "reader"):
            for name, kind, shards in configs:
                rate = 0.0 if load == "saturation" else res[(name, "saturation")]["stock"]["tps"] * args.load
                interleave((name, load), "writer", kind=kind, shards=shards, commits=args.commits,
                           warmup=args.warmup, rate=rate, reader=(load == "reader"))
                res[(name, load)]["rate"] = rate
        # durable 8-shard transactions: extension (managed; shards at synchronous=FULL) and the
        # plain-files reference
        runs = {"managed": [], "full": [], "proxy": []}
        for r in range(args.rounds):
            order = ["managed", "full", "proxy"]
            for which in (order if r % 2 == 0 else order[::-1]):
                print(f"[{time.monotonic() - t_start:5.0f} s] durable round {r + 1}: {which}", file=sys.stderr)
                runs[which].append(run_child(args, "durable", "managed" if which == "managed" else "stock", workdir,
                                             kind="attach" if which == "proxy" else "ext",
                                             durable_mode=2 if which == "full" else 0,
                                             commits=args.durable_commits, warmup=100))
        res["durable"] = {k: summarize(v) for k, v in runs.items()}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    run_s = time.monotonic() - t_start
    report(args, res, configs, plain, probe, run_s, load_start)


def report(args, res, configs, plain, probe, run_s, load_start):
    cmd = "python3 bench/wal_bench.py --ext ./libshardvt.so"
    if args.slow_device:
        cmd += f" --slow-device {args.slow_device}"
    dev = (f"slow-device model: every sync sleeps {args.slow_device} µs first (`shardvt_fault('sync_delay_us:{args.slow_device}')`)"
           if args.slow_device else "the real device (no injected sync delay)")
    print("## WAL checkpoints: stock vs managed\n")
    print(f"Machine: {machine()}; {probe['version']} ({probe['debug'].get('build', '?')} build of {args.lib_built}, copied once for the whole run)")
    print(f"Command: `{cmd}` (defaults: --commits {args.commits} --rounds {args.rounds} --load {args.load:g} "
          f"--durable-commits {args.durable_commits})")
    print(f"Device: {dev}. Load average at start {load_start}, at end {loadavg()}. Run time {run_s / 60:.1f} min.")
    print(f"Each configuration: {args.rounds} rounds (alternating which mode runs first) × {args.commits} single-row "
          f"autocommit INSERTs ({args.row_bytes}-byte body, random key) after {args.warmup} warm-up commits, fresh "
          f"process and database per round; percentiles pool all rounds ({args.rounds * args.commits} commits per cell).")
    if plain:
        print("Plain host file: the native table lives in a database `h` ATTACHed to the host connection through the "
              "shardvt VFS (managed: `shardvt_manage_wal('h')`), so that its I/O is counted like the shards'.")
    else:
        print("The plain host file configuration (`shardvt_manage_wal`) was skipped: the loaded library has no "
              "`shardvt_manage_wal` function.")
    print()
    for name, _, shards in configs:
        for load in ("saturation", "paced", "reader"):
            r = res[(name, load)]
            what = {"saturation": "back to back",
                    "paced": f"paced at {r['rate']:.0f} commits/s ({args.load:g} × stock saturation)",
                    "reader": f"paced at {r['rate']:.0f} commits/s while a reader holds read transactions"}[load]
            note = "Idle rows: measured from the reader's exit, not from the last commit." if load == "reader" else ""
            detail_table(f"{name}, {what}", r["stock"], r["managed"], note)
    d = res["durable"]
    print(f"### durable 8-shard transactions ({args.rounds} rounds × {args.durable_commits} after 100 warm-up, "
          "each followed by an idle gap as long as itself)\n")
    print("| configuration | p50 (µs) | p99 (µs) | p99.9 (µs) | max (µs) | syncs per transaction | mean sync (µs) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for k, label in (("managed", "sharded table, managed checkpoints, shards at NORMAL + parallel WAL fsyncs"),
                     ("full", "sharded table, stock checkpoints, every shard at synchronous=FULL (durable_commit=2)"),
                     ("proxy", "8 plain WAL files ATTACHed, each synchronous=FULL (not atomic across files)")):
        x = d[k]
        print(f"| {k}: {label} | {x['p50']:.0f} | {x['p99']:.0f} | {x['p99.9']:.0f} | {x['max']:.0f} | "
              f"{x['syncs'] / x['n']:.1f} | {x['sync_mean_us']:.0f} |")
    print()
    targets(args, res, configs, plain)


def targets(args, res, configs, plain):
    """The issue's target table: measure | target | stock | managed | ratio | met?"""
    yes = lambda ok: "yes" if ok else "NO"
    rows = []
    one, eight = res[("one file", "paced")], res[("8 shards", "paced")]
    pair = lambda a, b: f"{a} / {b}"
    r1, r8 = ratio(one["managed"]["p99"], one["stock"]["p99"]), ratio(eight["managed"]["p99"], eight["stock"]["p99"])
    rows.append(("commit p99, one file / 8 shards", "≤ 0.20× / ≤ 0.35×",
                 pair(f"{one['stock']['p99']:.0f}", f"{eight['stock']['p99']:.0f}") + " µs",
                 pair(f"{one['managed']['p99']:.0f}", f"{eight['managed']['p99']:.0f}") + " µs",
                 pair(fmt_ratio(r1), fmt_ratio(r8)), pair(yes(r1 <= 0.20), yes(r8 <= 0.35))))
    for name in ["8 shards", "one file"] + (["plain host file"] if plain else []):
        x = res[(name, "paced")]
        a, b = ratio(x["managed"]["p99.9"], x["stock"]["p99.9"]), ratio(x["managed"]["max"], x["stock"]["max"])
        rows.append((f"commit p99.9 / max ({name})", "≤ 0.45× / ≤ 0.6×",
                     pair(f"{x['stock']['p99.9']:.0f}", f"{x['stock']['max']:.0f}") + " µs",
                     pair(f"{x['managed']['p99.9']:.0f}", f"{x['managed']['max']:.0f}") + " µs",
                     pair(fmt_ratio(a), fmt_ratio(b)), pair(yes(a <= 0.45), yes(b <= 0.6))))
    names = ["one file", "8 shards"] + (["plain host file"] if plain else [])
    label = " / ".join(names)

    def per_config(measure, target, key, fmt, unit, ok):
        xs = [res[(n, "paced")] for n in names]
        rs = [ratio(x["managed"][key], x["stock"][key]) for x in xs]
        rows.append((f"{measure} ({label})", target, " / ".join(fmt(x["stock"][key]) for x in xs) + unit,
                     " / ".join(fmt(x["managed"][key]) for x in xs) + unit, " / ".join(fmt_ratio(r) for r in rs),
                     " / ".join(yes(ok(r)) for r in rs)))

    per_config("WAL peak per shard without readers", "≤ 1.25× stock", "peak_wal_mb", fmt_mb, " MB", lambda r: r <= 1.25)
    xs = [res[(n, "paced")] for n in names]
    zero = lambda v: "never within 1 s" if v is None else f"{v:.0f} ms"
    rows.append((f"WAL size 200 ms after the writer goes idle ({label}; worst round)", "0 bytes",
                 " / ".join(str(x["stock"]["idle_at"]) for x in xs) + " B",
                 " / ".join(str(x["managed"]["idle_at"]) for x in xs) + " B (0 B after "
                 + " / ".join(zero(x["managed"]["idle_zero_ms"]) for x in xs) + ")", "—",
                 " / ".join(yes(x["managed"]["idle_at"] == 0) for x in xs)))
    per_config("writer time spent in checkpoints, ms per round", "≤ 0.15×", "writer_ckpt_ms", lambda v: f"{v:.1f}", "",
               lambda r: r <= 0.15)
    for name in ["8 shards", "one file"] + (["plain host file"] if plain else []):
        x = res[(name, "saturation")]
        a, b = ratio(x["managed"]["tps"], x["stock"]["tps"]), ratio(x["managed"]["p99"], x["stock"]["p99"])
        rows.append((f"at saturation: throughput / p99 ({name})", "≥ 0.95× / ≤ 1.5×",
                     f"{x['stock']['tps']:.0f}/s / {x['stock']['p99']:.0f} µs",
                     f"{x['managed']['tps']:.0f}/s / {x['managed']['p99']:.0f} µs",
                     pair(fmt_ratio(a), fmt_ratio(b)), pair(yes(a >= 0.95), yes(b <= 1.5))))
    xs = [res[(n, "reader")] for n in names]
    rs = [ratio(x["managed"]["p99"], x["stock"]["p99"]) for x in xs]
    rows.append((f"while a reader pins the WAL: p99 ({label})", "≤ 0.1×",
                 " / ".join(f"{x['stock']['p99']:.0f}" for x in xs) + " µs",
                 " / ".join(f"{x['managed']['p99']:.0f}" for x in xs) + " µs",
                 " / ".join(fmt_ratio(r) for r in rs), " / ".join(yes(r <= 0.1) for r in rs)))
    d = res["durable"]
    a, b = ratio(d["managed"]["p50"], d["full"]["p50"]), ratio(d["managed"]["p99"], d["full"]["p99"])
    rows.append(("durable 8-shard commit vs synchronous=FULL: p50 / p99", "≤ 0.75× / ≤ 0.75×",
                 f"{d['full']['p50']:.0f} / {d['full']['p99']:.0f} µs",
                 f"{d['managed']['p50']:.0f} / {d['managed']['p99']:.0f} µs", pair(fmt_ratio(a), fmt_ratio(b)),
                 f"{yes(a <= 0.75)} / {yes(b <= 0.75)}"))
    a, b = ratio(d["managed"]["p50"], d["proxy"]["p50"]), ratio(d["managed"]["p99"], d["proxy"]["p99"])
    rows.append(("(proxy, not the target's comparison) the same vs 8 ATTACHed plain files at synchronous=FULL",
                 "—", f"{d['proxy']['p50']:.0f} / {d['proxy']['p99']:.0f} µs",
                 f"{d['managed']['p50']:.0f} / {d['managed']['p99']:.0f} µs", pair(fmt_ratio(a), fmt_ratio(b)),
                 f"({yes(a <= 0.75)} / {yes(b <= 0.75)})"))
    print("### Issue 5 targets (managed / stock; paced rows at "
          f"{args.load:g} × each configuration's stock saturation)\n")
    print("| measure | target | stock | managed | ratio | met? |")
    print("|---|---|---:|---:|---:|:---:|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()


if __name__ == "__main__":
    main()
