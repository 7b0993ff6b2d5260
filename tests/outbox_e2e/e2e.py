#!/usr/bin/env python3
"""End-to-end outbox pipeline: sharded table → examples/outbox_to_postgres.py → PostgreSQL.

Run by tests/outbox_e2e/run.sh, which starts a private PostgreSQL server and passes its
conninfo. Steps:
  1. create a sharded table with outbox=on (4 shards, a BLOB and a REAL column);
  2. start WRITERS processes that run random transactions concurrently (inserts, updates that
     move rows between shards, deletes, OR REPLACE, savepoint rollbacks, rolled-back
     transactions);
  3. meanwhile run the consumer and kill it: at its 2nd batch before the PostgreSQL COMMIT, at
     its 3rd batch after the COMMIT but before the ack, and twice with SIGKILL at a random
     moment; restart it each time;
  4. when the writers are done, drain with a last consumer run;
  5. check: PostgreSQL holds exactly the sharded table's rows, value for value, and the
     consumer's lag is 0.
Prints `outbox-e2e: N passed, N failed`; exit status 1 on any failure.
"""
import argparse
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import apsw
import psycopg

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
CONSUMER = REPO_ROOT / "examples" / "outbox_to_postgres.py"
TABLE = "orders"
DDL = (
    f"CREATE VIRTUAL TABLE {TABLE} USING sharded(id INTEGER PRIMARY KEY, customer TEXT NOT NULL, "
    "amount REAL, note TEXT DEFAULT 'new', payload BLOB, qty INTEGER, shard_key=customer, shards=4, outbox=on)"
)
WRITERS = 3
WRITE_SECONDS = 6.0  # writers run this long, so every consumer crash happens while they write
IDS = 400


def connect(db, so):
    conn = apsw.Connection(str(db))
    conn.enable_load_extension(True)
    conn.load_extension(str(so))
    conn.setbusytimeout(20000)
    return conn


def writer(db, so, seed):
    conn = connect(db, so)
    rnd = random.Random(seed)
    deadline = time.monotonic() + WRITE_SECONDS
    n = 0
    while time.monotonic() < deadline:
        n += 1
        try:
            write_one(conn, rnd, seed, n)
        except apsw.BusyError:
            # SQLITE_BUSY (a lock-order conflict with another writer, see README "Many
            # connections"): roll back and retry, as any SQLite application does.
            try:
                conn.execute("ROLLBACK")
            except apsw.Error:
                pass
    conn.close()


def write_one(conn, rnd, seed, n):
    """One random transaction of a writer."""
    conn.execute("BEGIN")
    for _ in range(rnd.randint(1, 5)):
        rid = rnd.randint(1, IDS)
        cust = f"cust-{rnd.randint(0, 60)}"
        r = rnd.random()
        if r < 0.35:
            conn.execute(
                f"INSERT OR REPLACE INTO {TABLE}(id, customer, amount, payload, qty) VALUES (?, ?, ?, ?, ?)",
                (rid, cust, rnd.random() * 1000, bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 8))), n),
            )
        elif r < 0.45:
            conn.execute(f"INSERT OR IGNORE INTO {TABLE}(id, customer, qty) VALUES (?, ?, ?)", (rid, cust, n))
        elif r < 0.65:
            conn.execute(f"UPDATE {TABLE} SET qty = coalesce(qty, 0) + 1, note = ? WHERE id = ?", (f"w{seed}-{n}", rid))
        elif r < 0.8:
            conn.execute(f"UPDATE {TABLE} SET customer = ?, amount = amount / 3 WHERE id = ?", (cust, rid))  # moves
        elif r < 0.9:
            conn.execute("SAVEPOINT sp")
            conn.execute(f"DELETE FROM {TABLE} WHERE id = ?", (rid,))
            conn.execute("ROLLBACK TO sp" if rnd.random() < 0.5 else "RELEASE sp")
        else:
            conn.execute(f"DELETE FROM {TABLE} WHERE id = ?", (rid,))
    conn.execute("ROLLBACK" if rnd.random() < 0.1 else "COMMIT")


def run_consumer(db, so, pg, crash=None, kill_after=None, follow=True):
    env = dict(os.environ)
    if crash:
        env["OUTBOX_CRASH"] = crash
    args = [sys.executable, str(CONSUMER), "--db", str(db), "--table", TABLE, "--pg", pg, "--ext", str(so), "--batch", "40"]
    if follow:
        args += ["--follow", "--poll", "0.05"]
    p = subprocess.Popen(args, env=env)
    if kill_after is not None:
        time.sleep(kill_after)
        p.send_signal(signal.SIGKILL)
        p.wait()
        return p.returncode
    try:
        return p.wait(timeout=300)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return "timeout"


def check_equal_and_drained(check, conn, pg_dsn, consumer, what):
    """The end state: PostgreSQL equals the sharded table row for row, and `consumer` has no lag
    left with every acknowledged change purged (shared with e2e_nats.py)."""
    lite_rows = [tuple(r) for r in conn.execute(f"SELECT id, customer, amount, note, payload, qty FROM {TABLE} ORDER BY id")]
    with psycopg.connect(pg_dsn) as pg:
        pg_rows = [
            (i, c, am, no, bytes(pl) if pl is not None else None, q)
            for i, c, am, no, pl, q in pg.execute(f"SELECT id, customer, amount, note, payload, qty FROM {TABLE} ORDER BY id")
        ]
    diff = [(x, y) for x, y in zip(lite_rows, pg_rows) if x != y][:3]
    check(
        f"PostgreSQL equals the sharded table row for row ({len(lite_rows)} rows)",
        lite_rows == pg_rows and len(lite_rows) > 0,
        f"sqlite {len(lite_rows)} rows, postgres {len(pg_rows)} rows, first differences {diff}",
    )
    (stats,), = conn.execute("SELECT shardvt_outbox_stats(?)", (TABLE,))
    lag = {c["name"]: c["lag"] for c in json.loads(stats)["consumers"]}
    check(what, lag == {consumer: 0} and json.loads(stats)["retained"] == 0, stats)


class Checks:
    """Named pass/fail checks printed as `<name>: ok|FAIL <what>`; `summary()` prints the tally
    and returns the exit status (shared with e2e_nats.py)."""

    def __init__(self, name):
        self.name, self.passed, self.failed = name, 0, 0

    def __call__(self, what, ok, detail=""):
        print(f"{self.name}: {'ok  ' if ok else 'FAIL'} {what}{(': ' + detail) if detail and not ok else ''}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1

    def summary(self):
        print(f"{self.name}: {self.passed} passed, {self.failed} failed", flush=True)
        return 1 if self.failed else 0

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--so", default=str(REPO_ROOT / "libshardvt.so"))
    ap.add_argument("--writer", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    work = pathlib.Path(a.work)
    db = work / "app.db"
    if a.writer is not None:
        writer(db, a.so, a.writer)
        return 0

    check = Checks("outbox-e2e")

    work.mkdir(parents=True, exist_ok=True)
    conn = connect(db, a.so)
    conn.execute(DDL)
    with psycopg.connect(a.pg, autocommit=True) as pg:
        pg.execute(f"DROP TABLE IF EXISTS {TABLE}")
    writers = [subprocess.Popen([sys.executable, __file__, "--pg", a.pg, "--work", a.work, "--so", a.so, "--writer", str(i)]) for i in range(WRITERS)]
    time.sleep(0.5)
    rc = run_consumer(db, a.so, a.pg, crash="before_commit:2")
    check("consumer killed mid-batch before the PostgreSQL COMMIT", rc == -signal.SIGKILL, f"exit {rc}")
    rc = run_consumer(db, a.so, a.pg, crash="after_commit:3")
    check("consumer killed after the PostgreSQL COMMIT, before the ack", rc == -signal.SIGKILL, f"exit {rc}")
    rnd = random.Random(7)
    for k in range(2):
        rc = run_consumer(db, a.so, a.pg, kill_after=0.8 + rnd.random())
        check(f"consumer killed at a random moment ({k + 1})", rc == -signal.SIGKILL, f"exit {rc}")
    writes_ongoing = any(w.poll() is None for w in writers)
    check("the consumer crashes happened while writers were running", writes_ongoing)
    for w in writers:
        w.wait()
    check("writers finished", all(w.returncode == 0 for w in writers), str([w.returncode for w in writers]))
    rc = run_consumer(db, a.so, a.pg, follow=False)
    check("final drain", rc == 0, f"exit {rc}")

    check_equal_and_drained(check, conn, a.pg, "postgres", "consumer lag is 0 and acknowledged changes were purged")
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
