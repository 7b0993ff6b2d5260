#!/usr/bin/env python3
"""Run a golden .sql file against NATIVE tables, to check what a sharded table should answer.

    python3 tests/golden/native_oracle.py tests/golden/02_writes.sql | diff - tests/golden/02_writes.expected

Every `CREATE VIRTUAL TABLE x USING sharded(...)` becomes `CREATE TABLE x(...)` without the
name=value options, and `.load` lines are dropped; the file then runs through the same sqlite3 CLI
the same way run.sh runs it. Lines using shardvt_* functions will fail here ("no such function"):
only the differences on ordinary SQL matter.
"""
import os
import re
import subprocess
import sys
import tempfile

OPTION = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*=")


def split_args(body):
    """Split on top-level commas (not inside parentheses or quotes)."""
    parts, depth, quote, cur = [], 0, None, ""
    for ch in body:
        if quote:
            cur += ch
            if ch == quote:
                quote = None
            continue
        if ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    parts.append(cur)
    return parts


def to_native(sql):
    out, i = [], 0
    pat = re.compile(r"CREATE\s+VIRTUAL\s+TABLE\s+(\S+)\s+USING\s+sharded\s*\(", re.I)
    while True:
        m = pat.search(sql, i)
        if not m:
            out.append(sql[i:])
            break
        out.append(sql[i:m.start()])
        depth, j = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(sql[j], 0)
            j += 1
        parts = split_args(sql[m.end():j - 1])
        args = [a for a in parts if not OPTION.match(a)]
        # Keep the line count so "error near line N" matches the sharded run.
        lost_lines = sum(a.count("\n") for a in parts if OPTION.match(a))
        out.append(f"CREATE TABLE {m.group(1)}({','.join(args).rstrip()})" + "\n" * lost_lines)
        i = j
    return "\n".join("" if l.startswith(".load") else l for l in "".join(out).split("\n"))


def main():
    sql = to_native(open(sys.argv[1]).read())
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run([os.environ.get("SQLITE3", "sqlite3"), "-batch", "test.db"], input=sql,
                             cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = res.stdout.replace(os.path.realpath(tmp), "$TMP").replace(tmp, "$TMP")
    sys.stdout.write(out.rstrip("\n") + f"\n[exit {res.returncode}]\n")


if __name__ == "__main__":
    main()
