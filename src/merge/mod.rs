//! Merging sorted shard streams (pure): the comparison and the choice of the next row.
//!
//! Each shard returns its rows already sorted by the plan's key (rowid when the query has no
//! consumed ORDER BY). The cursor keeps every shard's current key and emits the smallest.
//! Ordering is SQLite's (`value::compare`: NULL < numbers < text < blob) after collation
//! folding (NOCASE: ASCII lowercase; RTRIM: trailing spaces ignored); DESC reverses a term.
//! Ties go to the lower source index, so the merge is deterministic.
//!
//! A linear scan over the heads is used: shard counts are small (≤ a few dozen per query) and
//! the scan touches only cached keys, which beats a heap's bookkeeping at that size.

use std::cmp::Ordering;

use crate::routing::collate_key;
use crate::value::{compare, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct KeySpec {
    pub desc: bool,
    pub collation: String,
}

pub fn compare_with_collation(a: &Value, b: &Value, collation: &str) -> Ordering {
    match (a, b) {
        (Value::Text(x), Value::Text(y)) if collation != "BINARY" => {
            collate_key(x, collation).cmp(&collate_key(y, collation))
        }
        _ => compare(a, b),
    }
}

pub fn compare_keys(a: &[Value], b: &[Value], spec: &[KeySpec]) -> Ordering {
    for (i, s) in spec.iter().enumerate() {
        let o = compare_with_collation(&a[i], &b[i], &s.collation);
        let o = if s.desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// Index of the head to emit next, or None when there is none.
pub fn pick_min<'a>(heads: impl Iterator<Item = &'a [Value]>, spec: &[KeySpec]) -> Option<usize> {
    let mut best: Option<(usize, &[Value])> = None;
    for (i, k) in heads.enumerate() {
        match best {
            None => best = Some((i, k)),
            Some((_, bk)) if compare_keys(k, bk, spec) == Ordering::Less => best = Some((i, k)),
            _ => {}
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(desc: bool, c: &str) -> KeySpec {
        KeySpec { desc, collation: c.into() }
    }

    /// Merging sorted "shards" must equal sorting their union.
    #[test]
    fn merge_equals_sort() {
        let shards: Vec<Vec<Value>> = vec![
            vec![Value::Null, Value::Integer(1), Value::Integer(5), Value::text("a")],
            vec![],
            vec![Value::Real(1.5), Value::text("B"), Value::Blob(vec![0])],
            vec![Value::Integer(1), Value::Integer(2)],
        ];
        let sp = [spec(false, "BINARY")];
        let mut pos = vec![0usize; shards.len()];
        let mut out = Vec::new();
        loop {
            let heads: Vec<(usize, [Value; 1])> = shards
                .iter()
                .enumerate()
                .filter(|(i, s)| pos[*i] < s.len())
                .map(|(i, s)| (i, [s[pos[i]].clone()]))
                .collect();
            let Some(k) = pick_min(heads.iter().map(|(_, v)| &v[..]), &sp) else { break };
            let src = heads[k].0;
            out.push(shards[src][pos[src]].clone());
            pos[src] += 1;
        }
        let mut all: Vec<Value> = shards.concat();
        all.sort_by(compare);
        assert_eq!(out, all);
    }

    #[test]
    fn collations_and_desc() {
        let a = [Value::text("abc")];
        let b = [Value::text("ABD")];
        assert_eq!(compare_keys(&a, &b, &[spec(false, "BINARY")]), Ordering::Greater);
        assert_eq!(compare_keys(&a, &b, &[spec(false, "NOCASE")]), Ordering::Less);
        assert_eq!(compare_keys(&a, &b, &[spec(true, "NOCASE")]), Ordering::Greater);
        let c = [Value::text("x  ")];
        let d = [Value::text("x")];
        assert_eq!(compare_keys(&c, &d, &[spec(false, "RTRIM")]), Ordering::Equal);
        // ties go to the first head
        assert_eq!(pick_min([&a[..], &a[..]].into_iter(), &[spec(false, "BINARY")]), Some(0));
    }
}
