#!/usr/bin/env python3
"""End-to-end outbox pipeline through NATS JetStream: sharded table → examples/outbox_to_nats.py
(relay) → JetStream stream → examples/nats_to_postgres.py (sink) → PostgreSQL.

Run by tests/outbox_e2e/run_nats.sh, which starts a private PostgreSQL server and a private
nats-server with JetStream and passes their addresses. Steps:
  1. create the sharded table of e2e.py (4 shards, outbox=on) and start e2e.py's WRITERS
     (random transactions: inserts, OR REPLACE, updates that move rows between shards,
     deletes, savepoint rollbacks, rolled-back transactions) for WRITE_SECONDS;
  2. meanwhile, at the same time, run
       the relay: killed at its 2nd batch after publishing half of it, at its 3rd batch after
         JetStream acknowledged all of it but before the outbox ack, then twice by SIGKILL at a
         random moment; each time restarted;
       the sink: killed at its 2nd batch before the PostgreSQL COMMIT, at its 3rd batch after the
         COMMIT but before the NATS acks, then twice by SIGKILL at a random moment; restarted;
     then both keep running until the writers are done, and are stopped (SIGTERM);
  3. drain: the relay until the outbox is empty, then the sink until it has applied the whole
     stream;
  4. check: PostgreSQL holds exactly the sharded table's rows, value for value; the outbox lag is
     0; JetStream dropped the relay's re-published changes as duplicates, so the stream holds each
     change once, in outbox order; the sink's consumer has nothing pending.
Prints `outbox-e2e-nats: N passed, N failed`; exit status 1 on any failure.
"""
import argparse
import asyncio
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import threading
import time

import nats
import psycopg
from nats.js.api import AckPolicy, ConsumerConfig

import e2e  # tests/outbox_e2e/e2e.py: table, writers, connect

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
RELAY = REPO_ROOT / "examples" / "outbox_to_nats.py"
SINK = REPO_ROOT / "examples" / "nats_to_postgres.py"
TABLE = e2e.TABLE
STREAM, SUBJECT = f"shardvt_{TABLE}", f"shardvt.{TABLE}"
WRITE_SECONDS = 9.0  # long enough for both kill schedules to happen while the writers write
STEP_TIMEOUT = 60.0  # a crash hook that never fires fails the test instead of hanging it
NAME = "outbox-e2e-nats"


def relay_cmd(a, follow):
    cmd = [sys.executable, str(RELAY), "--db", str(pathlib.Path(a.work) / "app.db"), "--table", TABLE,
           "--nats", a.nats, "--ext", a.so, "--batch", "40"]
    return cmd + (["--follow", "--poll", "0.05"] if follow else [])


def sink_cmd(a, follow):
    cmd = [sys.executable, str(SINK), "--table", TABLE, "--nats", a.nats, "--pg", a.pg, "--batch", "30", "--poll", "0.2"]
    return cmd + (["--follow"] if follow else [])


class Runner:
    """Runs one program's kill schedule, restarting it after each death; keeps what it printed."""

    def __init__(self, name, cmd, hook_var, writers):
        self.name, self.cmd, self.hook_var, self.writers = name, cmd, hook_var, writers
        self.results = []  # (step, exit status, writers were running when it died)
        self.output = []

    def start(self, crash=None):
        env = dict(os.environ)
        if crash:
            env[self.hook_var] = crash
        return subprocess.Popen(self.cmd, env=env, stdout=subprocess.PIPE, text=True)

    def step(self, label, crash=None, kill_after=None):
        p = self.start(crash)
        try:
            if kill_after is not None:
                time.sleep(kill_after)
                p.send_signal(signal.SIGKILL)
            p.wait(timeout=STEP_TIMEOUT)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = "timeout"
        writing = any(w.poll() is None for w in self.writers)
        self.output.append(p.stdout.read())
        self.results.append((f"{self.name} killed {label}", rc, writing))

    def run(self, schedule, writers_done):
        for label, crash, kill_after in schedule:
            self.step(label, crash, kill_after)
        p = self.start()  # then keep it running, unkilled, until the writers are done
        writers_done.wait()
        p.terminate()
        self.output.append(p.communicate()[0])


def stream_contents(nats_url):
    """(outbox positions (csn, tn) in stream order, the sink consumer's info)."""

    async def read():
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        last = (await js.stream_info(STREAM)).state.last_seq
        sub = await js.pull_subscribe(SUBJECT, stream=STREAM, config=ConsumerConfig(ack_policy=AckPolicy.NONE))
        positions = []
        while len(positions) < last:
            for m in await sub.fetch(500, timeout=5):
                src = json.loads(m.data)["source"]
                positions.append((src["csn"], src["tn"]))
        info = await js.consumer_info(STREAM, "postgres")
        await nc.close()
        return positions, info

    return asyncio.run(read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", required=True)
    ap.add_argument("--nats", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--so", default=str(REPO_ROOT / "libshardvt.so"))
    ap.add_argument("--writer", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    work = pathlib.Path(a.work)
    db = work / "app.db"
    if a.writer is not None:
        e2e.WRITE_SECONDS = WRITE_SECONDS
        e2e.writer(db, a.so, a.writer)
        return 0

    check = e2e.Checks(NAME)

    work.mkdir(parents=True, exist_ok=True)
    conn = e2e.connect(db, a.so)
    conn.execute(e2e.DDL)
    with psycopg.connect(a.pg, autocommit=True) as pg:
        pg.execute(f"DROP TABLE IF EXISTS {TABLE}, shardvt_nats_position")
    writer_cmd = [sys.executable, __file__, "--pg", a.pg, "--nats", a.nats, "--work", a.work, "--so", a.so]
    writers = [subprocess.Popen(writer_cmd + ["--writer", str(i)]) for i in range(e2e.WRITERS)]
    time.sleep(0.5)

    rnd = random.Random(11)
    relay = Runner("relay", relay_cmd(a, follow=True), "RELAY_CRASH", writers)
    sink = Runner("sink", sink_cmd(a, follow=True), "SINK_CRASH", writers)
    writers_done = threading.Event()
    threads = [
        threading.Thread(target=relay.run, args=([
            ("mid-batch (2nd batch, half of it published)", "mid_publish:2", None),
            ("after JetStream acked its 3rd batch, before the outbox ack", "before_ack:3", None),
            ("at a random moment (1)", None, 0.8 + rnd.random()),
            ("at a random moment (2)", None, 0.8 + rnd.random()),
        ], writers_done)),
        threading.Thread(target=sink.run, args=([
            ("mid-batch before the PostgreSQL COMMIT (2nd batch)", "before_commit:2", None),
            ("after the PostgreSQL COMMIT, before the NATS acks (3rd batch)", "after_commit:3", None),
            ("at a random moment (1)", None, 0.8 + rnd.random()),
            ("at a random moment (2)", None, 0.8 + rnd.random()),
        ], writers_done)),
    ]
    for t in threads:
        t.start()
    for w in writers:
        w.wait()
    writers_done.set()
    for t in threads:
        t.join()
    for label, rc, _ in relay.results + sink.results:
        check(label, rc == -signal.SIGKILL, f"exit {rc}")
    during = [label for label, _, writing in relay.results + sink.results if not writing]
    check("every kill happened while the writers were running", not during, f"after the writers: {during}")
    check("writers finished", all(w.returncode == 0 for w in writers), str([w.returncode for w in writers]))

    drain = subprocess.run(relay_cmd(a, follow=False), stdout=subprocess.PIPE, text=True, timeout=300)
    print(drain.stdout, end="")
    check("final relay drain", drain.returncode == 0, f"exit {drain.returncode}")
    drain = subprocess.run(sink_cmd(a, follow=False), stdout=subprocess.PIPE, text=True, timeout=300)
    print(drain.stdout, end="")
    check("final sink drain", drain.returncode == 0, f"exit {drain.returncode}")

    e2e.check_equal_and_drained(check, conn, a.pg, "nats", "outbox lag of the relay is 0 and acknowledged changes were purged")
    with psycopg.connect(a.pg) as pg:
        (position,) = pg.execute("SELECT stream_seq FROM shardvt_nats_position WHERE durable = 'postgres'").fetchone() or (None,)

    dropped = sum(int(line.split(" dropped ")[1].split()[0]) for out in relay.output for line in out.splitlines() if " dropped " in line and "batch" in line)
    check(f"JetStream dropped re-published changes as duplicates ({dropped})", dropped > 0, "the relay reported none")
    positions, info = stream_contents(a.nats)
    ordered = all(x < y for x, y in zip(positions, positions[1:]))
    check(f"the stream holds each change once, in outbox order ({len(positions)} messages)", ordered and len(positions) > 0,
          f"{len(positions)} messages, {len(set(positions))} distinct")
    check("the sink applied the whole stream and its consumer has nothing pending",
          position == len(positions) and info.num_pending == 0 and info.num_ack_pending == 0,
          f"position {position}, stream {len(positions)}, pending {info.num_pending}, ack pending {info.num_ack_pending}")
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
