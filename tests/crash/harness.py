#!/usr/bin/env python3
"""Crash harness for libshardvt's atomic multi-shard commit (issue 3).

A child process (this file, run with --child) makes bank transfers between accounts of the
sharded table `acct` (4 shards), each recorded in the sharded table `xfer` (4 shards) in the same
transaction; some transactions also move an account to another shard (UPDATE of the shard key),
use SAVEPOINT / ROLLBACK TO, or roll back entirely. The child writes `ack <tid>` to stdout (a pipe,
unbuffered) only after COMMIT returned. The parent SIGKILLs it at a random moment, sometimes also
kills the next process while it is recovering, then opens the database again (which runs the
extension's recovery) and checks:

  sum       sum(balance) == 40 * 1000 and sum(xsum) == 0 (acct alone: no half transfer)
  acked     every acknowledged tid is in xfer (durability of COMMIT)
  kept      every tid seen in xfer after an earlier recovery is still there
  balance   each account's balance and xsum equal what the xfer rows imply (the two tables
            commit together: a transfer is entirely visible or not at all)
  scan      each account id / tid appears exactly once in a scan of the table
  integrity PRAGMA integrity_check = ok on every *.db file of both shard folders
  rows      opening the shard files directly: each id exactly once over all shards, in the shard
            its key routes to, and the same rows the table returns
  log       after recovery no log entry is left 'pending'

--power-loss: every child (writers and recoveries) first turns on the shardvt VFS's power-loss
model (`SELECT shardvt_fault('powerloss')`): its writes stay in process memory until the file is
synced, so the SIGKILL loses exactly what was never synced, as a power failure would. The parent
then deletes every `-shm` file (the wal-index is memory-mapped and still describes the lost WAL
frames) before anything opens the files again, and checks the same invariants, except that
`acked` only applies to transactions that were multi-shard or multi-table (durable through the
FULL-synced log): a single-shard transaction of one table may be lost with synchronous=NORMAL.
Those losses are counted and reported (`crash: power loss: ...`), not counted as violations.
The child marks each ack `m` (logged) or `s` (one shard of one table, by its net writes;
a shard whose writes a ROLLBACK TO undid still joins the log, so `s` is the lenient side).

Rounds continue on the same database, so recovery after earlier crashes is exercised repeatedly.
After a violation the expected state is re-based on what was found, so later rounds still test
something. Final line: `crash: N crashes, V violations`; exit status 1 when V > 0.

Usage: python3 tests/crash/harness.py [--rounds N] [--seed S] [--tables 1|2] [--power-loss] [--keep] [-v]
"""
import argparse
import os
import pathlib
import random
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import apsw

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common  # noqa: E402  (tests/crash/common.py)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SO_PATH = REPO_ROOT / "libshardvt.so"

N_ACCT = 40
START = 1000
SHARDS = 4
ACCT_DDL = (
    "CREATE VIRTUAL TABLE acct USING sharded(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, "
    "balance INTEGER NOT NULL, xsum INTEGER NOT NULL DEFAULT 0, "
    "shard_key=owner, shards=4, dir='acct.shards')"
)
XFER_DDL = (
    "CREATE VIRTUAL TABLE xfer USING sharded(tid INTEGER PRIMARY KEY, src INTEGER NOT NULL, "
    "dst INTEGER NOT NULL, amount INTEGER NOT NULL, shard_key=tid, shards=4, dir='xfer.shards')"
)
OWNER_POOL = [f"owner-{k:03d}" for k in range(160)]
BOGUS_TID_OFFSET = 500_000  # tids inserted only inside rolled-back savepoints / transactions


def connect(path, load=True, readonly=False):
    return common.connect(path, load=load, readonly=readonly, busy_ms=5000)


# ---------------------------------------------------------------------------------------------
# child
# ---------------------------------------------------------------------------------------------

def out(line):
    os.write(1, (line + "\n").encode())


def record_sql(tables):
    """The INSERT that records transfer (tid, src, dst, amount): a row of `xfer` (two tables), or
    a ledger row of `acct` itself (one table; id = tid, owner 'ledger-<tid>', balance = amount,
    xsum = src * 1000 + dst)."""
    if tables == 2:
        return "INSERT INTO xfer(tid, src, dst, amount) VALUES (?1, ?2, ?3, ?4)"
    return "INSERT INTO acct(id, owner, balance, xsum) VALUES (?1, 'ledger-' || ?1, ?4, ?2 * 1000 + ?3)"


def power_loss_on(conn):
    """The power-loss model is process-wide: on before the first shard file is opened."""
    assert conn.execute("SELECT shardvt_fault('powerloss')").fetchall() == [("ok",)]


def child_main(db):
    """Waits for one command on stdin: `work <tables> <tid_base> <seed> [powerloss]` or
    `recover [powerloss]`."""
    cmd = sys.stdin.readline().split()
    if not cmd:
        return 0
    try:
        if cmd[0] == "recover":
            out("open")
            conn = connect(db)
            if "powerloss" in cmd[1:]:
                power_loss_on(conn)
            # Connecting to the tables runs recovery.
            conn.execute("SELECT count(*) FROM acct").fetchall()
            if os.path.isdir(os.path.join(os.path.dirname(db), "xfer.shards")):
                conn.execute("SELECT count(*) FROM xfer").fetchall()
            out("done")
            return 0
        return child_work(db, int(cmd[1]), int(cmd[2]), int(cmd[3]), "powerloss" in cmd[4:])
    except Exception as e:  # reported to the parent, which counts it as a violation
        out(f"err {type(e).__name__}: {e}".replace("\n", " "))
        return 2


def child_work(db, tables, tid, seed, power_loss=False):
    rng = random.Random(seed)
    rec = record_sql(tables)
    conn = connect(db)
    if power_loss:
        power_loss_on(conn)
    shard_of_owner = dict(conn.execute(
        "SELECT value, shardvt_route('acct', value) FROM json_each(?)", (repr(OWNER_POOL).replace("'", '"'),)))
    pool = {s: [o for o in OWNER_POOL if shard_of_owner[o] == s] for s in range(SHARDS)}
    owner = dict(conn.execute("SELECT id, owner FROM acct WHERE id <= ?", (N_ACCT,)))
    ids = sorted(owner)
    out("ready")
    ex = conn.execute
    while True:
        tid += 1
        shard = {i: shard_of_owner[owner[i]] for i in ids}
        src = rng.choice(ids)
        if rng.random() < 0.05:
            same = [i for i in ids if i != src and shard[i] == shard[src]]
            dst = rng.choice(same or [i for i in ids if i != src])
        else:
            dst = rng.choice([i for i in ids if shard[i] != shard[src]])
        amt = rng.randint(1, 99)
        r = rng.random()
        abort = r < 0.04
        with_sp = 0.04 <= r < 0.20
        moves = {}
        if rng.random() < 0.25:
            who = rng.choice([src, dst, rng.choice(ids)])
            new_shard = rng.choice([s for s in range(SHARDS) if s != shard[who]])
            moves[who] = rng.choice(pool[new_shard])
        xfer_first = rng.random() < 0.3

        ex("BEGIN")
        if xfer_first:
            ex(rec, (tid, src, dst, amt))
        ex("UPDATE acct SET balance = balance - ?, xsum = xsum - ? WHERE id = ?", (amt, tid, src))
        if with_sp:
            ex("SAVEPOINT a")
            ex("UPDATE acct SET balance = balance + 100000, xsum = xsum + 7 WHERE id = ?", (dst,))
            other = rng.choice(ids)
            ex("UPDATE acct SET owner = ? WHERE id = ?",
               (rng.choice(pool[(shard[other] + 1) % SHARDS]), other))
            if rng.random() < 0.5:
                ex("SAVEPOINT b")
                ex(rec, (tid + BOGUS_TID_OFFSET, src, dst, 5))
                ex("RELEASE b")
            ex("ROLLBACK TO a")
            ex("UPDATE acct SET balance = balance + ?, xsum = xsum + ? WHERE id = ?", (amt, tid, dst))
            ex("RELEASE a")
        else:
            ex("UPDATE acct SET balance = balance + ?, xsum = xsum + ? WHERE id = ?", (amt, tid, dst))
        for who, o in moves.items():
            ex("UPDATE acct SET owner = ? WHERE id = ?", (o, who))
        if not xfer_first:
            ex(rec, (tid, src, dst, amt))
        if abort:
            ex(rec, (tid + BOGUS_TID_OFFSET, dst, src, 1))
            ex("ROLLBACK")
            continue
        # 'm': logged (several shards or both tables), durable even on power loss; 's': one shard
        # of one table (net writes), which synchronous=NORMAL may lose on power loss.
        kind = "m"
        if tables == 1 and not moves and shard[src] == shard[dst]:
            ledger = conn.execute("SELECT shardvt_route('acct', 'ledger-' || ?)", (tid,)).fetchall()[0][0]
            kind = "s" if ledger == shard[src] else "m"
        ex("COMMIT")
        owner.update(moves)
        out(f"ack {tid} {kind}")


# ---------------------------------------------------------------------------------------------
# parent
# ---------------------------------------------------------------------------------------------

class Child:
    """A pre-started child (python startup takes ~0.1 s) waiting for its command on stdin."""

    def __init__(self, db, errlog):
        self.p = subprocess.Popen(
            [sys.executable, str(pathlib.Path(__file__).resolve()), "--child", "--db", str(db)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog, bufsize=0)
        self.buf = b""
        self.lines = []
        self.eof = False
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.p.stdout, selectors.EVENT_READ)

    def send(self, cmd):
        self.p.stdin.write((cmd + "\n").encode())
        self.p.stdin.close()

    def pump(self, timeout, until_deadline=True):
        """Reads the pipe for `timeout` seconds (or, with until_deadline=False, until some lines
        arrived); returns the new lines."""
        new = []
        deadline = time.monotonic() + max(timeout, 0)
        while not self.eof:
            left = deadline - time.monotonic()
            if not self.sel.select(max(left, 0)):
                break
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                self.eof = True
                break
            self.buf += chunk
            *done, self.buf = self.buf.split(b"\n")
            new += [d.decode() for d in done]
            if left <= 0 or (new and not until_deadline):
                break
        self.lines += new
        return new

    def wait_for(self, prefix, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.eof:
            for ln in self.pump(deadline - time.monotonic(), until_deadline=False):
                if ln.startswith(prefix) or ln.startswith("err"):
                    return ln
        return None

    def kill(self):
        """SIGKILL; True when the process was still running. Then drains the pipe to EOF."""
        alive = self.p.poll() is None
        if alive:
            os.kill(self.p.pid, signal.SIGKILL)
        while not self.eof:
            self.pump(5)
        self.p.wait()
        self.sel.close()
        self.p.stdout.close()
        return alive and self.p.returncode == -signal.SIGKILL

    def errors(self):
        return [ln for ln in self.lines if ln.startswith("err")]


class Harness:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="shardvt-crash-"))
        self.db = self.tmp / "bank.db"
        # Children load a private copy of the extension (a rebuild during the run cannot affect it).
        (self.tmp / "ext").mkdir()
        shutil.copy2(SO_PATH, self.tmp / "ext" / SO_PATH.name)
        os.environ["SHARDVT_CRASH_SO"] = str(self.tmp / "ext" / SO_PATH.name)
        self.errlog = open(self.tmp / "child-stderr.log", "ab")
        self.crashes = 0
        self.violations = 0
        self.acked = set()  # acknowledged tids that must survive
        self.acked_single = set()  # power loss: acknowledged one-shard tids, which may be lost
        self.lost_single = []  # power loss: acknowledged one-shard tids found lost
        self.n_single = 0
        self.seen = set()
        self.base_sum = N_ACCT * START
        self.base_xsum = 0
        self.adj = {}  # id -> (balance, xsum) offsets after a re-base
        self.stats = {"commits_acked": 0, "work_kills": 0, "recovery_kills": 0,
                      "recovery_interrupted_with_pending": 0, "recovery_made_progress_then_killed": 0}
        self.crash_class = {}
        self.rk_time = 0.02  # running estimate of open->done time of a recovering child
        self.shard_of_owner = {}
        self.tables = ("acct", "xfer") if args.tables == 2 else ("acct",)
        self.pl = " powerloss" if args.power_loss else ""

    def log(self, msg):
        if self.args.verbose:
            print(msg, flush=True)

    def violation(self, rnd, what, detail):
        self.violations += 1
        print(f"VIOLATION round {rnd} (seed {self.args.seed}) [{what}]: {detail}", flush=True)
        snap = self.tmp / "pre-recovery"
        if snap.exists():
            kept = self.tmp / f"round-{rnd}-pre-recovery"
            snap.rename(kept)
            print(f"  the files as the crash left them (before recovery): {kept}", flush=True)

    def snapshot(self):
        """Copies the database and shard folders as the writer's crash left them, so that a
        violating round can be replayed (see --keep)."""
        snap = self.tmp / "pre-recovery"
        shutil.rmtree(snap, ignore_errors=True)
        snap.mkdir()
        for f in self.tmp.glob("bank.db*"):
            shutil.copy2(f, snap / f.name)
        for d in (f"{t}.shards" for t in self.tables):
            shutil.copytree(self.tmp / d, snap / d)

    # -- setup ---------------------------------------------------------------------------------
    def setup(self):
        conn = connect(self.db)
        conn.execute(ACCT_DDL)
        if self.args.tables == 2:
            conn.execute(XFER_DDL)
        self.shard_of_owner = dict(conn.execute(
            "SELECT value, shardvt_route('acct', value) FROM json_each(?)",
            (repr(OWNER_POOL).replace("'", '"'),)))
        pool = {s: [o for o in OWNER_POOL if self.shard_of_owner[o] == s] for s in range(SHARDS)}
        assert all(len(pool[s]) >= N_ACCT // SHARDS for s in pool), "owner pool does not cover every shard"
        with conn:
            for i in range(1, N_ACCT + 1):
                conn.execute("INSERT INTO acct(id, owner, balance) VALUES (?,?,?)",
                             (i, pool[i % SHARDS][i // SHARDS], START))
        self.paths = {}
        for table in self.tables:
            self.paths[table] = {s: pathlib.Path(p).name
                                 for s, p in conn.execute(f"SELECT shard, path FROM shardvt_shards('{table}')")}
        per_shard = [0] * SHARDS
        for (s,) in conn.execute("SELECT shardvt_route('acct', owner) FROM acct"):
            per_shard[s] += 1
        conn.close()
        self.log(f"setup: {self.tmp}, accounts per shard {per_shard}")

    # -- peeking at the on-disk state a crash left (read-only, no extension) -------------------
    def classify(self):
        """'clean' | 'logged' (no participant committed) | 'partial' | 'all' (not marked done)."""
        try:
            conn = connect(self.tmp / "acct.shards" / "txlog.db", load=False, readonly=True)
            pending = [(t, [int(x) for x in sh.split(",")]) for t, sh in
                       conn.execute("SELECT txid, shards FROM txn WHERE state <> 'done'")]
            conn.close()
            if not pending:
                return "clean", 0
            committed = 0
            total = 0
            for txid, shards in pending:
                for s in shards:
                    total += 1
                    c = connect(self.tmp / "acct.shards" / self.paths["acct"][s], load=False, readonly=True)
                    try:
                        committed += bool(c.execute("SELECT 1 FROM _shardvt_txn WHERE txid = ?", (txid,)).fetchall())
                    except apsw.SQLError:
                        pass
                    c.close()
            cls = "logged" if committed == 0 else ("all" if committed == total else "partial")
            return cls, committed
        except Exception as e:  # never fatal: only statistics
            return f"unknown({type(e).__name__})", 0

    # -- one round ------------------------------------------------------------------------------
    def spare(self):
        return Child(self.db, self.errlog)

    def power_off(self):
        """--power-loss: the killed child's unsynced writes never reached the files, but its
        memory-mapped wal-index (-shm) describes them: delete every -shm so that the next opener
        rebuilds it from what really is in the -wal files."""
        if not self.args.power_loss:
            return
        for d in [self.tmp] + [self.tmp / f"{t}.shards" for t in self.tables]:
            for f in d.glob("*-shm"):
                f.unlink()

    def run(self):
        self.setup()
        t0 = time.monotonic()
        nxt = self.spare()
        for rnd in range(1, self.args.rounds + 1):
            child, nxt = nxt, self.spare()
            seed = self.rng.randrange(1 << 30)
            child.send(f"work {self.args.tables} {rnd * 1_000_000} {seed}{self.pl}")
            first = child.wait_for("ack", 30)
            delay = self.rng.uniform(0.005, 0.150)
            if first is not None and not first.startswith("err"):
                child.pump(delay)
            killed = child.kill()
            self.crashes += killed
            self.stats["work_kills"] += killed
            self.power_off()
            acks = [int(ln.split()[1]) for ln in child.lines if ln.startswith("ack ")]
            single = {int(ln.split()[1]) for ln in child.lines if ln.startswith("ack ") and ln.split()[2:] == ["s"]}
            if self.args.power_loss:
                self.acked.update(set(acks) - single)
                self.acked_single.update(single)
                self.n_single += len(single)
            else:
                self.acked.update(acks)
            self.stats["commits_acked"] += len(acks)
            for e in child.errors():
                self.violation(rnd, "child", e)
            if first is None:
                self.violation(rnd, "child", "no transaction was acknowledged within 30 s")
            cls, _ = self.classify()
            self.crash_class[cls] = self.crash_class.get(cls, 0) + 1
            self.snapshot()
            self.log(f"round {rnd}: killed after {delay * 1000:.0f} ms, {len(acks)} acks, crash state {cls}")

            # Sometimes crash the recovery too (more often when there is something to recover).
            if self.rng.random() < (0.6 if cls not in ("clean",) else 0.1):
                for _ in range(self.rng.randint(1, 3)):
                    child, nxt = nxt, self.spare()
                    child.send("recover" + self.pl)
                    ln = child.wait_for("open", 30)
                    t_open = time.monotonic()
                    if ln != "open":
                        self.violation(rnd, "child", f"recovery child: {ln}")
                    d = self.rng.uniform(0, self.rk_time * 1.3)
                    done = child.wait_for("done", d)
                    if done == "done":
                        self.rk_time = 0.8 * self.rk_time + 0.2 * (time.monotonic() - t_open)
                    killed = child.kill()
                    self.power_off()
                    interrupted = killed and "done" not in child.lines
                    self.crashes += interrupted
                    self.stats["recovery_kills"] += interrupted
                    for e in child.errors():
                        self.violation(rnd, "recovery", e)
                    cls2, _ = self.classify()
                    if interrupted and cls != "clean":
                        self.stats["recovery_interrupted_with_pending"] += 1
                        if cls2 != cls:
                            self.stats["recovery_made_progress_then_killed"] += 1
                    self.log(f"round {rnd}: recovery killed after {d * 1000:.1f} ms "
                             f"({'interrupted' if interrupted else 'had finished'}), state {cls} -> {cls2}")
                    cls = cls2
            self.verify(rnd)
        nxt.kill()
        self.elapsed = time.monotonic() - t0

    # -- invariants -----------------------------------------------------------------------------
    def verify(self, rnd):
        conn = connect(self.db)  # xConnect runs recovery
        try:
            rows = conn.execute("SELECT id, owner, balance, xsum, shardvt_route('acct', owner) FROM acct").fetchall()
            route = {r[0]: r[4] for r in rows}
            allrows = [r[:4] for r in rows]
            accts = [r for r in allrows if r[0] <= N_ACCT]
            if self.args.tables == 2:
                xfers = conn.execute("SELECT tid, src, dst, amount FROM xfer").fetchall()
            else:
                xfers = [(i, x // 1000, x % 1000, b) for i, o, b, x in allrows if i > N_ACCT]
                bad_ledger = [r for r in allrows if r[0] > N_ACCT and r[1] != f"ledger-{r[0]}"]
                if bad_ledger:
                    self.violation(rnd, "rows", f"damaged ledger rows: {bad_ledger[:5]}")
            # A point lookup per account goes through the pruned path (shard of the key).
            for i, o, b, x in accts[:5]:
                got = conn.execute("SELECT id, balance FROM acct WHERE owner = ? AND id = ?", (o, i)).fetchall()
                if got != [(i, b)]:
                    self.violation(rnd, "scan", f"lookup of account {i} by owner {o!r}: {got}")
        except apsw.Error as e:
            self.violation(rnd, "open", f"{type(e).__name__}: {e}")
            conn.close()
            raise SystemExit(self.finish())
        conn.close()

        # scan: no duplicates, every account
        ids = [a[0] for a in accts]
        if len(allrows) != len({r[0] for r in allrows}):
            self.violation(rnd, "scan", f"{len(allrows) - len({r[0] for r in allrows})} duplicate ids in a scan of acct")
        if sorted(ids) != list(range(1, N_ACCT + 1)):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            self.violation(rnd, "scan", f"account ids in scan: {len(ids)} rows, duplicates {dup}, "
                                        f"missing {sorted(set(range(1, N_ACCT + 1)) - set(ids))}")
        tids = [x[0] for x in xfers]
        tidset = set(tids)
        if len(tidset) != len(tids):
            self.violation(rnd, "scan", f"xfer: {len(tids) - len(tidset)} duplicate tids")
        bogus = sorted(t for t in tidset if t % 1_000_000 >= BOGUS_TID_OFFSET)
        if bogus:
            self.violation(rnd, "rollback", f"rolled-back xfer rows visible: {bogus[:10]}")

        # sum (acct alone)
        s = sum(a[2] for a in accts)
        xs = sum(a[3] for a in accts)
        if (s, xs) != (self.base_sum, self.base_xsum):
            self.violation(rnd, "sum", f"sum(balance)={s} (expected {self.base_sum}), "
                                       f"sum(xsum)={xs} (expected {self.base_xsum})")
            self.base_sum, self.base_xsum = s, xs

        # acked / kept
        if self.acked_single:
            gone = sorted(self.acked_single - tidset)
            self.lost_single += gone
            if gone:
                self.log(f"round {rnd}: {len(gone)} acknowledged one-shard transactions lost to the power loss: {gone[:10]}")
            # Found now: the files hold them, so from here on they must stay (checked by `kept`).
            self.acked_single = set()
        missing = sorted(self.acked - tidset)
        if missing:
            self.violation(rnd, "acked", f"{len(missing)} acknowledged transfers missing, e.g. {missing[:10]}")
            self.acked -= set(missing)
        lost = sorted(self.seen - tidset)
        if lost:
            self.violation(rnd, "kept", f"{len(lost)} transfers seen earlier disappeared, e.g. {lost[:10]}")
        self.seen = tidset

        # balance: acct agrees with xfer (cross-table atomicity)
        exp = {i: [START, 0] for i in range(1, N_ACCT + 1)}
        for tid, src, dst, amt in xfers:
            if src in exp and dst in exp:
                exp[src][0] -= amt
                exp[src][1] -= tid
                exp[dst][0] += amt
                exp[dst][1] += tid
        bad = []
        for i, o, b, x in accts:
            if i not in exp:
                continue
            ab, ax = self.adj.get(i, (0, 0))
            e = (exp[i][0] + ab, exp[i][1] + ax)
            if (b, x) != e:
                bad.append((i, (b, x), e))
                self.adj[i] = (ab + b - e[0], ax + x - e[1])
        if bad:
            # A single lost or extra transfer shows as xsum differing by exactly +-tid.
            diffs = sorted({abs(got[1] - want[1]) for _, got, want in bad})
            hint = ", ".join(f"tid {t} is {'in the transfer record only' if t in tidset else 'in acct only'}"
                             for t in diffs[:4])
            self.violation(rnd, "balance", f"{len(bad)} accounts disagree with the transfer record "
                                           f"(id, (balance, xsum), expected): {bad[:4]}; {hint}")

        # integrity + raw rows
        raw = []
        for table in self.tables:
            d = self.tmp / f"{table}.shards"
            for f in sorted(d.glob("*.db")):
                c = connect(f, load=False, readonly=True)
                try:
                    ic = c.execute("PRAGMA integrity_check").fetchall()
                    if ic != [("ok",)]:
                        self.violation(rnd, "integrity", f"{table}.shards/{f.name}: {ic[:5]}")
                    if table == "acct" and f.name.startswith("shard-"):
                        shard = int(f.stem.split("-")[1])
                        for row in c.execute("SELECT id, owner, balance, xsum FROM data"):
                            raw.append(row)
                            if route.get(row[0], shard) != shard:
                                self.violation(rnd, "rows", f"row {row[0]} owner {row[1]!r} stored in shard "
                                                            f"{shard}, routes to {route[row[0]]}")
                    if f.name == "txlog.db":
                        p = c.execute("SELECT count(*) FROM txn WHERE state = 'pending'").fetchall()[0][0]
                        if p:
                            self.violation(rnd, "log", f"{table}: {p} entries still pending after recovery")
                except apsw.Error as e:
                    self.violation(rnd, "integrity", f"{table}.shards/{f.name}: {type(e).__name__}: {e}")
                finally:
                    c.close()
        if sorted(raw) != sorted(allrows):
            rid = [r[0] for r in raw]
            self.violation(rnd, "rows", f"shard files hold {len(raw)} account rows, duplicates "
                                        f"{sorted({i for i in rid if rid.count(i) > 1})}, "
                                        f"differ from the table's rows: {sorted(set(raw) ^ set(allrows))[:6]}")

    def finish(self):
        el = getattr(self, "elapsed", 0)
        st = self.stats
        print(f"crash: {st['commits_acked']} acknowledged transfers, {st['work_kills']} kills of writers, "
              f"{st['recovery_kills']} kills during recovery ({st['recovery_interrupted_with_pending']} with "
              f"work pending, {st['recovery_made_progress_then_killed']} after partial progress)")
        print("crash: state left by writer kills: "
              + ", ".join(f"{k} {v}" for k, v in sorted(self.crash_class.items())))
        if self.args.power_loss:
            print(f"crash: power loss: {len(self.lost_single)} of {self.n_single} acknowledged one-shard "
                  f"transactions lost (allowed: synchronous=NORMAL), every one of "
                  f"{st['commits_acked'] - self.n_single} logged ones required"
                  + (f", lost e.g. {self.lost_single[:5]}" if self.lost_single else ""))
        print(f"crash: {self.args.rounds} rounds in {el:.1f} s, seed {self.args.seed}, tables {self.args.tables}"
              + (", power loss" if self.args.power_loss else ""))
        print(f"crash: {self.crashes} crashes, {self.violations} violations", flush=True)
        self.errlog.close()
        if self.args.keep or self.violations:
            print(f"crash: files kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return 1 if self.violations else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--tables", type=int, choices=(1, 2), default=2,
                    help="2: transfers recorded in the sharded table xfer (default); 1: as ledger rows "
                         "of acct itself (tests the single-table guarantee alone)")
    ap.add_argument("--power-loss", action="store_true",
                    help="children run the shardvt VFS's power-loss model: a kill also loses every "
                         "unsynced write; -shm files are deleted before reopening")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child_main(args.db)
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    if not SO_PATH.exists():
        print(f"{SO_PATH.name} not found in the repository root: run `make build` first", file=sys.stderr)
        return 2
    h = Harness(args)
    h.run()
    return h.finish()


if __name__ == "__main__":
    sys.exit(main())
