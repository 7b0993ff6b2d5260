"""Shared fixtures for the apsw tests.

Paths are computed from this file: the repository root is two levels up and the extension is
./libshardvt.so there (built by `make build`).
"""
import os
import pathlib

import pytest

import apsw  # noqa: F401  (pip install apsw; .ci/run installs it)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SO_PATH = REPO_ROOT / "libshardvt.so"


def open_db(path, load=True):
    """Open an apsw connection to `path` (a str/Path or ":memory:") with libshardvt loaded."""
    conn = apsw.Connection(str(path))
    if load:
        conn.enable_load_extension(True)
        # SQLite derives the entry point (sqlite3_shardvt_init) from the file name.
        conn.load_extension(str(SO_PATH))
    return conn


def rows(conn, sql, bindings=()):
    """All rows of a query as a list of tuples."""
    return [tuple(r) for r in conn.execute(sql, bindings)]


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope="session")
def so_path():
    if not SO_PATH.exists():
        pytest.fail(f"{SO_PATH.relative_to(REPO_ROOT)} not found: run `make build` first")
    return SO_PATH


@pytest.fixture
def tmp(tmp_path):
    """A fresh, empty temp dir (a pathlib.Path) for database and shard files."""
    return tmp_path


@pytest.fixture
def connect(so_path):
    """connect(path) -> apsw.Connection with libshardvt loaded; closed at teardown."""
    opened = []

    def _connect(path, load=True):
        conn = open_db(path, load=load)
        opened.append(conn)
        return conn

    yield _connect
    for conn in reversed(opened):
        try:
            conn.close(True)
        except Exception:
            pass


@pytest.fixture
def db(connect, tmp):
    """A connection to a fresh tmp/test.db with libshardvt loaded."""
    return connect(tmp / "test.db")
