"""Shared by the crash harness and the soak: how a test process opens a database."""
import os
import pathlib

import apsw

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SO_PATH = REPO_ROOT / "libshardvt.so"


def connect(path, load=True, readonly=False, busy_ms=5000):
    """An apsw connection to `path`, with libshardvt loaded unless load=False
    (SHARDVT_CRASH_SO overrides the extension path: the harnesses copy the .so so that a rebuild
    cannot pull it from under a running child)."""
    if readonly:
        conn = apsw.Connection(f"file:{path}?mode=ro", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    else:
        conn = apsw.Connection(str(path))
    if load:
        conn.enable_load_extension(True)
        conn.load_extension(os.environ.get("SHARDVT_CRASH_SO", str(SO_PATH)))
    conn.setbusytimeout(busy_ms)
    return conn
