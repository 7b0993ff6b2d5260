#!/usr/bin/env bash
# Golden SQL tests: run each tests/golden/*.sql through the real sqlite3 CLI and compare
# stdout+stderr with tests/golden/<name>.expected.
#
#   bash tests/golden/run.sh                  run all
#   bash tests/golden/run.sh 02_writes        run the files whose name contains 02_writes
#   UPDATE_EXPECTED=1 bash tests/golden/run.sh   rewrite the .expected files (review the diff!)
#
# Each file runs in a fresh temp dir holding a copy of libshardvt.so, as
#   cd $tmp && sqlite3 -batch test.db < file.sql
# so the files load the extension the way users do: `.load ./libshardvt`.
# The temp dir path is replaced by $TMP in the output before comparing.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
so="$root/libshardvt.so"
SQLITE3="${SQLITE3:-sqlite3}"

if [[ ! -f "$so" ]]; then
    echo "golden: $so not found (run make build)" >&2
    exit 1
fi

passed=0
failed=0
failed_names=()

for sql in "$here"/*.sql; do
    name="$(basename "$sql" .sql)"
    if (($#)); then
        match=0
        for pat in "$@"; do [[ "$name" == *"$pat"* ]] && match=1; done
        ((match)) || continue
    fi
    expected="$here/$name.expected"
    tmp="$(mktemp -d "${TMPDIR:-/tmp}/shardvt-golden.XXXXXX")"
    tmp_real="$(cd "$tmp" && pwd -P)"
    cp "$so" "$tmp/libshardvt.so"
    actual="$(cd "$tmp" && timeout 60 "$SQLITE3" -batch test.db < "$sql" 2>&1; echo "[exit $?]")"
    # Normalise: temp dir paths (both spellings) become $TMP.
    actual="${actual//"$tmp_real"/\$TMP}"
    actual="${actual//"$tmp"/\$TMP}"
    rm -rf "$tmp"

    if [[ "${UPDATE_EXPECTED:-}" == 1 ]]; then
        printf '%s\n' "$actual" > "$expected"
        echo "updated $name.expected"
        passed=$((passed + 1))
        continue
    fi
    if [[ ! -f "$expected" ]]; then
        echo "FAIL $name: no $name.expected (run with UPDATE_EXPECTED=1 and review it)"
        printf '%s\n' "$actual" | sed 's/^/    /'
        failed=$((failed + 1)); failed_names+=("$name")
        continue
    fi
    if diff_out="$(diff -u --label "$name.expected" --label "$name.actual" "$expected" <(printf '%s\n' "$actual"))"; then
        echo "ok   $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name"
        printf '%s\n' "$diff_out"
        failed=$((failed + 1)); failed_names+=("$name")
    fi
done

((failed)) && echo "failed: ${failed_names[*]}"
echo "golden: $passed passed, $failed failed"
((failed == 0))
