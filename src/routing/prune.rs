//! Pruning: constraints on the shard key → which shards can hold matching rows (pure).
//!
//! Pruning must never drop a shard that holds a matching row (SQLite re-checks every row we
//! return, so visiting extra shards is only slower). The rules, in rising order of cost:
//!
//! 1. Only constraints whose comparison collation equals the key column's collation are used.
//! 2. A right-hand value is *routable* only when SQLite's comparison would treat it exactly as the
//!    stored key ([`routable_value`]): numeric key columns apply numeric affinity to the value;
//!    TEXT keys accept TEXT/BLOB values (a numeric value might be compared after converting the
//!    *stored* text, e.g. '5.0' = 5, so it is not routable); untyped (BLOB affinity) keys accept
//!    only BLOB values.
//! 3. `key = v`, `key IS v`, `key IN (...)`: the shards of the routable values (all values must be
//!    routable, else no pruning). `key IS NULL`: the NULL home.
//! 4. Prefix strategy, TEXT key with BINARY collation: ranges keep shard P when the interval of
//!    keys starting with P, [P, P⁺), meets the range; `LIKE 'lit%'` keeps P when P and lit agree
//!    case-insensitively (ASCII) on their common length; `GLOB 'lit*'` likewise, case-sensitively.

use crate::value::{apply_affinity, Affinity, Value};

use super::prefix::{prefix_of, PrefixRule};

#[derive(Debug, Clone, PartialEq)]
pub enum KeyTerm {
    /// `=`, `IS` or `IN`: the key equals one of these values.
    AnyOf(Vec<Value>),
    IsNull,
    Gt(Value),
    Ge(Value),
    Lt(Value),
    Le(Value),
    Like(Vec<u8>),
    Glob(Vec<u8>),
}

/// The value to route on, or None when SQLite's comparison could match keys stored differently.
pub fn routable_value(v: &Value, aff: Affinity) -> Option<Value> {
    match aff {
        Affinity::Integer | Affinity::Real | Affinity::Numeric => Some(apply_affinity(v, aff)),
        Affinity::Text => match v {
            Value::Text(_) | Value::Blob(_) | Value::Null => Some(v.clone()),
            _ => None,
        },
        Affinity::Blob => match v {
            Value::Blob(_) | Value::Null => Some(v.clone()),
            _ => None,
        },
    }
}

/// The literal prefix of a LIKE/GLOB pattern (up to the first wildcard).
fn literal_prefix(pat: &[u8], wild: &[u8]) -> Vec<u8> {
    pat.iter().take_while(|b| !wild.contains(b)).copied().collect()
}

fn prefixes_agree(a: &[u8], b: &[u8], nocase: bool) -> bool {
    let n = a.len().min(b.len());
    if nocase {
        a[..n].eq_ignore_ascii_case(&b[..n])
    } else {
        a[..n] == b[..n]
    }
}

/// The smallest byte string greater than every string starting with `p`, or None if unbounded.
fn successor(p: &[u8]) -> Option<Vec<u8>> {
    let mut s = p.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xff {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

/// Can the shard whose prefix is `prefix` (None: the NULL shard) hold a key satisfying `term`?
pub fn prefix_may_hold(prefix: Option<&str>, term: &KeyTerm, rule: &PrefixRule, aff: Affinity, coll: &str) -> bool {
    match term {
        KeyTerm::IsNull => prefix.is_none(),
        KeyTerm::AnyOf(vals) => {
            let mut all_routable = true;
            for v in vals {
                match routable_value(v, aff) {
                    Some(Value::Null) => {}
                    Some(rv) => {
                        if prefix_of(&rv, rule, coll).as_deref() == prefix {
                            return true;
                        }
                    }
                    None => all_routable = false,
                }
            }
            !all_routable
        }
        _ if aff != Affinity::Text || coll != "BINARY" => true,
        KeyTerm::Like(pat) | KeyTerm::Glob(pat) => {
            let Some(p) = prefix else { return false };
            let nocase = matches!(term, KeyTerm::Like(_));
            let lit = if nocase { literal_prefix(pat, b"%_") } else { literal_prefix(pat, b"*?[") };
            prefixes_agree(p.as_bytes(), &lit, nocase)
        }
        KeyTerm::Gt(v) | KeyTerm::Ge(v) | KeyTerm::Lt(v) | KeyTerm::Le(v) => {
            let Value::Text(bound) = v else { return true };
            let Some(p) = prefix else { return false };
            let p = p.as_bytes();
            match term {
                // keys in P are >= P and < succ(P)
                KeyTerm::Gt(_) | KeyTerm::Ge(_) => match successor(p) {
                    Some(s) => s.as_slice() > bound.as_slice(),
                    None => true,
                },
                KeyTerm::Lt(_) => p < bound.as_slice(),
                _ => p <= bound.as_slice(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> PrefixRule {
        PrefixRule { sep: Some(":".into()), depth: 1, len: None }
    }

    #[test]
    fn routable_follows_comparison_affinity() {
        assert_eq!(routable_value(&Value::text("5"), Affinity::Integer), Some(Value::Integer(5)));
        assert_eq!(routable_value(&Value::Integer(5), Affinity::Text), None);
        assert_eq!(routable_value(&Value::text("a"), Affinity::Text), Some(Value::text("a")));
        assert_eq!(routable_value(&Value::text("a"), Affinity::Blob), None);
    }

    #[test]
    fn prefix_pruning() {
        let r = rule();
        let t = Affinity::Text;
        let eq = KeyTerm::AnyOf(vec![Value::text("acme:1")]);
        assert!(prefix_may_hold(Some("acme"), &eq, &r, t, "BINARY"));
        assert!(!prefix_may_hold(Some("beta"), &eq, &r, t, "BINARY"));
        assert!(!prefix_may_hold(None, &eq, &r, t, "BINARY"));
        assert!(prefix_may_hold(None, &KeyTerm::IsNull, &r, t, "BINARY"));
        let like = KeyTerm::Like(b"AC%".to_vec());
        assert!(prefix_may_hold(Some("acme"), &like, &r, t, "BINARY"));
        assert!(!prefix_may_hold(Some("beta"), &like, &r, t, "BINARY"));
        let like2 = KeyTerm::Like(b"acme:2025%".to_vec());
        assert!(prefix_may_hold(Some("acme"), &like2, &r, t, "BINARY"));
        assert!(!prefix_may_hold(Some("acmf"), &like2, &r, t, "BINARY"));
        let glob = KeyTerm::Glob(b"AC*".to_vec());
        assert!(!prefix_may_hold(Some("acme"), &glob, &r, t, "BINARY"));
        assert!(prefix_may_hold(Some("b"), &KeyTerm::Ge(Value::text("b")), &r, t, "BINARY"));
        assert!(!prefix_may_hold(Some("a"), &KeyTerm::Ge(Value::text("b")), &r, t, "BINARY"));
        assert!(prefix_may_hold(Some("a"), &KeyTerm::Ge(Value::text("a:zzz")), &r, t, "BINARY"));
        assert!(!prefix_may_hold(Some("c"), &KeyTerm::Lt(Value::text("c")), &r, t, "BINARY"));
        assert!(prefix_may_hold(Some("c"), &KeyTerm::Le(Value::text("c")), &r, t, "BINARY"));
        // numeric bound against a text key: never pruned
        assert!(prefix_may_hold(Some("a"), &KeyTerm::Ge(Value::Integer(5)), &r, t, "BINARY"));
        // non-routable IN value disables pruning
        let mixed = KeyTerm::AnyOf(vec![Value::text("x:1"), Value::Integer(3)]);
        assert!(prefix_may_hold(Some("zzz"), &mixed, &r, t, "BINARY"));
    }
}
