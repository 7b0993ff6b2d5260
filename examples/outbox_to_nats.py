#!/usr/bin/env python3
"""Relay the outbox of a sharded table to a NATS JetStream stream (libshardvt issue 6).

    python3 examples/outbox_to_nats.py --db app.db --table orders --nats nats://127.0.0.1:4222 [--follow]

The other half is examples/nats_to_postgres.py (stream → PostgreSQL); examples/README.md shows
both. Names (override with --stream / --subject, e.g. when two databases have an `orders`):

    stream  shardvt_<table>   one stream per table, created if missing (file storage,
                              duplicate window --dup-window, default 120 s)
    subject shardvt.<table>   ONE subject: the stream keeps every change of the table in one order
    KV      shardvt_schema    key <subject>: the table's columns as SQLite declares them
                              ({"table": T, "columns": [[name, declared type, pk], ...]}), put at
                              startup so a sink can create its table without opening SQLite

Loop: export a batch (`shardvt_outbox_export`, outbox consumer `--consumer`, default `nats`);
publish each change (the envelope JSON, unchanged) and wait for JetStream's ack before the next
one; once the whole batch is acknowledged by JetStream, acknowledge it in the outbox
(`shardvt_outbox_ack`).

Invariants:
- ORDER. The stream holds the changes in outbox order `(csn, tn)`, without gaps: a change is
  published only after the previous one is stored, and a failed publish ends the run before any
  later change is sent (the next run starts again at the outbox cursor).
- DUPLICATES. A crash between publishing and the outbox ack re-exports and re-publishes the
  batch. Every message carries `Nats-Msg-Id: <table>:<csn>.<tn>` (from the envelope's
  `source`), a position that is unique over the table's life, so JetStream drops the re-publish
  within its duplicate window (the relay prints how many). Not `<shard>:<seq>`: a shard's outbox
  `seq` restarts after a purge empties it (sql/outbox_shard.sql), and a reused id would make
  JetStream drop a NEW change as a duplicate. A re-publish after the window (relay down longer)
  lands twice; examples/nats_to_postgres.py skips changes at or before its last applied position.
- Delivery is at least once into the stream, exactly once in effect with that sink.

Not supported: several relays on one stream (one process per outbox consumer name, as the
outbox requires), changes larger than the server's max_payload (1 MB by default: the publish
fails, the relay stops at that change). Throughput is one round trip per change (about 7,000
changes/s on loopback); pipelining the publishes would let a failed one leave a gap.

Needs: apsw, nats-py (`pip install nats-py`), libshardvt.so (`make build`), a nats-server with
JetStream (`nats-server -js`).
Test hook: RELAY_CRASH=mid_publish:N or before_ack:N kills this process (SIGKILL) during its N-th
batch after publishing half of it, or after JetStream acknowledged all of it (before the outbox ack).
"""
import argparse
import asyncio
import json
import os
import pathlib
import re
import signal
import sys

import nats
from nats.js.api import StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SCHEMA_BUCKET = "shardvt_schema"
DUP_WINDOW = 120.0  # seconds: JetStream's default duplicate window


def names(table, stream=None, subject=None):
    """(stream, subject) of a table: given ones, else shardvt_<table> and shardvt.<table>."""
    if (stream is None or subject is None) and not re.fullmatch(r"[A-Za-z0-9_-]+", table):
        sys.exit(f"outbox_to_nats: table name {table!r} cannot be a NATS name; give --stream and --subject")
    return stream or f"shardvt_{table}", subject or f"shardvt.{table}"


def msg_id(table, change):
    """The change's stable id: its table-wide outbox position (see DUPLICATES above)."""
    src = change["source"]
    return f"{table}:{src['csn']}.{src['tn']}"


def crash_point(spec, where, batch_no):
    if spec == f"{where}:{batch_no}":
        os.kill(os.getpid(), signal.SIGKILL)


async def ensure_stream(js, stream, subject, dup_window=DUP_WINDOW):
    """Create the stream if missing; refuse one that does not capture `subject`."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        await js.add_stream(name=stream, subjects=[subject], storage=StorageType.FILE, duplicate_window=dup_window)
        return
    if subject not in (info.config.subjects or []):
        sys.exit(f"outbox_to_nats: stream {stream} exists but does not capture {subject} (subjects {info.config.subjects})")


async def schema_bucket(js):
    try:
        return await js.key_value(SCHEMA_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(bucket=SCHEMA_BUCKET)


async def relay(a, lite, info):
    stream, subject = names(a.table, a.stream, a.subject)
    nc = await nats.connect(a.nats, name="shardvt-outbox-relay")
    js = nc.jetstream(timeout=a.timeout)
    await ensure_stream(js, stream, subject, a.dup_window)
    kv = await schema_bucket(js)
    await kv.put(subject, json.dumps({"table": a.table, "columns": info}).encode())
    crash = os.environ.get("RELAY_CRASH", "")
    batch_no = published = duplicates = 0
    while True:
        (text,), = lite.execute("SELECT shardvt_outbox_export(?, ?, ?)", (a.table, a.consumer, a.batch))
        changes = json.loads(text)
        if not changes:
            if not a.follow:
                break
            await asyncio.sleep(a.poll)
            continue
        batch_no += 1
        dups = 0
        for i, change in enumerate(changes):
            if i == len(changes) // 2:
                crash_point(crash, "mid_publish", batch_no)
            body = json.dumps(change, separators=(",", ":")).encode()
            ack = await js.publish(subject, body, stream=stream, headers={"Nats-Msg-Id": msg_id(a.table, change)})
            dups += bool(ack.duplicate)
        crash_point(crash, "before_ack", batch_no)
        lite.execute("SELECT shardvt_outbox_ack(?, ?, ?)", (a.table, a.consumer, changes[-1]["cursor"]))
        published += len(changes) - dups
        duplicates += dups
        if dups:
            print(f"outbox_to_nats: batch {batch_no}: JetStream dropped {dups} of {len(changes)} changes as duplicates (re-published after a restart)", flush=True)
    await nc.close()
    print(f"outbox_to_nats: published {published} changes in {batch_no} batches to {stream} ({duplicates} duplicates dropped)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", required=True, help="SQLite database holding the sharded table")
    ap.add_argument("--table", required=True)
    ap.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS server URL")
    ap.add_argument("--stream", help="JetStream stream (default shardvt_<table>)")
    ap.add_argument("--subject", help="subject (default shardvt.<table>)")
    ap.add_argument("--dup-window", type=float, default=DUP_WINDOW, help="duplicate window in seconds of a stream created here")
    ap.add_argument("--consumer", default="nats", help="outbox consumer name (its own cursor)")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--follow", action="store_true", help="keep polling (else exit once the outbox is drained)")
    ap.add_argument("--poll", type=float, default=0.2, help="seconds between polls with --follow")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a JetStream ack")
    ap.add_argument("--ext", default=str(REPO_ROOT / "libshardvt.so"))
    a = ap.parse_args()

    import apsw  # here, not at the top: examples/nats_to_postgres.py imports this module without SQLite

    lite = apsw.Connection(a.db)
    lite.enable_load_extension(True)
    lite.load_extension(a.ext)
    lite.setbusytimeout(10000)
    info = [list(r) for r in lite.execute("SELECT name, type, pk FROM pragma_table_info(?) ORDER BY cid", (a.table,))]
    if not info:
        sys.exit(f"outbox_to_nats: no table {a.table}")
    asyncio.run(relay(a, lite, info))


if __name__ == "__main__":
    main()
