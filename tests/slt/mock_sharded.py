"""A stand-in for the extension, used only to test run_slt.py itself
(`run_slt.py --mock ...`): an apsw virtual-table module named `sharded`
that keeps each table's rows in a native backing table, plus the
shardvt_create_index / shardvt_drop_index functions.  It does no sharding;
it lets the DDL rewriting and the runner be checked before (or without)
libshardvt.so.
"""

import re

import apsw

_OPT_RE = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*=")


def _q(name):
    return '"' + name.replace('"', '""') + '"'


class Module:
    def __init__(self, conn, split_args):
        self.conn = conn
        self.split_args = split_args   # text -> list of top-level comma parts

    def Create(self, db, modulename, dbname, tablename, *args):
        defs = [a for a in args if not _OPT_RE.match(a)]
        backing = "_mock_" + tablename
        db.execute("CREATE TABLE %s(%s)" % (_q(backing), ", ".join(defs)))
        cols = [r[1] for r in db.execute("PRAGMA table_info(%s)" % _q(backing))]
        schema = "CREATE TABLE x(%s)" % ", ".join(_q(c) for c in cols)
        return schema, Table(db, backing, cols)

    def Connect(self, db, modulename, dbname, tablename, *args):
        backing = "_mock_" + tablename
        cols = [r[1] for r in db.execute("PRAGMA table_info(%s)" % _q(backing))]
        schema = "CREATE TABLE x(%s)" % ", ".join(_q(c) for c in cols)
        return schema, Table(db, backing, cols)


class Table:
    def __init__(self, db, backing, cols):
        self.db, self.backing, self.cols = db, backing, cols

    def BestIndex(self, *args):
        return None

    def Open(self):
        return Cursor(self)

    def Disconnect(self):
        pass

    def Destroy(self):
        self.db.execute("DROP TABLE IF EXISTS %s" % _q(self.backing))

    def UpdateInsertRow(self, rowid, fields):
        names = ", ".join(_q(c) for c in self.cols)
        marks = ", ".join("?" for _ in self.cols)
        if rowid is None:
            self.db.execute("INSERT INTO %s(%s) VALUES(%s)" % (_q(self.backing), names, marks),
                            tuple(fields))
        else:
            self.db.execute("INSERT INTO %s(rowid, %s) VALUES(?, %s)"
                            % (_q(self.backing), names, marks), (rowid,) + tuple(fields))
        return self.db.last_insert_rowid()

    def UpdateDeleteRow(self, rowid):
        self.db.execute("DELETE FROM %s WHERE rowid = ?" % _q(self.backing), (rowid,))

    def UpdateChangeRow(self, rowid, newrowid, fields):
        sets = ", ".join("%s = ?" % _q(c) for c in self.cols)
        self.db.execute("UPDATE %s SET rowid = ?, %s WHERE rowid = ?" % (_q(self.backing), sets),
                        (newrowid,) + tuple(fields) + (rowid,))


class Cursor:
    def __init__(self, table):
        self.t = table
        self.rows, self.pos = [], 0

    def Filter(self, *args):
        self.rows = list(self.t.db.execute("SELECT rowid, * FROM %s" % _q(self.t.backing)))
        self.pos = 0

    def Eof(self):
        return self.pos >= len(self.rows)

    def Rowid(self):
        return self.rows[self.pos][0]

    def Column(self, n):
        if n == -1:
            return self.rows[self.pos][0]
        return self.rows[self.pos][n + 1]

    def Next(self):
        self.pos += 1

    def Close(self):
        pass


def install(conn):
    conn.create_module("sharded", Module(conn, None))

    def create_index(table, name, definition, unique=0):
        conn.execute("CREATE %sINDEX %s ON %s(%s)" % (
            "UNIQUE " if unique else "", _q(name), _q("_mock_" + table), definition))
        return 1

    def drop_index(table, name):
        conn.execute("DROP INDEX %s" % _q(name))
        return 1

    conn.create_scalar_function("shardvt_create_index", create_index, -1)
    conn.create_scalar_function("shardvt_drop_index", drop_index, 2)
