"""The SQL surface is listed once, in README's reference table, and nowhere else differs:
every shardvt_* function and module the extension registers appears there, and vice versa.
Also: file-writing functions are direct-only (cannot run from triggers/views of a schema)."""
import re

from conftest import REPO_ROOT, open_db, rows


def readme_names():
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## SQL reference", 1)[1].split("\n## ", 1)[0]
    names = {}
    for line in section.splitlines():
        m = re.match(r"\| `([a-z_]+)` \| ([a-z -]+) \|", line)
        if m:
            names[m.group(1)] = m.group(2).strip()
    return names


def test_readme_table_matches_registered_names(so_path, tmp):
    conn = open_db(tmp / "t.db")
    listed = readme_names()
    funcs = {r[0] for r in rows(conn, "SELECT name FROM pragma_function_list WHERE name LIKE 'shardvt%'")}
    modules = {r[0] for r in rows(conn, "SELECT name FROM pragma_module_list WHERE name LIKE 'shard%'")}
    readme_funcs = {n for n, kind in listed.items() if kind == "scalar"}
    readme_modules = {n for n, kind in listed.items() if kind in ("module", "table-valued function")}
    assert funcs == readme_funcs
    assert modules == readme_modules


def test_file_writing_functions_are_direct_only(so_path, tmp):
    conn = open_db(tmp / "t.db")
    flags = {r[0]: r[1] for r in rows(conn, "SELECT name, flags FROM pragma_function_list WHERE name LIKE 'shardvt%'")}
    DIRECTONLY = 0x080000
    for name in ("shardvt_create_index", "shardvt_drop_index", "shardvt_route", "shardvt_explain"):
        assert flags[name] & DIRECTONLY, name
    conn.execute("CREATE VIRTUAL TABLE t USING sharded(a INTEGER PRIMARY KEY, k TEXT, shard_key=k)")
    conn.execute("CREATE TABLE n(x)")
    conn.execute("CREATE TRIGGER tr AFTER INSERT ON n BEGIN SELECT shardvt_drop_index('t', 'i'); END")
    try:
        conn.execute("INSERT INTO n VALUES (1)")
        raise AssertionError("a DIRECTONLY function ran inside a trigger")
    except Exception as e:  # apsw.SQLError: unsafe use of shardvt_drop_index()
        assert "unsafe use of shardvt_drop_index" in str(e)
