//! A lock-free "did anyone commit?" check for the small WAL databases every statement consults
//! (`catalog.db`, `txlog.db`), in front of `PRAGMA data_version`.
//!
//! `PRAGMA data_version` needs a read transaction: two `fcntl` calls on the `-shm` file and an
//! `fstat`, per file, per statement. But every commit to a WAL database rewrites the WAL-index
//! header at the start of its `-shm` region 0 (SQLite's file format: two copies of a 48-byte
//! header whose `iChange` field grows with every transaction; a checkpoint that restarts the
//! WAL changes the salts). The connection's own mapping of that region (recorded by the
//! `shardvt` VFS in xShmMap, `Connection::wal_index_header`) is read without locks and compared
//! with the copy seen when the caller last ran the real check:
//!
//! 1. `header()` is read BEFORE the real check;
//! 2. if it equals the remembered one, no transaction has committed since the remembered real
//!    check began, so the answer "unchanged" is exact (a commit always writes the header);
//! 3. otherwise the caller runs `PRAGMA data_version` and then `remember`s the header read in 1.
//!
//! A read that races with a commit sees a torn or new header, which only causes a real check.
//!
//! No file is opened or mapped here: closing a descriptor of a file SQLite locks would drop the
//! process's POSIX locks on it (and let another process truncate the `-shm` under the mapping).

use crate::ffi::api::Connection;

/// One copy of the WAL-index header: 48 bytes = 12 words.
type Header = [u32; 12];

#[derive(Default)]
pub struct Watch {
    last: Option<Header>,
}

impl Watch {
    /// The current WAL-index header of `conn`'s database (None: not available; check for real).
    pub fn header(&self, conn: &Connection) -> Option<Header> {
        // iVersion (word 0) is 0 in an index that was never initialised: no shortcut then
        conn.wal_index_header().filter(|h| h[0] != 0)
    }

    /// True when `header` (read before a real check) equals the one remembered after the last
    /// real check: nothing committed since.
    pub fn unchanged(&self, header: &Option<Header>) -> bool {
        header.is_some() && *header == self.last
    }

    /// The real check that followed `header()` succeeded: remember what it saw.
    pub fn remember(&mut self, header: Option<Header>) {
        self.last = header;
    }

    /// Forget the remembered header (the next check is a real one).
    pub fn forget(&mut self) {
        self.last = None;
    }
}
