//! Loads ../../libshardvt.so (path given as the first argument) into rusqlite's bundled SQLite
//! and checks the basic contract: create, insert across shards, route, move a row by updating
//! its shard key, transactions. Exits non-zero with a message on the first failure.

use rusqlite::{Connection, LoadExtensionGuard};

fn main() {
    if let Err(e) = run() {
        eprintln!("rust host: FAILED: {e}");
        std::process::exit(1);
    }
    println!("rust_host: 1 passed, 0 failed");
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let so = std::env::args().nth(1).ok_or("usage: shardvt-rust-host <path to libshardvt.so>")?;
    let dir = std::env::temp_dir().join(format!("shardvt-rust-host-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let conn = Connection::open(dir.join("host.db"))?;
    // SAFETY (of the host program): we load our own extension, built by this repository.
    unsafe {
        let _guard = LoadExtensionGuard::new(&conn)?;
        conn.load_extension(&so, None::<&str>)?;
    }
    let version: String = conn.query_row("SELECT shardvt_version()", [], |r| r.get(0))?;
    let host: String = conn.query_row("SELECT sqlite_version()", [], |r| r.get(0))?;
    println!("rust host: SQLite {host}, {version}");
    conn.execute_batch(
        "CREATE VIRTUAL TABLE events USING sharded(id INTEGER PRIMARY KEY, user_id TEXT NOT NULL, ts INTEGER,
                                                  shard_key=user_id, shards=8);
         BEGIN;
         INSERT INTO events(user_id, ts) VALUES ('u1', 1), ('u2', 2), ('u3', 3), ('u4', 4);
         COMMIT;",
    )?;
    let n: i64 = conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
    check(n == 4, format!("count {n} != 4"))?;
    let before: i64 = conn.query_row("SELECT shardvt_route('events', 'u1')", [], |r| r.get(0))?;
    let target: i64 = conn.query_row("SELECT shardvt_route('events', 'zz9')", [], |r| r.get(0))?;
    conn.execute("UPDATE events SET user_id = 'zz9' WHERE id = 1", [])?;
    let (id, user): (i64, String) =
        conn.query_row("SELECT id, user_id FROM events WHERE user_id = 'zz9'", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    check(id == 1 && user == "zz9", format!("moved row is ({id}, {user})"))?;
    let rows_in_target: i64 = conn.query_row(
        "SELECT rows FROM shardvt_shards('events') WHERE shard = ?1",
        [target],
        |r| r.get(0),
    )?;
    check(rows_in_target >= 1, format!("shard {target} (from {before}) holds no row after the move"))?;
    conn.execute_batch("BEGIN; DELETE FROM events; ROLLBACK;")?;
    let n: i64 = conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
    check(n == 4, format!("ROLLBACK left {n} rows"))?;
    drop(conn);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn check(ok: bool, what: String) -> Result<(), Box<dyn std::error::Error>> {
    if ok {
        Ok(())
    } else {
        Err(what.into())
    }
}
