#!/usr/bin/env python3
"""Apply the changes of a NATS JetStream stream to PostgreSQL (libshardvt issue 6).

    python3 examples/nats_to_postgres.py --table orders --nats nats://127.0.0.1:4222 \
        --pg "host=127.0.0.1 port=5432 user=postgres dbname=postgres" [--follow]

The other half of examples/outbox_to_nats.py, which publishes the outbox of the sharded table
`--table` to the stream shardvt_<table>, subject shardvt.<table> (same --stream / --subject
overrides). Needs no SQLite: the PostgreSQL table (same name, or --pg-table) is created from the
columns the relay put in the KV bucket shardvt_schema, with the mapping and the apply rules of
examples/outbox_to_postgres.py (its `Sink`: upsert by primary key, delete by primary key, an
update that changes the key deletes the old key first).

Loop: fetch up to --batch messages from a durable pull consumer (--durable, default `postgres`),
apply them in ONE PostgreSQL transaction together with the new position (below), COMMIT, then ack
the messages in NATS.

POSITION. Table shardvt_nats_position(stream, durable) in PostgreSQL holds the last applied
stream sequence and the last applied outbox position (csn, tn), written in the same transaction
as the rows, so PostgreSQL alone says how far it is. At startup the sink (re)creates its durable
consumer to start at the next stream sequence; the consumer's own ack state is not trusted.

ORDER (per key, and in fact total). One subject, one consumer: messages arrive in stream order,
which is outbox order (the relay publishes one at a time). max_ack_pending = --batch, so the
server hands out one batch at a time. The ways a message could come out of order are closed:
- a sink killed after its PostgreSQL COMMIT leaves the batch unacked; a restarted consumer would
  send NEWER messages while that batch waits out AckWait and then redeliver it after them.
  Re-creating the consumer at the stored position removes the stale batch instead;
- a redelivery during a run (a batch slower than --ack-wait) has a stream sequence at or before
  the position: acked and skipped;
- a message after a gap (the stream lost messages, e.g. limits on the stream) stops the sink with
  an error rather than skipping changes.

DUPLICATES. A change the relay re-published after JetStream's duplicate window is a new message
with an old (csn, tn): skipped. A batch re-applied after a crash is harmless anyway (full row
images), so the effect is exactly once although delivery is at least once.

Not supported: several sink processes on one durable (one at a time, like an outbox consumer).
Needs: nats-py, psycopg 3 (`pip install nats-py "psycopg[binary]"`), a nats-server with JetStream.
Test hook: SINK_CRASH=before_commit:N or after_commit:N kills this process (SIGKILL) during its
N-th batch just before the PostgreSQL COMMIT or just after it (before the NATS acks).
"""
import argparse
import asyncio
import json
import os
import pathlib
import sys

import nats
import psycopg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError, NotFoundError

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from outbox_to_nats import ensure_stream, names, schema_bucket  # noqa: E402
from outbox_to_postgres import Sink, crash_point, table_columns  # noqa: E402

POSITION_DDL = """CREATE TABLE IF NOT EXISTS shardvt_nats_position(
    stream text NOT NULL, durable text NOT NULL,
    stream_seq bigint NOT NULL, csn bigint NOT NULL, tn bigint NOT NULL,
    PRIMARY KEY (stream, durable))"""


class Position:
    """Where PostgreSQL is: last applied stream sequence and outbox position (csn, tn)."""

    def __init__(self, pg, stream, durable):
        self.pg, self.key = pg, (stream, durable)
        pg.execute(POSITION_DDL)
        row = pg.execute("SELECT stream_seq, csn, tn FROM shardvt_nats_position WHERE stream = %s AND durable = %s", self.key).fetchone()
        self.seq, self.csn, self.tn = row or (0, 0, 0)

    def save(self, cur):
        cur.execute(
            "INSERT INTO shardvt_nats_position VALUES (%s, %s, %s, %s, %s) ON CONFLICT (stream, durable) "
            "DO UPDATE SET stream_seq = EXCLUDED.stream_seq, csn = EXCLUDED.csn, tn = EXCLUDED.tn",
            (*self.key, self.seq, self.csn, self.tn),
        )


async def open_consumer(js, stream, subject, durable, start_seq, batch, ack_wait):
    """The durable pull consumer, re-created to deliver from `start_seq` on (see POSITION)."""
    try:
        await js.delete_consumer(stream, durable)
    except NotFoundError:
        pass
    await js.add_consumer(stream, ConsumerConfig(
        durable_name=durable, filter_subject=subject, ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait,
        max_ack_pending=batch, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq))
    return await js.pull_subscribe_bind(durable=durable, stream=stream)


async def make_sink(js, subject, pg, pg_table):
    try:
        entry = await (await schema_bucket(js)).get(subject)
    except KeyNotFoundError:
        sys.exit(f"nats_to_postgres: no schema for {subject} in KV bucket shardvt_schema (run examples/outbox_to_nats.py first)")
    schema = json.loads(entry.value)
    columns, pk = table_columns(schema["table"], schema["columns"])
    sink = Sink(pg, pg_table or schema["table"], columns, pk)
    sink.create()
    return sink


async def run(a):
    stream, subject = names(a.table, a.stream, a.subject)
    nc = await nats.connect(a.nats, name="shardvt-nats-sink")
    js = nc.jetstream()
    await ensure_stream(js, stream, subject)
    pg = psycopg.connect(a.pg, autocommit=True)
    pos = Position(pg, stream, a.durable)
    sub = await open_consumer(js, stream, subject, a.durable, pos.seq + 1, a.batch, a.ack_wait)
    crash = os.environ.get("SINK_CRASH", "")
    sink = None
    batch_no = applied = skipped = 0
    while True:
        try:
            msgs = await sub.fetch(a.batch, timeout=a.poll)
        except TimeoutError:  # nothing to fetch (nats.errors.TimeoutError is one)
            if not a.follow and (await js.stream_info(stream)).state.last_seq <= pos.seq:
                break
            continue
        batch_no += 1
        if sink is None:
            sink = await make_sink(js, subject, pg, a.pg_table)
        with pg.transaction():
            with pg.cursor() as cur:
                for m in msgs:
                    seq = m.metadata.sequence.stream
                    if seq <= pos.seq:  # a redelivery of what PostgreSQL already has
                        continue
                    if seq != pos.seq + 1:
                        sys.exit(f"nats_to_postgres: stream {stream} has no message {pos.seq + 1} (next is {seq}); "
                                 "changes were removed before they were applied")
                    change = json.loads(m.data)
                    src = change["source"]
                    if (src["csn"], src["tn"]) > (pos.csn, pos.tn):
                        sink.apply(cur, change)
                        pos.csn, pos.tn = src["csn"], src["tn"]
                        applied += 1
                    else:  # re-published by the relay after the duplicate window
                        skipped += 1
                    pos.seq = seq
                pos.save(cur)
            crash_point(crash, "before_commit", batch_no)
        crash_point(crash, "after_commit", batch_no)
        for m in msgs:
            await m.ack()
    await nc.flush()  # the server has the last acks
    await nc.close()
    print(f"nats_to_postgres: applied {applied} changes in {batch_no} batches, stream {stream} at {pos.seq} "
          f"({skipped} re-published changes skipped)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", required=True, help="the sharded table the relay publishes")
    ap.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS server URL")
    ap.add_argument("--pg", required=True, help="PostgreSQL conninfo, e.g. 'host=127.0.0.1 port=5432 user=postgres dbname=postgres'")
    ap.add_argument("--pg-table", help="target table (default: the same name)")
    ap.add_argument("--stream", help="JetStream stream (default shardvt_<table>)")
    ap.add_argument("--subject", help="subject (default shardvt.<table>)")
    ap.add_argument("--durable", default="postgres", help="durable consumer name")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--follow", action="store_true", help="keep waiting for messages (else exit once the stream is drained)")
    ap.add_argument("--poll", type=float, default=1.0, help="seconds a fetch waits for messages")
    ap.add_argument("--ack-wait", type=float, default=60.0, help="seconds before JetStream redelivers an unacked message")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
