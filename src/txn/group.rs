//! Transactions that write to several sharded tables of one host connection.
//!
//! Each sharded table has its own commit log, so a host transaction that writes to two tables
//! needs one decision for both. The tables of a host connection that joined a shard transaction
//! ("writers") are tracked here, per host connection:
//! - every writer writes its redo record in xSync as `prepared`, tagged with the group's `gtid`
//!   and the path of the coordinator's log (the writer with the lowest address, a fixed choice
//!   for the group's lifetime);
//! - the writer whose xSync completes the group writes `decision(gtid)` into the coordinator's
//!   log with `synchronous=FULL`: the commit point of the whole transaction. An error there fails
//!   xSync, and SQLite rolls every table back;
//! - recovery applies a `prepared` record only if the decision exists; otherwise, once it holds
//!   the participants' locks (so the owner is gone), it drops the record.
//!
//! A host connection is used by one thread at a time, so the group needs no finer locking.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::ffi::api::HostDb;

#[derive(Debug, Clone)]
pub struct Group {
    pub gtid: String,
    /// (table address, its txlog path), in join order
    pub writers: Vec<(usize, PathBuf)>,
    pub synced: usize,
}

static GROUPS: Mutex<Option<HashMap<HostDb, Group>>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut HashMap<HostDb, Group>) -> R) -> R {
    let mut g = GROUPS.lock().unwrap_or_else(|p| p.into_inner());
    f(g.get_or_insert_with(HashMap::new))
}

fn new_gtid(host: HostDb) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}-{:x}-{:x}", t, std::process::id(), host.0)
}

/// Records that table `addr` (log at `txlog`) writes in the current transaction of `host`.
pub fn join(host: HostDb, addr: usize, txlog: PathBuf) {
    with(|m| {
        let g = m.entry(host).or_insert_with(|| Group { gtid: new_gtid(host), writers: vec![], synced: 0 });
        if !g.writers.iter().any(|(a, _)| *a == addr) {
            g.writers.push((addr, txlog));
        }
    })
}

pub fn get(host: HostDb) -> Option<Group> {
    with(|m| m.get(&host).cloned())
}

/// Counts one writer's xSync; true when it was the last one (this caller decides).
pub fn synced(host: HostDb) -> bool {
    with(|m| match m.get_mut(&host) {
        Some(g) => {
            g.synced += 1;
            g.synced == g.writers.len()
        }
        None => true,
    })
}

/// Removes table `addr` from the group (after its commit or rollback); the group ends when empty.
pub fn leave(host: HostDb, addr: usize) {
    with(|m| {
        if let Some(g) = m.get_mut(&host) {
            g.writers.retain(|(a, _)| *a != addr);
            if g.writers.is_empty() {
                m.remove(&host);
            }
        }
    })
}

/// The coordinator's log path of a group: the writer with the lowest address.
pub fn coordinator(g: &Group) -> Option<PathBuf> {
    g.writers.iter().min_by_key(|(a, _)| *a).map(|(_, p)| p.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_lifecycle() {
        let h = HostDb(0xfeed);
        join(h, 20, "b/txlog.db".into());
        join(h, 10, "a/txlog.db".into());
        join(h, 20, "b/txlog.db".into());
        let g = get(h).unwrap();
        assert_eq!(g.writers.len(), 2);
        assert_eq!(coordinator(&g), Some(PathBuf::from("a/txlog.db")));
        assert!(!synced(h));
        assert!(synced(h));
        leave(h, 10);
        leave(h, 20);
        assert!(get(h).is_none());
    }
}
