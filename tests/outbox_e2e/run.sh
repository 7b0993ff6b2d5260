#!/usr/bin/env bash
# Outbox → PostgreSQL end-to-end test (make outbox-e2e).
#
# Starts a private PostgreSQL server (its own data folder and a free port, listening on
# 127.0.0.1 only), runs tests/outbox_e2e/e2e.py against it (concurrent writers, a consumer killed
# mid-batch and restarted, PostgreSQL must end equal to the sharded table row for row), then
# stops the server and removes the folder (KEEP=1 keeps it).
#
# Installs nothing. Needs: the PostgreSQL server binaries (Debian: apt-get install postgresql;
# found in /usr/lib/postgresql/<version>/bin or via PG_BIN), python3 with apsw and psycopg 3
# (pip install "psycopg[binary]"), and ./libshardvt.so (make build). PostgreSQL refuses to run
# as root: as root the server runs as the `postgres` user (created by the Debian package) or,
# if that user does not exist, as a system user `shardvt-pg` created here.
# A server that cannot start FAILS the test (never skipped).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
so="$root/libshardvt.so"

fail() { echo "outbox-e2e: FAIL: $*" >&2; echo "outbox-e2e: 0 passed, 1 failed"; exit 1; }

[[ -f "$so" ]] || fail "$so not found (run make build)"
pg_bin="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
[[ -n "$pg_bin" && -x "$pg_bin/initdb" && -x "$pg_bin/pg_ctl" ]] \
    || fail "PostgreSQL server binaries not found (apt-get install postgresql, or set PG_BIN)"
python3 -c 'import apsw, psycopg' 2>/dev/null || fail "python3 needs apsw and psycopg (pip install apsw \"psycopg[binary]\")"

work="$(mktemp -d "${TMPDIR:-/tmp}/shardvt-outbox-e2e.XXXXXX")"
chmod 755 "$work"
mkdir -p "$work/pg" "$work/lite"
run_pg=()
if [[ "$(id -u)" == 0 ]]; then
    pg_user=postgres
    if ! id "$pg_user" >/dev/null 2>&1; then
        pg_user=shardvt-pg
        id "$pg_user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$pg_user" \
            || fail "cannot create the system user $pg_user to run PostgreSQL (it refuses root)"
    fi
    chown "$pg_user" "$work/pg"
    run_pg=(runuser -u "$pg_user" --)
fi
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

stop() {
    "${run_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    if [[ "${KEEP:-0}" == 1 ]]; then echo "outbox-e2e: kept $work"; else rm -rf "$work"; fi
}
trap stop EXIT

"${run_pg[@]}" "$pg_bin/initdb" -D "$work/pg/data" -U postgres --auth=trust -E UTF8 >"$work/pg/initdb.log" 2>&1 \
    || { cat "$work/pg/initdb.log" >&2; fail "initdb failed"; }
"${run_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -w -t 60 \
    -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
    || { cat "$work/pg/server.log" >&2; fail "the PostgreSQL server did not start"; }
echo "outbox-e2e: PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"

python3 "$here/e2e.py" --pg "host=127.0.0.1 port=$port user=postgres dbname=postgres" --work "$work/lite" --so "$so"
