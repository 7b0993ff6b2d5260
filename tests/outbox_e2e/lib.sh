# Shared by the outbox end-to-end runners (run.sh: outbox → PostgreSQL; run_nats.sh: outbox →
# NATS JetStream → PostgreSQL). Sourced, not run.
#
#   e2e_begin NAME      checks libshardvt.so, python3 + apsw + psycopg; makes the work folder
#                       $work (mode 755) and sets the EXIT trap that stops every server started
#                       here and removes $work (KEEP=1 keeps it)
#   start_postgres      private PostgreSQL: initdb in $work/pg/data, 127.0.0.1 and a free port,
#                       trust auth, fsync=off; sets $pg_conninfo. Needs the server binaries
#                       (Debian package postgresql; /usr/lib/postgresql/<version>/bin or PG_BIN).
#                       PostgreSQL refuses to run as root: as root it runs as the `postgres` user
#                       (made by the Debian package) or, if missing, a system user `shardvt-pg`
#                       created here.
#   start_nats          private nats-server with JetStream: 127.0.0.1, a free port, store in
#                       $work/nats; waits until it says "Server is ready"; sets $nats_url. Needs
#                       nats-server (Debian package nats-server, installed in /usr/sbin, or NATS_SERVER).
#   fail MESSAGE        prints "NAME: FAIL: MESSAGE" and "NAME: 0 passed, 1 failed", exits 1.
#
# Installs nothing. A server that cannot start FAILS the test (never skipped).

e2e_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
e2e_root="$(cd "$e2e_here/../.." && pwd)"
so="$e2e_root/libshardvt.so"
e2e_name=outbox-e2e
pg_bin="" pg_data="" nats_pid=""
run_pg=()

fail() { echo "$e2e_name: FAIL: $*" >&2; echo "$e2e_name: 0 passed, 1 failed"; exit 1; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

e2e_stop() {
    if [[ -n "$nats_pid" ]]; then kill "$nats_pid" 2>/dev/null || true; wait "$nats_pid" 2>/dev/null || true; fi
    if [[ -n "$pg_data" ]]; then "${run_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null 2>&1 || true; fi
    if [[ "${KEEP:-0}" == 1 ]]; then echo "$e2e_name: kept $work"; else rm -rf "$work"; fi
}

e2e_begin() {
    e2e_name="$1"
    [[ -f "$so" ]] || fail "$so not found (run make build)"
    python3 -c 'import apsw, psycopg' 2>/dev/null || fail "python3 needs apsw and psycopg (pip install apsw \"psycopg[binary]\")"
    work="$(mktemp -d "${TMPDIR:-/tmp}/shardvt-$e2e_name.XXXXXX")"
    chmod 755 "$work"
    trap e2e_stop EXIT
}

start_postgres() {
    pg_bin="${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
    [[ -n "$pg_bin" && -x "$pg_bin/initdb" && -x "$pg_bin/pg_ctl" ]] \
        || fail "PostgreSQL server binaries not found (apt-get install postgresql, or set PG_BIN)"
    mkdir -p "$work/pg"
    if [[ "$(id -u)" == 0 ]]; then
        local pg_user=postgres
        if ! id "$pg_user" >/dev/null 2>&1; then
            pg_user=shardvt-pg
            id "$pg_user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$pg_user" \
                || fail "cannot create the system user $pg_user to run PostgreSQL (it refuses root)"
        fi
        chown "$pg_user" "$work/pg"
        run_pg=(runuser -u "$pg_user" --)
    fi
    local port
    port="$(free_port)"
    "${run_pg[@]}" "$pg_bin/initdb" -D "$work/pg/data" -U postgres --auth=trust -E UTF8 >"$work/pg/initdb.log" 2>&1 \
        || { cat "$work/pg/initdb.log" >&2; fail "initdb failed"; }
    pg_data="$work/pg/data"
    "${run_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_data" -l "$work/pg/server.log" -w -t 60 \
        -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
        || { cat "$work/pg/server.log" >&2; fail "the PostgreSQL server did not start"; }
    pg_conninfo="host=127.0.0.1 port=$port user=postgres dbname=postgres"
    echo "$e2e_name: PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"
}

start_nats() {
    local bin="${NATS_SERVER:-$(command -v nats-server || ls /usr/sbin/nats-server /usr/bin/nats-server 2>/dev/null | head -n 1)}"
    [[ -n "$bin" && -x "$bin" ]] || fail "nats-server not found (apt-get install nats-server, or set NATS_SERVER)"
    mkdir -p "$work/nats"
    local port log="$work/nats/server.log"
    port="$(free_port)"
    "$bin" -js -a 127.0.0.1 -p "$port" -sd "$work/nats" >"$log" 2>&1 &
    nats_pid=$!
    local i
    for ((i = 0; i < 200; i++)); do  # up to 20 s
        grep -q "Server is ready" "$log" && break
        kill -0 "$nats_pid" 2>/dev/null || { cat "$log" >&2; nats_pid=""; fail "nats-server exited at startup"; }
        sleep 0.1
    done
    grep -q "Server is ready" "$log" || { cat "$log" >&2; fail "nats-server did not become ready in 20 s"; }
    grep -q "Starting JetStream" "$log" || { cat "$log" >&2; fail "nats-server started without JetStream"; }
    nats_url="nats://127.0.0.1:$port"
    echo "$e2e_name: nats-server $("$bin" --version | awk '{print $2}') with JetStream on 127.0.0.1:$port"
}
