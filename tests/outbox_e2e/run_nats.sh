#!/usr/bin/env bash
# Outbox → NATS JetStream → PostgreSQL end-to-end test (make outbox-e2e-nats; part of make outbox-e2e).
#
# Starts a private PostgreSQL server and a private nats-server with JetStream (each with its own
# folder and a free port on 127.0.0.1 only), runs tests/outbox_e2e/e2e_nats.py against them
# (concurrent writers; the relay examples/outbox_to_nats.py and the sink
# examples/nats_to_postgres.py both killed mid-batch and restarted; PostgreSQL must end equal to
# the sharded table row for row), then stops both servers and removes the folder (KEEP=1 keeps it).
#
# Installs nothing. Needs: the PostgreSQL server binaries (Debian package postgresql, or PG_BIN),
# nats-server (Debian package nats-server, or NATS_SERVER), python3 with apsw, psycopg 3 and
# nats-py, and ./libshardvt.so (make build). Server start-up and clean-up are in lib.sh.
# A server that cannot start FAILS the test (never skipped).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_begin outbox-e2e-nats
python3 -c 'import nats' 2>/dev/null || fail "python3 needs nats-py (pip install nats-py)"
start_postgres
start_nats
mkdir -p "$work/lite"

python3 "$e2e_here/e2e_nats.py" --pg "$pg_conninfo" --nats "$nats_url" --work "$work/lite" --so "$so"
