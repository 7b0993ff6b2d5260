#!/usr/bin/env python3
"""Multi-process soak test of a sharded table.

P writer processes (default 4) run for T seconds (default 60) random transactions of 1-4
operations on the sharded table `kv`: INSERT, UPDATE of the value, UPDATE of the shard key (the
row moves to another shard), DELETE. Each writer owns a disjoint id range and keeps the expected
content of its rows in memory, applied only when COMMIT returns; on SQLITE_BUSY / SQLITE_LOCKED it
rolls back and retries the transaction. One reader process runs full scans meanwhile and checks
that every row belongs to some writer's id range, that no row appears twice in one scan, and that
the count is within bounds.

Every scan takes its shard snapshots as a consistent cut (README, Guarantees; src/shard/cut.rs),
so a row never shows up twice in one scan: any duplicate is a violation. With SHARDVT_CUT=0 in
the environment (each shard read at its own point in time) a shard-key move can show up twice
(or not at all) in a concurrent scan; such duplicates, with a different key in each copy, are
then counted as `moving-row anomalies` instead. A duplicate with the same key, or any duplicate
in the final quiescent scan, is always a violation.

At the end: PRAGMA integrity_check on every shard folder file, each id exactly once across the
shard files and in the shard its key routes to, and the table equals the union of the writers'
expected states exactly. Final line: `soak: N ops, E errors, V violations` (exit 1 if V > 0).

Usage: python3 tests/crash/soak.py [--procs P] [--seconds T] [--seed S] [--keep] [-v]
"""
import argparse
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import time

import apsw

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common  # noqa: E402  (tests/crash/common.py)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SO_PATH = REPO_ROOT / "libshardvt.so"

DDL = ("CREATE VIRTUAL TABLE kv USING sharded(id INTEGER PRIMARY KEY, k TEXT NOT NULL, v INTEGER NOT NULL, "
       "w INTEGER NOT NULL, shard_key=k, shards=4, dir='kv.shards')")
KEYS = [f"key-{n:02d}" for n in range(48)]
ID_SPAN = 1_000_000  # writer i owns ids (i+1)*ID_SPAN + 1 ...
MAX_ROWS = 150       # per writer, soft
BUSY = (apsw.BusyError, apsw.LockedError)
CUT = os.environ.get("SHARDVT_CUT", "1").strip() != "0"  # the library reads the same variable


def connect(path, load=True, readonly=False):
    return common.connect(path, load=load, readonly=readonly, busy_ms=10000)


def connect_table(db):
    """The connection a writer or reader uses: the shared host database, or with --attach a
    private in-memory host attached to the shard folder (no host write lock shared between
    processes, so writers really run in parallel and lock-order conflicts can happen)."""
    if not os.environ.get("SHARDVT_SOAK_ATTACH"):
        return connect(db)
    conn = connect(":memory:")
    folder = pathlib.Path(db).parent / "kv.shards"
    conn.execute(DDL.replace("CREATE VIRTUAL TABLE kv", "CREATE VIRTUAL TABLE temp.kv")
                 .replace("dir='kv.shards'", f"dir='{folder}', attach=on"))
    return conn


RECOVERED = []  # SQLite log messages "sharded: recovered multi-shard transaction ..." in this process


def capture_sqlite_log():
    """No process crashes in the soak, so no recovery may ever re-apply a transaction: a live
    committer holds its shards' write locks and commits the markers with its data."""
    def handler(code, msg):
        if "recovered multi-shard" in msg:
            RECOVERED.append(msg)
    apsw.config(apsw.SQLITE_CONFIG_LOG, handler)


def writer(db, proc, seed, seconds):
    capture_sqlite_log()
    rng = random.Random(seed)
    conn = connect_table(db)
    base = (proc + 1) * ID_SPAN
    next_id = base + 1
    exp = {}  # id -> (k, v)
    st = {"proc": proc, "ops": 0, "txns": 0, "busy": 0, "moves": 0, "errors": [], "busy_wait_max": 0.0}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        new = dict(exp)
        plan = []
        nid = next_id
        for _ in range(rng.choice((1, 1, 2, 3, 4))):
            r = rng.random()
            if not new or (r < 0.35 and len(new) < MAX_ROWS):
                k, v = rng.choice(KEYS), rng.randrange(1 << 40)
                plan.append(("INSERT INTO kv(id, k, v, w) VALUES (?,?,?,?)", (nid, k, v, proc)))
                new[nid] = (k, v)
                nid += 1
            elif r < 0.60:
                i = rng.choice(list(new))
                d = rng.randrange(1, 1000)
                plan.append(("UPDATE kv SET v = v + ? WHERE id = ?", (d, i)))
                new[i] = (new[i][0], new[i][1] + d)
            elif r < 0.85:
                i = rng.choice(list(new))
                k = rng.choice(KEYS)
                plan.append(("UPDATE kv SET k = ? WHERE id = ?", (k, i)))
                new[i] = (k, new[i][1])
                st["moves"] += 1
            else:
                i = rng.choice(list(new))
                plan.append(("DELETE FROM kv WHERE id = ?", (i,)))
                del new[i]
        t0 = time.monotonic()
        try:
            conn.execute("BEGIN")
            for sql, b in plan:
                conn.execute(sql, b)
            conn.execute("COMMIT")
        except BUSY:
            st["busy"] += 1
            st["busy_wait_max"] = max(st["busy_wait_max"], time.monotonic() - t0)
            try:
                conn.execute("ROLLBACK")
            except apsw.Error:
                pass
            continue  # retry (a new random transaction; nothing of this one was applied)
        except apsw.Error as e:
            st["errors"].append(f"{type(e).__name__}: {e}")
            try:
                conn.execute("ROLLBACK")
            except apsw.Error:
                pass
            continue
        exp = new
        next_id = nid
        st["ops"] += len(plan)
        st["txns"] += 1
    st["expected"] = {str(i): list(kv) for i, kv in exp.items()}
    st["recovered"] = RECOVERED
    conn.close()
    print(json.dumps(st), flush=True)
    return 0


def reader(db, procs, seconds):
    capture_sqlite_log()
    conn = connect_table(db)
    st = {"scans": 0, "rows": 0, "anomalies": 0, "busy": 0, "violations": [], "errors": []}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            rows = conn.execute("SELECT id, k, v, w FROM kv").fetchall()
            (cnt,), = conn.execute("SELECT count(*) FROM kv").fetchall()
        except BUSY:
            st["busy"] += 1
            continue
        except apsw.Error as e:
            st["errors"].append(f"{type(e).__name__}: {e}")
            continue
        st["scans"] += 1
        st["rows"] += len(rows)
        seen = {}
        for i, k, v, w in rows:
            if not (0 <= w < procs and (w + 1) * ID_SPAN < i < (w + 2) * ID_SPAN):
                st["violations"].append(f"row ({i}, {k}, {v}, {w}) belongs to no writer")
            if i in seen:
                if seen[i] == k:
                    st["violations"].append(f"id {i} twice in one scan with the same key {k!r}")
                elif CUT:
                    st["violations"].append(f"id {i} twice in one scan (keys {seen[i]!r}, {k!r}): not a consistent cut")
                else:
                    st["anomalies"] += 1
            seen[i] = k
        bound = procs * (MAX_ROWS + 8)
        if len(rows) > bound or cnt > bound:
            st["violations"].append(f"scan returned {len(rows)} rows, count(*) {cnt}: above the bound {bound}")
    conn.close()
    st["recovered"] = RECOVERED
    print(json.dumps(st), flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--host-journal", choices=("wal", "delete"), default="wal",
                    help="journal mode of the host database file (default wal; with delete, a reader "
                         "and a multi-shard commit can deadlock until the 5 s shard busy timeout)")
    ap.add_argument("--attach", action="store_true",
                    help="each process uses a private :memory: host database with attach=on")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--child", choices=("writer", "reader"), help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--proc", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "writer":
        return writer(args.db, args.proc, args.seed, args.seconds)
    if args.child == "reader":
        return reader(args.db, args.procs, args.seconds)
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    if not SO_PATH.exists():
        print(f"{SO_PATH.name} not found in the repository root: run `make build` first", file=sys.stderr)
        return 2

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="shardvt-soak-"))
    db = tmp / "soak.db"
    # Children load a private copy of the extension (a rebuild during the run cannot affect it).
    (tmp / "ext").mkdir()
    shutil.copy2(SO_PATH, tmp / "ext" / SO_PATH.name)
    os.environ["SHARDVT_CRASH_SO"] = str(tmp / "ext" / SO_PATH.name)
    if args.attach:
        os.environ["SHARDVT_SOAK_ATTACH"] = "1"  # inherited by the children
    conn = connect(db)
    conn.execute(f"PRAGMA journal_mode={args.host_journal}")  # WAL persists in the file
    conn.execute(DDL)
    conn.close()
    me = str(pathlib.Path(__file__).resolve())
    common = ["--db", str(db), "--seconds", str(args.seconds), "--procs", str(args.procs)]
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    kids = [subprocess.Popen([sys.executable, me, "--child", "writer", "--proc", str(p),
                              "--seed", str(rng.randrange(1 << 30))] + common,
                             stdout=subprocess.PIPE, text=True) for p in range(args.procs)]
    kids.append(subprocess.Popen([sys.executable, me, "--child", "reader"] + common,
                                 stdout=subprocess.PIPE, text=True))
    results = []
    violations = []
    for kid in kids:
        outp, _ = kid.communicate(timeout=args.seconds + 120)
        if kid.returncode != 0 or not outp.strip():
            violations.append(f"child exited with {kid.returncode}")
            results.append(None)
            continue
        results.append(json.loads(outp.strip().splitlines()[-1]))
    elapsed = time.monotonic() - t0
    wres = [r for r in results[:-1] if r]
    rres = results[-1] or {"scans": 0, "rows": 0, "anomalies": 0, "busy": 0, "violations": [], "errors": []}
    violations += [f"reader: {v}" for v in rres["violations"][:20]]
    errors = [e for r in wres for e in r["errors"]] + rres["errors"]
    for who, r in [(f"writer {r['proc']}", r) for r in wres] + [("reader", rres)]:
        for m in r.get("recovered", [])[:5]:
            violations.append(f"{who} re-applied a transaction although no process crashed: {m}")

    # Final state.
    expected = {}
    for r in wres:
        for i, (k, v) in r["expected"].items():
            expected[int(i)] = (k, v, r["proc"])
    conn = connect(db)
    rows = conn.execute("SELECT id, k, v, w, shardvt_route('kv', k) FROM kv").fetchall()
    paths = {s: pathlib.Path(p).name for s, p in conn.execute("SELECT shard, path FROM shardvt_shards('kv')")}
    conn.close()
    got = {}
    for i, k, v, w, _ in rows:
        if i in got:
            violations.append(f"final scan: id {i} twice")
        got[i] = (k, v, w)
    route = {r[0]: r[4] for r in rows}
    if got != expected:
        diff = sorted(set(got.items()) ^ set(expected.items()))
        violations.append(f"final table differs from the writers' expected state in {len(diff)} rows, "
                          f"e.g. {diff[:6]} (table has {len(got)} rows, expected {len(expected)})")
    raw = []
    for f in sorted((tmp / "kv.shards").glob("*.db")):
        c = connect(f, load=False, readonly=True)
        ic = c.execute("PRAGMA integrity_check").fetchall()
        if ic != [("ok",)]:
            violations.append(f"integrity_check {f.name}: {ic[:5]}")
        if f.name in paths.values():
            shard = [s for s, n in paths.items() if n == f.name][0]
            for (i,) in c.execute("SELECT id FROM data"):
                raw.append(i)
                if route.get(i) != shard:
                    violations.append(f"id {i} stored in shard {shard}, routes to {route.get(i)}")
        if f.name == "txlog.db":
            (p,), = c.execute("SELECT count(*) FROM txn WHERE state = 'pending'").fetchall()
            if p:
                violations.append(f"{p} log entries still pending at the end")
        c.close()
    if sorted(raw) != sorted(got):
        violations.append(f"shard files hold {len(raw)} rows ({len(set(raw))} distinct), the table {len(got)}")

    ops = sum(r["ops"] for r in wres)
    txns = sum(r["txns"] for r in wres)
    busy = sum(r["busy"] for r in wres)
    moves = sum(r["moves"] for r in wres)
    for v in violations:
        print(f"VIOLATION (seed {args.seed}): {v}")
    for e in errors[:20]:
        print(f"ERROR: {e}")
    if args.verbose:
        for r in wres:
            print(f"writer {r['proc']}: {r['txns']} txns, {r['ops']} ops, {r['busy']} busy retries "
                  f"(longest wait {r['busy_wait_max']:.2f} s), {len(r['expected'])} rows at the end")
    print(f"soak: {args.procs} writers + 1 reader, {args.seconds:g} s (wall {elapsed:.1f} s), seed {args.seed}, "
          f"host journal {args.host_journal}")
    print(f"soak: {txns} transactions ({txns / args.seconds:.0f}/s), {ops} ops ({ops / args.seconds:.0f}/s, "
          f"{moves} shard-key moves attempted), {busy} busy retries (longest {max([r['busy_wait_max'] for r in wres] or [0]):.2f} s); "
          f"reader {rres['scans']} scans, {rres['busy']} failed busy "
          f"({rres['scans'] / args.seconds:.1f}/s, {rres['rows']} rows), {rres['anomalies']} moving-row anomalies")
    print(f"soak: {ops} ops, {len(errors)} errors, {len(violations)} violations", flush=True)
    if args.keep or violations:
        print(f"soak: files kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
