#!/usr/bin/env bash
# Outbox → PostgreSQL end-to-end test (make outbox-e2e; run_nats.sh is the NATS variant).
#
# Starts a private PostgreSQL server (its own data folder and a free port, listening on
# 127.0.0.1 only), runs tests/outbox_e2e/e2e.py against it (concurrent writers, a consumer killed
# mid-batch and restarted, PostgreSQL must end equal to the sharded table row for row), then
# stops the server and removes the folder (KEEP=1 keeps it).
#
# Installs nothing. Needs: the PostgreSQL server binaries (Debian: apt-get install postgresql;
# found in /usr/lib/postgresql/<version>/bin or via PG_BIN), python3 with apsw and psycopg 3
# (pip install "psycopg[binary]"), and ./libshardvt.so (make build). Server start-up, running as
# a non-root user when root, and clean-up are in lib.sh.
# A server that cannot start FAILS the test (never skipped).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
e2e_begin outbox-e2e
start_postgres
mkdir -p "$work/lite"

python3 "$e2e_here/e2e.py" --pg "$pg_conninfo" --work "$work/lite" --so "$so"
