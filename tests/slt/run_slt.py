#!/usr/bin/env python3
"""sqllogictest runner for libshardvt.

Runs files in SQLite's classic sqllogictest format through apsw, optionally
with the shardvt extension loaded, and optionally rewriting the DDL of the
test scripts so that every ordinary table becomes a `sharded` virtual table.

    python3 tests/slt/run_slt.py [--ext ./libshardvt.so]
        [--mode native|hash|prefix|asis] [-v] [--max-failures N] PATH...

PATH is a .test/.slt file or a directory (searched recursively).

Modes
  native  run the scripts unchanged (proves the runner against SQLite)
  asis    same as native, but meant for the project's own *.slt files that
          create sharded tables themselves (extension must be loaded)
  hash    rewrite CREATE TABLE -> CREATE VIRTUAL TABLE ... USING sharded(
          ..., strategy=hash, shards=4), CREATE/DROP INDEX -> shardvt_*_index
  prefix  like hash, with strategy=prefix, prefix_len=1
Default mode: `asis` for *.slt files; for *.test files `hash` if --ext is
given, else `native`.

Output: one line per file, then a summary; the last line is always
`slt: N passed, N failed, N skipped`.  Exit status 1 if anything failed.
"""

import argparse
import hashlib
import os
import re
import shutil
import sys
import tempfile

try:
    import apsw
except ImportError:  # pragma: no cover
    sys.stderr.write("run_slt.py needs the apsw module: pip install apsw\n")
    sys.exit(2)

ENGINE = "sqlite"
MOCK = "<mock>"   # --mock: Python stand-in for the extension (tests the runner)
SORT_MODES = ("nosort", "rowsort", "valuesort")


# --------------------------------------------------------------------------
# Script parsing
# --------------------------------------------------------------------------

class Record:
    __slots__ = ("kind", "line", "conds", "sql", "types", "sort", "label",
                 "expected", "has_results", "args")

    def __init__(self, kind, line):
        self.kind = kind          # statement|query|halt|hash-threshold|control|unknown
        self.line = line          # 1-based line number of the command line
        self.conds = []           # [("skipif"|"onlyif", engine)]
        self.sql = ""
        self.types = ""
        self.sort = "nosort"
        self.label = None
        self.expected = []
        self.has_results = False
        self.args = []


def parse_script(text):
    """Split a script into Records.  Records are separated by blank lines."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    records = []
    i, n = 0, len(lines)
    while i < n:
        # skip blank lines
        while i < n and lines[i].strip() == "":
            i += 1
        if i >= n:
            break
        # gather the block up to the next blank line
        block = []
        while i < n and lines[i].strip() != "":
            block.append((i + 1, lines[i]))
            i += 1
        rec = parse_block(block)
        if rec is not None:
            records.append(rec)
    return records


def parse_block(block):
    j = 0
    conds = []
    # leading comment lines
    while j < len(block) and block[j][1].lstrip().startswith("#"):
        j += 1
    while j < len(block):
        lineno, line = block[j]
        if line.lstrip().startswith("#"):
            j += 1
            continue
        toks = line.split("#", 1)[0].split()
        if toks and toks[0] in ("skipif", "onlyif"):
            conds.append((toks[0], toks[1].lower() if len(toks) > 1 else ""))
            j += 1
            continue
        break
    if j >= len(block):
        return None
    lineno, line = block[j]
    toks = line.split()
    cmd = toks[0]
    body = [l for (_, l) in block[j + 1:]]
    if cmd == "statement":
        rec = Record("statement", lineno)
        rec.args = toks[1:]
        rec.sql = "\n".join(l for l in body if not l.lstrip().startswith("#"))
    elif cmd == "query":
        rec = Record("query", lineno)
        rec.types = toks[1] if len(toks) > 1 else ""
        rest = toks[2:]
        if rest and rest[0] in SORT_MODES:
            rec.sort = rest[0]
            rest = rest[1:]
        if rest:
            rec.label = rest[0]
        sql_lines = []
        k = 0
        while k < len(body) and body[k].rstrip() != "----":
            if not body[k].lstrip().startswith("#"):
                sql_lines.append(body[k])
            k += 1
        rec.sql = "\n".join(sql_lines)
        if k < len(body):
            rec.has_results = True
            rec.expected = [l.rstrip() for l in body[k + 1:]]
    elif cmd == "halt":
        rec = Record("halt", lineno)
    elif cmd == "hash-threshold":
        rec = Record("hash-threshold", lineno)
        rec.args = toks[1:]
    elif cmd == "control":
        rec = Record("control", lineno)
        rec.args = toks[1:]
    else:
        rec = Record("unknown", lineno)
        rec.args = toks
    rec.conds = conds
    return rec


def record_applies(rec):
    for kind, eng in rec.conds:
        if kind == "skipif" and eng == ENGINE:
            return False
        if kind == "onlyif" and eng != ENGINE:
            return False
    return True


# --------------------------------------------------------------------------
# Value rendering (as SQLite's own sqllogictest engine does)
# --------------------------------------------------------------------------

_conv_db = apsw.Connection(":memory:")
_int_cache = {}
_real_cache = {}
_text_cache = {}
_NONPRINT = re.compile(r"[^\x20-\x7e]")


def _wrap32(v):
    v &= 0xFFFFFFFF
    return v - 0x100000000 if v >= 0x80000000 else v


def _sql_scalar(sql, v):
    for row in _conv_db.execute(sql, (v,)):
        return row[0]
    return None


def _printable(s):
    if isinstance(s, (bytes, bytearray, memoryview)):
        b = bytes(s)
    else:
        b = s.encode("utf-8", "surrogatepass")
    nul = b.find(b"\x00")
    if nul >= 0:
        b = b[:nul]
    if not b:
        return "(empty)"
    out = b.decode("latin-1")
    if _NONPRINT.search(out):
        out = _NONPRINT.sub("@", out)
    return out


def render(value, t):
    if value is None:
        return "NULL"
    if t == "I":
        if isinstance(value, int):
            return str(_wrap32(value))
        key = (type(value), value if not isinstance(value, memoryview) else bytes(value))
        r = _int_cache.get(key)
        if r is None:
            v = _sql_scalar("SELECT CAST(? AS INTEGER)", value)
            r = str(_wrap32(v if v is not None else 0))
            _int_cache[key] = r
        return r
    if t == "R":
        # SQLite's own printf (sqlite3_snprintf "%.3f" of column_double): it
        # differs from C/Python for huge values (16 significant digits).
        key = (type(value), value if not isinstance(value, memoryview) else bytes(value))
        r = _real_cache.get(key)
        if r is None:
            if isinstance(value, int) and abs(value) < 10 ** 15:
                r = "%.3f" % value
            else:
                r = _sql_scalar("SELECT printf('%.3f', CAST(? AS REAL))", value)
            _real_cache[key] = r
        return r
    # 'T' (and anything else): the value's text form
    if isinstance(value, str):
        if value == "":
            return "(empty)"
        if value.isascii() and value.isprintable() and "\x00" not in value:
            return value
        return _printable(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        r = _text_cache.get(value)
        if r is None:
            r = _sql_scalar("SELECT CAST(? AS TEXT)", value)
            _text_cache[value] = r
        return r
    return _printable(value)


# --------------------------------------------------------------------------
# SQL tokenizer (just enough for DDL rewriting)
# --------------------------------------------------------------------------

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<lcomment>--[^\n]*)
  | (?P<bcomment>/\*.*?(?:\*/|\Z))
  | (?P<str>'(?:[^']|'')*'?)
  | (?P<qid>"(?:[^"]|"")*"?|\[[^\]]*\]?|`(?:[^`]|``)*`?)
  | (?P<word>[A-Za-z_\x80-\uffff][A-Za-z0-9_$\x80-\uffff]*)
  | (?P<num>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)
  | (?P<op>\|\||<<|>>|<=|>=|==|!=|<>|.)
""", re.VERBOSE | re.DOTALL)


class Tok:
    __slots__ = ("kind", "text", "start", "end")

    def __init__(self, kind, text, start, end):
        self.kind, self.text, self.start, self.end = kind, text, start, end

    @property
    def up(self):
        return self.text.upper() if self.kind == "word" else self.text

    def __repr__(self):
        return "Tok(%s,%r)" % (self.kind, self.text)


def tokenize(sql):
    toks = []
    for m in _TOKEN_RE.finditer(sql):
        kind = m.lastgroup
        if kind in ("ws", "lcomment", "bcomment"):
            continue
        toks.append(Tok(kind, m.group(), m.start(), m.end()))
    return toks


def unquote(text):
    if len(text) >= 2 and text[0] in "\"`[" and text[-1] in "\"`]":
        inner = text[1:-1]
        if text[0] == '"':
            inner = inner.replace('""', '"')
        elif text[0] == "`":
            inner = inner.replace("``", "`")
        return inner
    return text


def ident(tok):
    """Normalised (unquoted, lower-case) name of an identifier token."""
    return unquote(tok.text).lower()


def sql_str(s):
    return "'" + s.replace("'", "''") + "'"


def strip_semicolons(toks):
    while toks and toks[-1].text == ";":
        toks = toks[:-1]
    return toks


def matching_paren(toks, i):
    """toks[i] is '('; return index of matching ')' or -1."""
    depth = 0
    for k in range(i, len(toks)):
        t = toks[k].text
        if toks[k].kind == "op":
            if t == "(":
                depth += 1
            elif t == ")":
                depth -= 1
                if depth == 0:
                    return k
    return -1


def split_top_commas(toks):
    parts, cur, depth = [], [], 0
    for t in toks:
        if t.kind == "op" and t.text == "(":
            depth += 1
        elif t.kind == "op" and t.text == ")":
            depth -= 1
        if depth == 0 and t.kind == "op" and t.text == ",":
            parts.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur:
        parts.append(cur)
    return parts


def parse_qualified_name(toks, i):
    """Parse [schema.]name at toks[i]; return (name_tok, next_index)."""
    if i + 2 < len(toks) and toks[i + 1].text == "." and toks[i + 1].kind == "op":
        return toks[i + 2], i + 3
    if i < len(toks):
        return toks[i], i + 1
    return None, i


# --------------------------------------------------------------------------
# DDL rewriting for the sharded modes
# --------------------------------------------------------------------------

class Action:
    """What to do with a statement: run `sql`, or skip it / treat as ok."""
    __slots__ = ("kind", "sql", "note", "on_success")

    def __init__(self, kind, sql=None, note=None, on_success=None):
        self.kind = kind            # run | skip_trigger | noop
        self.sql = sql
        self.note = note
        self.on_success = on_success


class Rewriter:
    def __init__(self, mode):
        self.mode = mode
        self.sharded = set()        # sharded table names (lower-case)
        self.indexes = {}           # index name -> table name (both lower)
        self.index_sql_table = {}   # index name -> table name as written
        self.dropped_triggers = {}  # trigger name -> table name
        self.kept_native = []
        self.logs = []

    # ---- helpers ---------------------------------------------------------
    def table_options(self, name, key_text):
        dirname = "shards_" + re.sub(r"[^A-Za-z0-9_]", "_", unquote(name))
        if self.mode == "prefix":
            return ("shard_key=%s, strategy=prefix, prefix_len=1, dir='%s'"
                    % (key_text, dirname))
        return ("shard_key=%s, strategy=hash, shards=4, dir='%s'"
                % (key_text, dirname))

    # ---- entry point -----------------------------------------------------
    def rewrite(self, sql):
        toks = strip_semicolons(tokenize(sql))
        if len(toks) < 2 or toks[0].up not in ("CREATE", "DROP", "REINDEX"):
            return Action("run", sql)
        # exactly one statement? (a ';' at top level other than the trailing
        # ones means several statements; trigger bodies are handled below)
        first = toks[0].up
        if first == "CREATE":
            k = 1
            unique = False
            temp = False
            if toks[k].up in ("TEMP", "TEMPORARY"):
                temp = True
                k += 1
            if toks[k].up == "UNIQUE":
                unique = True
                k += 1
            what = toks[k].up if k < len(toks) else ""
            if what == "TABLE":
                if self._has_top_semicolon(toks):
                    return Action("run", sql)
                return self._create_table(sql, toks, k + 1, temp)
            if what == "INDEX":
                if self._has_top_semicolon(toks):
                    return Action("run", sql)
                return self._create_index(sql, toks, k + 1, unique)
            if what == "TRIGGER":
                return self._create_trigger(sql, toks, k + 1)
            return Action("run", sql)
        if first == "DROP":
            if self._has_top_semicolon(toks):
                return Action("run", sql)
            what = toks[1].up
            if what == "INDEX":
                return self._drop_index(sql, toks)
            if what == "TRIGGER":
                return self._drop_trigger(sql, toks)
            if what == "TABLE":
                return self._drop_table(sql, toks)
            return Action("run", sql)
        if first == "REINDEX":
            if self._has_top_semicolon(toks):
                return Action("run", sql)
            name_tok, _ = parse_qualified_name(toks, 1)
            if name_tok is not None:
                nm = ident(name_tok)
                if nm in self.sharded or nm in self.indexes:
                    return Action("noop", note="REINDEX %s on sharded table: no-op" % name_tok.text)
            return Action("run", sql)
        return Action("run", sql)

    @staticmethod
    def _has_top_semicolon(toks):
        return any(t.kind == "op" and t.text == ";" for t in toks)

    # ---- CREATE TABLE ------------------------------------------------------
    def _create_table(self, sql, toks, k, temp):
        ifne = ""
        if k + 2 < len(toks) and toks[k].up == "IF" and toks[k + 1].up == "NOT" \
                and toks[k + 2].up == "EXISTS":
            ifne = "IF NOT EXISTS "
            k += 3
        name_start = k
        name_tok, k = parse_qualified_name(toks, k)
        if name_tok is None:
            return Action("run", sql)
        name_text = sql[toks[name_start].start:name_tok.end]
        if temp:
            return self._native(sql, "CREATE TEMP TABLE %s" % name_tok.text)
        if k >= len(toks) or toks[k].text != "(":
            # CREATE TABLE ... AS SELECT
            return self._native(sql, "CREATE TABLE %s AS SELECT" % name_tok.text)
        close = matching_paren(toks, k)
        if close < 0:
            return Action("run", sql)
        tail = [t.up for t in toks[close + 1:]]
        if "WITHOUT" in tail:
            return self._native(sql, "CREATE TABLE %s WITHOUT ROWID" % name_tok.text)
        if tail:
            # STRICT or something unknown: leave native
            return self._native(sql, "CREATE TABLE %s ... %s" % (name_tok.text, " ".join(tail)))
        parts = split_top_commas(toks[k + 1:close])
        if not parts:
            return Action("run", sql)
        pk = None
        uniq = None
        first_col = None
        defs = []
        for part in parts:
            if not part:
                return Action("run", sql)
            defs.append(sql[part[0].start:part[-1].end])
            head = part[0].up if part[0].kind == "word" else None
            p = part
            if head == "CONSTRAINT" and len(part) > 2:
                p = part[2:]
                head = p[0].up if p[0].kind == "word" else None
            if head in ("PRIMARY", "UNIQUE", "CHECK", "FOREIGN"):
                if head in ("PRIMARY", "UNIQUE"):
                    lp = next((idx for idx, t in enumerate(p) if t.text == "("), None)
                    if lp is not None:
                        rp = matching_paren(p, lp)
                        cols = split_top_commas(p[lp + 1:rp])
                        if len(cols) == 1 and cols[0]:
                            col = cols[0][0].text
                            if head == "PRIMARY" and pk is None:
                                pk = col
                            elif head == "UNIQUE" and uniq is None:
                                uniq = col
                continue
            # column definition
            col = part[0].text
            if first_col is None:
                first_col = col
            depth = 0
            for idx, t in enumerate(part[1:], 1):
                if t.text == "(":
                    depth += 1
                elif t.text == ")":
                    depth -= 1
                elif depth == 0 and t.kind == "word":
                    if t.up == "PRIMARY" and idx + 1 < len(part) and part[idx + 1].up == "KEY":
                        if pk is None:
                            pk = col
                    elif t.up == "UNIQUE":
                        if uniq is None:
                            uniq = col
        key = pk or uniq or first_col
        if key is None:
            return Action("run", sql)
        new = "CREATE VIRTUAL TABLE %s%s USING sharded(%s, %s)" % (
            ifne, name_text, ", ".join(defs), self.table_options(name_tok.text, key))
        tname = ident(name_tok)

        def ok():
            self.sharded.add(tname)
        return Action("run", new, on_success=ok)

    def _native(self, sql, what):
        def ok():
            self.kept_native.append(what)
        return Action("run", sql, note="kept native: " + what, on_success=ok)

    # ---- CREATE / DROP INDEX ----------------------------------------------
    def _create_index(self, sql, toks, k, unique):
        ifne = False
        if k + 2 < len(toks) and toks[k].up == "IF" and toks[k + 1].up == "NOT" \
                and toks[k + 2].up == "EXISTS":
            ifne = True
            k += 3
        iname_tok, k = parse_qualified_name(toks, k)
        if iname_tok is None or k >= len(toks) or toks[k].up != "ON":
            return Action("run", sql)
        tname_tok, k = parse_qualified_name(toks, k + 1)
        if tname_tok is None or ident(tname_tok) not in self.sharded:
            return Action("run", sql)
        if k >= len(toks) or toks[k].text != "(":
            return Action("run", sql)
        close = matching_paren(toks, k)
        if close < 0:
            return Action("run", sql)
        if close + 1 < len(toks):
            # partial index (WHERE ...): not supported by the rewrite; the
            # extension will reject a native CREATE INDEX on a virtual table
            self.logs.append("partial index left as is: %s" % iname_tok.text)
            return Action("run", sql)
        iname = ident(iname_tok)
        if ifne and iname in self.indexes:
            return Action("noop", note="CREATE INDEX IF NOT EXISTS %s: exists" % iname_tok.text)
        defs = sql[toks[k + 1].start:toks[close - 1].end] if close > k + 1 else ""
        new = "SELECT shardvt_create_index(%s, %s, %s, %d)" % (
            sql_str(unquote(tname_tok.text)), sql_str(unquote(iname_tok.text)),
            sql_str(defs), 1 if unique else 0)
        tname = ident(tname_tok)

        def ok():
            self.indexes[iname] = tname
            self.index_sql_table[iname] = unquote(tname_tok.text)
        return Action("run", new, on_success=ok)

    def _drop_index(self, sql, toks):
        k = 2
        if k + 1 < len(toks) and toks[k].up == "IF" and toks[k + 1].up == "EXISTS":
            k += 2
        iname_tok, k = parse_qualified_name(toks, k)
        if iname_tok is None:
            return Action("run", sql)
        iname = ident(iname_tok)
        if iname not in self.indexes:
            return Action("run", sql)   # native semantics (IF EXISTS -> no-op)
        new = "SELECT shardvt_drop_index(%s, %s)" % (
            sql_str(self.index_sql_table[iname]), sql_str(unquote(iname_tok.text)))

        def ok():
            self.indexes.pop(iname, None)
            self.index_sql_table.pop(iname, None)
        return Action("run", new, on_success=ok)

    # ---- triggers ------------------------------------------------------------
    def _create_trigger(self, sql, toks, k):
        if k + 2 < len(toks) and toks[k].up == "IF" and toks[k + 1].up == "NOT" \
                and toks[k + 2].up == "EXISTS":
            k += 3
        trig_tok, k = parse_qualified_name(toks, k)
        if trig_tok is None:
            return Action("run", sql)
        # find "ON table" before BEGIN
        while k < len(toks) and toks[k].up not in ("ON", "BEGIN"):
            k += 1
        if k >= len(toks) or toks[k].up != "ON":
            return Action("run", sql)
        tname_tok, _ = parse_qualified_name(toks, k + 1)
        if tname_tok is None or ident(tname_tok) not in self.sharded:
            return Action("run", sql)
        self.dropped_triggers[ident(trig_tok)] = ident(tname_tok)
        return Action("skip_trigger",
                      note="dropped trigger %s ON %s" % (trig_tok.text, tname_tok.text))

    def _drop_trigger(self, sql, toks):
        k = 2
        if k + 1 < len(toks) and toks[k].up == "IF" and toks[k + 1].up == "EXISTS":
            k += 2
        trig_tok, _ = parse_qualified_name(toks, k)
        if trig_tok is not None and ident(trig_tok) in self.dropped_triggers:
            name = ident(trig_tok)
            return Action("skip_trigger", note="dropped DROP TRIGGER %s" % trig_tok.text,
                          on_success=lambda: self.dropped_triggers.pop(name, None))
        return Action("run", sql)

    # ---- DROP TABLE ------------------------------------------------------------
    def _drop_table(self, sql, toks):
        k = 2
        if k + 1 < len(toks) and toks[k].up == "IF" and toks[k + 1].up == "EXISTS":
            k += 2
        tname_tok, _ = parse_qualified_name(toks, k)
        if tname_tok is None:
            return Action("run", sql)
        tname = ident(tname_tok)
        if tname not in self.sharded:
            return Action("run", sql)

        def ok():
            self.sharded.discard(tname)
            for i in [i for i, t in self.indexes.items() if t == tname]:
                self.indexes.pop(i, None)
                self.index_sql_table.pop(i, None)
            for tr in [tr for tr, t in self.dropped_triggers.items() if t == tname]:
                self.dropped_triggers.pop(tr, None)
        return Action("run", sql, on_success=ok)


# --------------------------------------------------------------------------
# Running one file
# --------------------------------------------------------------------------

class FileResult:
    def __init__(self, path):
        self.path = path
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.dropped_triggers = 0
        self.kept_native = 0
        self.failures = []      # (line, sql, expected, got)
        self.notes = []


def execute(conn, sql):
    cur = conn.cursor()
    return list(cur.execute(sql))


def run_query(conn, sql):
    """Run a query the way SQLite's sqllogictest engine does: an error while
    preparing is an error, but an error while stepping (e.g. sum() integer
    overflow) just ends the result set (slt_sqlite.c ignores step errors).
    Returns (rows, error_or_None, tolerated_step_error_or_None)."""
    rows = []
    try:
        for row in conn.cursor().execute(sql):
            rows.append(row)
        return rows, None, None
    except Exception as e:
        err = e
    # did it prepare?  EXPLAIN prepares without running.
    try:
        stmts = [t for t in split_statements(sql)]
        for st in stmts:
            list(conn.cursor().execute("EXPLAIN " + st))
    except Exception:
        return rows, err, None
    return rows, None, err


def split_statements(sql):
    """Split SQL text into complete statements (trigger bodies kept whole)."""
    toks = tokenize(sql)
    out, start = [], 0
    for t in toks:
        if t.kind == "op" and t.text == ";":
            piece = sql[start:t.end]
            if apsw.complete(piece):
                piece = piece.strip()
                if piece.strip("; \n\t"):
                    out.append(piece)
                start = t.end
    piece = sql[start:].strip()
    if piece:
        out.append(piece)
    return out


def run_file(path, ext, mode, verbose, fail_budget):
    res = FileResult(path)
    with open(path, "r", encoding="utf-8", errors="surrogateescape") as f:
        text = f.read()
    records = parse_script(text)
    tmpdir = tempfile.mkdtemp(prefix="slt_")
    conn = None
    try:
        conn = apsw.Connection(os.path.join(tmpdir, "test.db"))
        if ext == MOCK:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            import mock_sharded
            mock_sharded.install(conn)
        elif ext:
            conn.enable_load_extension(True)
            conn.load_extension(ext)
        rewriter = Rewriter(mode) if mode in ("hash", "prefix") else None
        threshold = 8
        rowwise = False
        labels = {}
        for rec in records:
            if fail_budget is not None and fail_budget[0] <= 0:
                break
            if not record_applies(rec):
                if rec.kind in ("statement", "query"):
                    res.skipped += 1
                continue
            if rec.kind == "halt":
                break
            if rec.kind == "hash-threshold":
                try:
                    threshold = int(rec.args[0])
                except (IndexError, ValueError):
                    pass
                continue
            if rec.kind == "control":
                if rec.args[:1] == ["resultmode"] and len(rec.args) > 1:
                    rowwise = rec.args[1] == "rowwise"
                continue
            if rec.kind == "unknown":
                res.notes.append("%s:%d: unknown record %r ignored"
                                 % (path, rec.line, " ".join(rec.args)))
                continue

            sql = rec.sql
            if rec.kind == "statement":
                expect_error = bool(rec.args) and rec.args[0] == "error"
                if rewriter:
                    stmts = split_statements(sql)
                    actions = [rewriter.rewrite(st) for st in stmts] if len(stmts) > 1 \
                        else [rewriter.rewrite(sql)]
                else:
                    actions = [Action("run", sql)]
                if all(a.kind == "skip_trigger" for a in actions):
                    res.skipped += 1
                    for a in actions:
                        res.dropped_triggers += 1
                        res.notes.append("%s:%d: %s" % (path, rec.line, a.note))
                        if a.on_success:
                            a.on_success()
                    continue
                err = None
                ran = []
                for a in actions:
                    if a.kind == "skip_trigger":
                        res.dropped_triggers += 1
                        res.notes.append("%s:%d: %s" % (path, rec.line, a.note))
                        if a.on_success:
                            a.on_success()
                        continue
                    if a.kind == "noop":
                        res.notes.append("%s:%d: %s" % (path, rec.line, a.note))
                        continue
                    ran.append(a.sql)
                    try:
                        execute(conn, a.sql)
                    except Exception as e:  # apsw.Error and friends
                        err = e
                        break
                    if a.on_success:
                        a.on_success()
                    if a.note:
                        res.notes.append("%s:%d: %s" % (path, rec.line, a.note))
                        res.kept_native += 1
                if expect_error == (err is not None):
                    res.passed += 1
                else:
                    res.failed += 1
                    if fail_budget is not None:
                        fail_budget[0] -= 1
                    exp = ["statement error"] if expect_error else ["statement ok"]
                    got = ["error: %s" % err] if err else ["ok (no error)"]
                    res.failures.append((rec.line, ";\n".join(ran) or sql, exp, got))
                continue

            action = rewriter.rewrite(sql) if rewriter else Action("run", sql)
            if action.kind == "skip_trigger":   # a query that is a trigger: odd
                res.skipped += 1
                res.dropped_triggers += 1
                res.notes.append("%s:%d: %s" % (path, rec.line, action.note))
                continue
            if action.kind == "noop":
                res.notes.append("%s:%d: %s" % (path, rec.line, action.note))
                res.passed += 1
                continue

            # query
            rows, err, tolerated = run_query(conn, action.sql)
            if tolerated is not None:
                res.notes.append("%s:%d: error while stepping ends the result set "
                                 "(as in SQLite's runner): %s" % (path, rec.line, tolerated))
            if err is not None:
                res.failed += 1
                if fail_budget is not None:
                    fail_budget[0] -= 1
                res.failures.append((rec.line, action.sql, rec.expected[:8],
                                     ["error: %s" % err]))
                continue
            if action.on_success:
                action.on_success()
            ok, expected, got = check_query(rec, rows, threshold, rowwise, labels)
            if ok:
                res.passed += 1
            else:
                res.failed += 1
                if fail_budget is not None:
                    fail_budget[0] -= 1
                res.failures.append((rec.line, action.sql, expected, got))
    except Exception as e:
        res.failed += 1
        if fail_budget is not None:
            fail_budget[0] -= 1
        res.failures.append((0, "<setup>", [], ["error: %s" % e]))
    finally:
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass
        shutil.rmtree(tmpdir, ignore_errors=True)
    return res


def check_query(rec, rows, threshold, rowwise, labels):
    types = rec.types
    ncol = len(types)
    for row in rows:
        if len(row) != ncol:
            return False, rec.expected[:8], [
                "wrong number of columns: got %d, expected %d" % (len(row), ncol)]
    rendered = [[render(v, types[i]) for i, v in enumerate(row)] for row in rows]
    if rec.sort == "rowsort":
        rendered.sort()
    if rec.sort == "valuesort":
        values = sorted(v for r in rendered for v in r)
    else:
        values = [v for r in rendered for v in r]
    nvalues = len(values)
    md5 = None
    if threshold > 0 and nvalues > threshold:
        h = hashlib.md5()
        for v in values:
            h.update(v.encode("latin-1"))
            h.update(b"\n")
        md5 = h.hexdigest()
        got = ["%d values hashing to %s" % (nvalues, md5)]
    elif rowwise:
        got = [" ".join(r) for r in rendered] if rec.sort != "valuesort" else values
    else:
        got = values
    if rec.label is not None:
        if md5 is None:
            h = hashlib.md5()
            for v in values:
                h.update(v.encode("latin-1"))
                h.update(b"\n")
            md5 = h.hexdigest()
        prev = labels.get(rec.label)
        if prev is None:
            labels[rec.label] = md5
        elif prev != md5:
            return False, rec.expected[:8] or ["(label %s)" % rec.label], \
                got[:8] + ["(differs from earlier result of %s)" % rec.label]
    if not rec.has_results:
        return True, [], got
    expected = rec.expected
    if rowwise and not (threshold > 0 and nvalues > threshold):
        expected = [" ".join(l.split()) for l in expected]
    if expected == got:
        return True, expected, got
    return False, expected, got


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def collect(paths):
    out = []
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for fn in sorted(files):
                    if fn.endswith(".test") or fn.endswith(".slt"):
                        out.append(os.path.join(root, fn))
        elif os.path.isfile(p):
            out.append(p)
        else:
            sys.stderr.write("run_slt.py: no such file or directory: %s\n" % p)
            out.append(p)
    return out


def default_mode(path, ext):
    if path.endswith(".slt"):
        return "asis"
    return "hash" if ext else "native"


def main(argv=None):
    ap = argparse.ArgumentParser(description="sqllogictest runner for libshardvt")
    ap.add_argument("--ext", help="path of the extension to load (e.g. ./libshardvt.so)")
    ap.add_argument("--mode", choices=("native", "asis", "hash", "prefix"),
                    help="rewrite mode (default: asis for *.slt, hash for *.test "
                         "with --ext, else native)")
    ap.add_argument("--mock", action="store_true",
                    help="use the Python stand-in module (tests/slt/mock_sharded.py) "
                         "instead of a real extension; only to test this runner")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each failure")
    ap.add_argument("--max-failures", type=int, default=None, metavar="N",
                    help="stop after N failures")
    ap.add_argument("--show", type=int, default=6, metavar="N",
                    help="with -v, lines of expected/got to show (default 6)")
    ap.add_argument("--quiet-notes", action="store_true",
                    help="do not print the kept-native / dropped-trigger notes")
    ap.add_argument("paths", nargs="+", metavar="PATH")
    args = ap.parse_args(argv)

    ext = None
    if args.mock:
        ext = MOCK
    elif args.ext:
        ext = os.path.abspath(args.ext)
        if not os.path.exists(ext):
            sys.stderr.write("run_slt.py: extension not found: %s\n" % args.ext)
            print("slt: 0 passed, 1 failed, 0 skipped")
            return 1
    if args.mode in ("hash", "prefix", "asis") and not ext:
        sys.stderr.write("run_slt.py: --mode %s needs --ext\n" % args.mode)
        return 2

    files = collect(args.paths)
    totals = [0, 0, 0]
    dropped = kept = 0
    budget = [args.max_failures] if args.max_failures is not None else None
    for path in files:
        if budget is not None and budget[0] <= 0:
            break
        mode = args.mode or default_mode(path, ext)
        if mode == "asis" and not ext:
            sys.stderr.write("run_slt.py: warning: %s runs in mode asis without --ext\n" % path)
        if not os.path.isfile(path):
            r = FileResult(path)
            r.failed = 1
            r.failures.append((0, "<open>", [], ["no such file"]))
        else:
            r = run_file(path, ext, mode, args.verbose, budget)
        totals[0] += r.passed
        totals[1] += r.failed
        totals[2] += r.skipped
        dropped += r.dropped_triggers
        kept += r.kept_native
        if not args.quiet_notes:
            for note in r.notes:
                print("  note: " + note)
        if args.verbose:
            for (line, sql, exp, got) in r.failures:
                print("FAIL %s:%d [%s]" % (path, line, mode))
                print("  sql: " + sql.replace("\n", "\n       "))
                print("  expected: " + " | ".join(exp[:args.show])
                      + (" ..." if len(exp) > args.show else ""))
                print("  got:      " + " | ".join(got[:args.show])
                      + (" ..." if len(got) > args.show else ""))
        print("%s: %d passed, %d failed, %d skipped" % (path, r.passed, r.failed, r.skipped))
        sys.stdout.flush()
    print("dropped triggers: %d, kept native: %d" % (dropped, kept))
    print("slt: %d passed, %d failed, %d skipped" % tuple(totals))
    return 1 if totals[1] else 0


if __name__ == "__main__":
    sys.exit(main())
