#!/usr/bin/env python3
"""(Re)compute the expected results of the project's own .slt files on
NATIVE SQLite, so expected output is never written by hand.

    python3 tests/slt/gen_expected.py [--check] tests/slt/basic_hash.slt ...

Each file is run on a plain SQLite database after this translation:
  CREATE VIRTUAL TABLE t USING sharded(<defs>, key=value...)
      -> CREATE TABLE t(<defs>)            (the key=value options dropped)
  SELECT shardvt_create_index('t', 'i', 'defs', U)
      -> CREATE [UNIQUE] INDEX i ON t(defs)
  SELECT shardvt_drop_index('t', 'i')   -> DROP INDEX i
Every `query` record gets its `----` section replaced by the native result
(rendered exactly as run_slt.py renders it); every `statement ok|error`
record is checked against native behaviour.  With --check nothing is
written; the exit status tells whether the files are up to date.
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_slt  # noqa: E402
import apsw  # noqa: E402

_OPT_RE = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*=")


def to_native(sql):
    out = []
    for st in run_slt.split_statements(sql):
        toks = run_slt.strip_semicolons(run_slt.tokenize(st))
        ups = [t.up for t in toks]
        if ups[:3] == ["CREATE", "VIRTUAL", "TABLE"] and "USING" in ups:
            u = ups.index("USING")
            name = st[toks[3].start:toks[u - 1].end]
            lp = u + 2
            rp = run_slt.matching_paren(toks, lp)
            parts = run_slt.split_top_commas(toks[lp + 1:rp])
            defs = [st[p[0].start:p[-1].end] for p in parts]
            defs = [d for d in defs if not _OPT_RE.match(d)]
            out.append("CREATE TABLE %s(%s)" % (name, ", ".join(defs)))
            continue
        m = re.match(r"(?is)^\s*SELECT\s+shardvt_create_index\s*\((.*)\)\s*;?\s*$", st)
        if m:
            args = [apsw_value(a) for a in split_args(m.group(1))]
            uniq = len(args) > 3 and int(args[3])
            out.append("CREATE %sINDEX \"%s\" ON \"%s\"(%s)"
                       % ("UNIQUE " if uniq else "", args[1], args[0], args[2]))
            continue
        m = re.match(r"(?is)^\s*SELECT\s+shardvt_drop_index\s*\((.*)\)\s*;?\s*$", st)
        if m:
            args = [apsw_value(a) for a in split_args(m.group(1))]
            out.append("DROP INDEX \"%s\"" % args[1])
            continue
        out.append(st)
    return ";\n".join(out)


def split_args(text):
    toks = run_slt.tokenize(text)
    return [text[p[0].start:p[-1].end] for p in run_slt.split_top_commas(toks)]


_lit_db = apsw.Connection(":memory:")


def apsw_value(expr):
    for row in _lit_db.execute("SELECT " + expr):
        return row[0]


def process(path, check):
    with open(path) as f:
        text = f.read()
    lines = text.split("\n")
    # blocks: (start, end) line index ranges of non-blank runs
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "":
            i += 1
            continue
        j = i
        while j < len(lines) and lines[j].strip() != "":
            j += 1
        blocks.append((i, j))
        i = j
    conn = apsw.Connection(":memory:")
    threshold, problems = 8, []
    new_lines = list(lines)
    # replace from the end so indexes stay valid
    replacements = []
    for (a, b) in blocks:
        block = [(k + 1, lines[k]) for k in range(a, b)]
        rec = run_slt.parse_block(block)
        if rec is None or not run_slt.record_applies(rec):
            continue
        if rec.kind == "halt":
            break
        if rec.kind == "hash-threshold":
            threshold = int(rec.args[0])
            continue
        if rec.kind == "statement":
            expect_error = rec.args[:1] == ["error"]
            try:
                for _ in conn.cursor().execute(to_native(rec.sql)):
                    pass
                err = None
            except apsw.Error as e:
                err = e
            if expect_error != (err is not None):
                problems.append("%s:%d: native says %s" % (
                    path, rec.line, "error: %s" % err if err else "ok"))
            continue
        if rec.kind != "query":
            continue
        rows, err, _ = run_slt.run_query(conn, to_native(rec.sql))
        if err is not None:
            problems.append("%s:%d: native query error: %s" % (path, rec.line, err))
            continue
        rendered = [[run_slt.render(v, rec.types[c]) for c, v in enumerate(r)] for r in rows]
        if rows and len(rows[0]) != len(rec.types):
            problems.append("%s:%d: query has %d columns, type string %r"
                            % (path, rec.line, len(rows[0]), rec.types))
            continue
        if rec.sort == "rowsort":
            rendered.sort()
        values = sorted(v for r in rendered for v in r) if rec.sort == "valuesort" \
            else [v for r in rendered for v in r]
        if threshold > 0 and len(values) > threshold:
            import hashlib
            h = hashlib.md5()
            for v in values:
                h.update(v.encode("latin-1") + b"\n")
            values = ["%d values hashing to %s" % (len(values), h.hexdigest())]
        # locate the ---- line inside the block
        sep = next((k for k in range(a, b) if lines[k].rstrip() == "----"), None)
        if sep is None:
            replacements.append((b, b, ["----"] + values))
        else:
            replacements.append((sep + 1, b, values))
    for (s, e, vals) in reversed(replacements):
        new_lines[s:e] = vals
    new_text = "\n".join(new_lines)
    changed = new_text != text
    if not check and changed:
        with open(path, "w") as f:
            f.write(new_text)
    return changed, problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    bad = False
    for path in args.files:
        changed, problems = process(path, args.check)
        for p in problems:
            print(p)
        bad = bad or bool(problems) or (args.check and changed)
        print("%s: %s" % (path, ("out of date" if args.check else "updated")
                          if changed else "up to date"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
