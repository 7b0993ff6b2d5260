#!/usr/bin/env python3
"""Drain the outbox of a sharded table into PostgreSQL (libshardvt issue 6).

    python3 examples/outbox_to_postgres.py --db app.db --table events \
        --pg "host=127.0.0.1 port=5432 user=postgres dbname=postgres" [--follow]

Loop: export a batch of changes (`shardvt_outbox_export`), apply them to the PostgreSQL table in
ONE PostgreSQL transaction (insert/update = upsert by primary key, delete = delete by primary
key; an update that changes the key deletes the old key first), COMMIT it, and only then
acknowledge the batch (`shardvt_outbox_ack`). A crash between the PostgreSQL COMMIT and the ack
re-delivers the batch; applying it again leaves the same rows (every change carries the full
row image), so the effect is exactly once although delivery is at least once.

The PostgreSQL table (same name by default, `--pg-table` to change) is created if missing, with
columns from the sharded table's declaration: INTEGER → bigint, REAL → double precision,
BLOB → bytea (the outbox sends blobs as base64), anything else → text. The table needs a
primary key: its INTEGER PRIMARY KEY (the rowid) or declared PRIMARY KEY columns.

Needs: apsw, psycopg 3 (`pip install "psycopg[binary]"`), libshardvt.so (`make build`).
examples/nats_to_postgres.py imports `Sink`, `table_columns` and `crash_point` from here (it has
no SQLite, so apsw is imported in `main` only).
Test hook: OUTBOX_CRASH=before_commit:N or after_commit:N kills this process (SIGKILL) during
its N-th batch just before the PostgreSQL COMMIT or just after it (before the ack).
"""
import argparse
import base64
import json
import os
import pathlib
import signal
import sys
import time

import psycopg
from psycopg import sql

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def pg_type(decl):
    """PostgreSQL type and value kind for a SQLite declared type (SQLite's affinity rules)."""
    d = (decl or "").upper()
    if "INT" in d:
        return "bigint", "int"
    if any(w in d for w in ("CHAR", "CLOB", "TEXT")):
        return "text", "text"
    if "BLOB" in d:
        return "bytea", "blob"
    if any(w in d for w in ("REAL", "FLOA", "DOUB")):
        return "double precision", "real"
    return "text", "any"  # untyped or NUMERIC: any value, kept as its text


class Sink:
    """The PostgreSQL side: the target table and how one change is applied."""

    def __init__(self, pg, table, columns, pk):
        self.pg, self.table, self.columns, self.pk = pg, table, columns, pk
        self.kinds = {name: kind for name, _, kind in columns}
        names = [c[0] for c in columns]
        t = sql.Identifier(table)
        cols = sql.SQL(", ").join(sql.Identifier(n) for n in names)
        marks = sql.SQL(", ").join(sql.Placeholder() for _ in names)
        rest = [n for n in names if n not in pk]
        sets = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in rest)
        conflict = sql.SQL(", ").join(sql.Identifier(n) for n in pk)
        action = sql.SQL("DO UPDATE SET {}").format(sets) if rest else sql.SQL("DO NOTHING")
        self.upsert = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {}").format(t, cols, marks, conflict, action)
        where = sql.SQL(" AND ").join(sql.SQL("{} = {}").format(sql.Identifier(n), sql.Placeholder()) for n in pk)
        self.delete = sql.SQL("DELETE FROM {} WHERE {}").format(t, where)

    def create(self):
        defs = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(ty)) for n, ty, _ in self.columns)
        pk = sql.SQL(", ").join(sql.Identifier(n) for n in self.pk)
        with self.pg.transaction():
            self.pg.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))").format(sql.Identifier(self.table), defs, pk))

    def value(self, name, v):
        kind = self.kinds[name]
        if v is None:
            return None
        if kind == "blob" and isinstance(v, str):
            return base64.b64decode(v)
        if kind == "text" and not isinstance(v, str):
            return json.dumps(v) if isinstance(v, (dict, list)) else str(v)
        if kind == "any" and not isinstance(v, str):
            return str(v)
        return v

    def key(self, image):
        return [self.value(n, image[n]) for n in self.pk]

    def apply(self, cur, change):
        before, after = change["before"], change["after"]
        if change["op"] == "d" or (change["op"] == "u" and self.key(before) != self.key(after)):
            cur.execute(self.delete, self.key(before))
        if change["op"] in ("c", "u"):
            cur.execute(self.upsert, [self.value(n, after[n]) for n, _, _ in self.columns])


def describe(lite, table):
    """(name, pg type, kind) per column and the primary key column names."""
    info = list(lite.execute(f'SELECT name, type, pk FROM pragma_table_info(\'{table.replace(chr(39), chr(39) * 2)}\') ORDER BY cid'))
    return table_columns(table, info)


def table_columns(table, info):
    """`describe` from the (name, declared type, pk) rows of SQLite's pragma_table_info."""
    if not info:
        sys.exit(f"outbox_to_postgres: no table {table}")
    columns = [(name, *pg_type(decl)) for name, decl, _ in info]
    pk = [name for name, _, p in sorted(info, key=lambda r: r[2]) if p]
    if not pk:
        sys.exit(f"outbox_to_postgres: {table} has no PRIMARY KEY; give it one (e.g. id INTEGER PRIMARY KEY)")
    return columns, pk


def crash_point(spec, where, batch_no):
    if spec == f"{where}:{batch_no}":
        os.kill(os.getpid(), signal.SIGKILL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", required=True, help="SQLite database holding the sharded table")
    ap.add_argument("--table", required=True)
    ap.add_argument("--pg", required=True, help="PostgreSQL conninfo, e.g. 'host=127.0.0.1 port=5432 user=postgres dbname=postgres'")
    ap.add_argument("--pg-table", help="target table (default: the same name)")
    ap.add_argument("--consumer", default="postgres", help="outbox consumer name (its own cursor)")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--follow", action="store_true", help="keep polling (else exit once the outbox is drained)")
    ap.add_argument("--poll", type=float, default=0.2, help="seconds between polls with --follow")
    ap.add_argument("--ext", default=str(REPO_ROOT / "libshardvt.so"))
    a = ap.parse_args()

    import apsw  # here, not at the top: examples/nats_to_postgres.py imports this module without SQLite

    lite = apsw.Connection(a.db)
    lite.enable_load_extension(True)
    lite.load_extension(a.ext)
    lite.setbusytimeout(10000)
    columns, pk = describe(lite, a.table)
    pg = psycopg.connect(a.pg, autocommit=True)
    sink = Sink(pg, a.pg_table or a.table, columns, pk)
    sink.create()
    crash = os.environ.get("OUTBOX_CRASH", "")
    batch_no = applied = 0
    while True:
        (text,), = lite.execute("SELECT shardvt_outbox_export(?, ?, ?)", (a.table, a.consumer, a.batch))
        changes = json.loads(text)
        if not changes:
            if not a.follow:
                break
            time.sleep(a.poll)
            continue
        batch_no += 1
        with pg.transaction():
            with pg.cursor() as cur:
                for c in changes:
                    sink.apply(cur, c)
            crash_point(crash, "before_commit", batch_no)
        crash_point(crash, "after_commit", batch_no)
        lite.execute("SELECT shardvt_outbox_ack(?, ?, ?)", (a.table, a.consumer, changes[-1]["cursor"]))
        applied += len(changes)
    print(f"outbox_to_postgres: applied {applied} changes in {batch_no} batches", flush=True)


if __name__ == "__main__":
    main()
