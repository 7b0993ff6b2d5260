//! xBestIndex request → plan; plan ↔ idxStr (pure).
//!
//! HOW IT WORKS. Every usable constraint on a column or the rowid whose operator a shard can
//! evaluate (=, >, >=, <, <=, !=, IS, IS NOT, IS NULL, IS NOT NULL, LIKE, GLOB) and whose collation
//! the shard knows (BINARY, NOCASE, RTRIM) is passed to xFilter (argvIndex) but never omitted:
//! SQLite re-checks every returned row, so pushing a constraint down can only make a scan smaller,
//! never wrong. `key = ?` whose right side is an IN list is taken whole (sqlite3_vtab_in) so one
//! xFilter sees every key and visits only their shards.
//!
//! ORDER BY is consumed when every term is a column (or rowid) with a collation the shards know;
//! each shard then sorts and the cursor merges. LIMIT/OFFSET are passed along when offered; the
//! cursor pushes `LIMIT limit+offset` to each shard only if every WHERE term was pushed too.
//!
//! idxStr grammar (format 1; see ARCHITECTURE.md):
//!
//! ```text
//!   idxStr  := "1" ( ";" field )*
//!   field   := "c=" term ("," term)*          pushed constraints
//!            | "o=" oterm ("," oterm)*        consumed ORDER BY
//!            | "l=" argv | "f=" argv          LIMIT / OFFSET argv index
//!            | "u=" hex                       colUsed mask
//!   term    := col ":" op ":" argv ":" coll ":" in      (argv 0: no argument; in 1: IN list)
//!   oterm   := col ":" ("a"|"d") ":" coll
//!   col     := -1 (rowid) | 0..n-1
//! ```

use crate::error::{Error, Result};

/// SQLite's constraint operator codes (sqlite3.h; stable).
pub mod op {
    pub const EQ: u8 = 2;
    pub const GT: u8 = 4;
    pub const LE: u8 = 8;
    pub const LT: u8 = 16;
    pub const GE: u8 = 32;
    pub const LIKE: u8 = 65;
    pub const GLOB: u8 = 66;
    pub const NE: u8 = 68;
    pub const ISNOT: u8 = 69;
    pub const ISNOTNULL: u8 = 70;
    pub const ISNULL: u8 = 71;
    pub const IS: u8 = 72;
    pub const LIMIT: u8 = 73;
    pub const OFFSET: u8 = 74;
}

/// What the planner needs to know about one constraint (from SQLite).
#[derive(Debug, Clone, PartialEq)]
pub struct ConstraintIn {
    pub column: i32,
    pub op: u8,
    pub usable: bool,
    pub collation: String,
    pub can_handle_in: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub column: i32,
    pub op: u8,
    /// 1-based argv index in xFilter; 0 when the operator takes no argument.
    pub argv: u32,
    pub collation: String,
    pub is_in: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderTerm {
    pub column: i32,
    pub desc: bool,
    pub collation: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub terms: Vec<Term>,
    pub order: Vec<OrderTerm>,
    pub limit_argv: Option<u32>,
    pub offset_argv: Option<u32>,
    pub col_used: u64,
}

/// The planner's answer for SQLite.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub plan: Plan,
    /// (constraint index, argv index)
    pub argv: Vec<(usize, u32)>,
    /// constraint indexes whose IN list is to be taken whole
    pub handle_in: Vec<usize>,
    pub order_consumed: bool,
    pub cost: f64,
    pub rows: i64,
}

pub fn known_collation(c: &str) -> bool {
    matches!(c.to_ascii_uppercase().as_str(), "BINARY" | "NOCASE" | "RTRIM")
}

fn pushable_op(op: u8) -> bool {
    matches!(op, op::EQ | op::GT | op::LE | op::LT | op::GE | op::LIKE | op::GLOB | op::NE | op::ISNOT | op::ISNOTNULL | op::ISNULL | op::IS)
}

pub fn op_takes_arg(op: u8) -> bool {
    !matches!(op, op::ISNULL | op::ISNOTNULL)
}

/// Chooses the plan for one xBestIndex call.
///
/// `column_collations[i]` is column i's declared collation; `key_column` the shard key; `shards`
/// the current shard count (for costs).
pub fn best_index(
    constraints: &[ConstraintIn],
    order_by: &[(i32, bool)],
    col_used: u64,
    column_collations: &[String],
    key_column: usize,
    shards: usize,
) -> Choice {
    let mut plan = Plan { col_used, ..Default::default() };
    let mut argv = Vec::new();
    let mut handle_in = Vec::new();
    let mut next = 1u32;
    let mut key_eq = false;
    let mut rowid_eq = false;
    let mut other_eq = false;
    let mut range = false;
    let mut limit_offered = false;
    for (i, c) in constraints.iter().enumerate() {
        if !c.usable {
            continue;
        }
        if c.op == op::LIMIT || c.op == op::OFFSET {
            if c.op == op::LIMIT {
                plan.limit_argv = Some(next);
                limit_offered = true;
            } else {
                plan.offset_argv = Some(next);
            }
            argv.push((i, next));
            next += 1;
            continue;
        }
        if !pushable_op(c.op) || !known_collation(&c.collation) {
            continue;
        }
        if c.column >= column_collations.len() as i32 || c.column < -1 {
            continue;
        }
        let takes = op_takes_arg(c.op);
        let is_in = c.op == op::EQ && c.can_handle_in;
        let a = if takes {
            argv.push((i, next));
            next += 1;
            next - 1
        } else {
            0
        };
        if is_in {
            handle_in.push(i);
        }
        let coll = c.collation.to_ascii_uppercase();
        match c.op {
            op::EQ | op::IS => {
                if c.column == key_column as i32 && coll == column_collations[key_column] {
                    key_eq = true;
                } else if c.column == -1 {
                    rowid_eq = true;
                } else {
                    other_eq = true;
                }
            }
            op::ISNULL => other_eq = true,
            op::GT | op::GE | op::LT | op::LE | op::LIKE | op::GLOB => range = true,
            _ => {}
        }
        plan.terms.push(Term { column: c.column, op: c.op, argv: a, collation: coll, is_in });
    }
    let _ = limit_offered;
    // ORDER BY: consumed when every term names a column with a known declared collation.
    let mut order_consumed = !order_by.is_empty();
    for (col, desc) in order_by {
        let coll = if *col == -1 {
            "BINARY".to_string()
        } else if (*col as usize) < column_collations.len() && *col >= 0 {
            column_collations[*col as usize].clone()
        } else {
            order_consumed = false;
            break;
        };
        if !known_collation(&coll) {
            order_consumed = false;
            break;
        }
        plan.order.push(OrderTerm { column: *col, desc: *desc, collation: coll });
    }
    if !order_consumed {
        plan.order.clear();
        if !order_by.is_empty() {
            // SQLite will sort our rows afterwards: a per-shard LIMIT would cut the wrong rows.
            plan.limit_argv = None;
            plan.offset_argv = None;
        }
    }
    let shards_f = shards.max(1) as f64;
    let (cost, rows) = if rowid_eq {
        (shards_f * 2.0, 1)
    } else if key_eq {
        (20.0, 10)
    } else if other_eq {
        (shards_f * 200.0, 100)
    } else if range {
        (shards_f * 20_000.0, 10_000)
    } else {
        (shards_f * 250_000.0, 1_000_000)
    };
    Choice { plan, argv, handle_in, order_consumed, cost, rows }
}

impl Plan {
    pub fn encode(&self) -> String {
        let mut s = String::from("1");
        if !self.terms.is_empty() {
            s.push_str(";c=");
            let parts: Vec<String> = self
                .terms
                .iter()
                .map(|t| format!("{}:{}:{}:{}:{}", t.column, t.op, t.argv, t.collation, t.is_in as u8))
                .collect();
            s.push_str(&parts.join(","));
        }
        if !self.order.is_empty() {
            s.push_str(";o=");
            let parts: Vec<String> = self
                .order
                .iter()
                .map(|o| format!("{}:{}:{}", o.column, if o.desc { "d" } else { "a" }, o.collation))
                .collect();
            s.push_str(&parts.join(","));
        }
        if let Some(l) = self.limit_argv {
            s.push_str(&format!(";l={l}"));
        }
        if let Some(f) = self.offset_argv {
            s.push_str(&format!(";f={f}"));
        }
        s.push_str(&format!(";u={:x}", self.col_used));
        s
    }

    pub fn decode(s: &str) -> Result<Plan> {
        let bad = || Error::internal(format!("sharded: malformed plan string {s:?}"));
        let mut fields = s.split(';');
        if fields.next() != Some("1") {
            return Err(bad());
        }
        let mut p = Plan::default();
        for f in fields {
            let (k, v) = f.split_once('=').ok_or_else(bad)?;
            match k {
                "c" => {
                    for t in v.split(',') {
                        let x: Vec<&str> = t.split(':').collect();
                        if x.len() != 5 {
                            return Err(bad());
                        }
                        p.terms.push(Term {
                            column: x[0].parse().map_err(|_| bad())?,
                            op: x[1].parse().map_err(|_| bad())?,
                            argv: x[2].parse().map_err(|_| bad())?,
                            collation: x[3].to_string(),
                            is_in: x[4] == "1",
                        });
                    }
                }
                "o" => {
                    for t in v.split(',') {
                        let x: Vec<&str> = t.split(':').collect();
                        if x.len() != 3 {
                            return Err(bad());
                        }
                        p.order.push(OrderTerm {
                            column: x[0].parse().map_err(|_| bad())?,
                            desc: x[1] == "d",
                            collation: x[2].to_string(),
                        });
                    }
                }
                "l" => p.limit_argv = Some(v.parse().map_err(|_| bad())?),
                "f" => p.offset_argv = Some(v.parse().map_err(|_| bad())?),
                "u" => p.col_used = u64::from_str_radix(v, 16).map_err(|_| bad())?,
                _ => return Err(bad()),
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(column: i32, op: u8) -> ConstraintIn {
        ConstraintIn { column, op, usable: true, collation: "BINARY".into(), can_handle_in: false }
    }
    fn colls(n: usize) -> Vec<String> {
        vec!["BINARY".to_string(); n]
    }

    #[test]
    fn key_equality_is_cheapest_and_pushed() {
        let ch = best_index(&[c(1, op::EQ), c(2, op::GT)], &[], 0b111, &colls(3), 1, 8);
        assert_eq!(ch.argv, vec![(0, 1), (1, 2)]);
        assert_eq!(ch.plan.terms.len(), 2);
        assert!(ch.cost < 100.0);
        let full = best_index(&[], &[], 0b111, &colls(3), 1, 8);
        assert!(full.cost > ch.cost);
    }

    #[test]
    fn unusable_and_unknown_collations_are_skipped() {
        let mut x = c(0, op::EQ);
        x.usable = false;
        let mut y = c(1, op::EQ);
        y.collation = "MYCOLL".into();
        let ch = best_index(&[x, y, c(0, op::ISNULL)], &[], 1, &colls(2), 0, 4);
        assert_eq!(ch.argv, vec![]);
        assert_eq!(ch.plan.terms, vec![Term { column: 0, op: op::ISNULL, argv: 0, collation: "BINARY".into(), is_in: false }]);
    }

    #[test]
    fn order_by_consumption() {
        let ch = best_index(&[], &[(1, true), (-1, false)], 3, &colls(2), 0, 4);
        assert!(ch.order_consumed);
        let mut cl = colls(2);
        cl[1] = "MYCOLL".into();
        let ch2 = best_index(&[], &[(1, true)], 3, &cl, 0, 4);
        assert!(!ch2.order_consumed);
        assert!(ch2.plan.order.is_empty());
        let ch3 = best_index(&[c(-1, op::LIMIT)], &[(1, true)], 3, &cl, 0, 4);
        assert_eq!(ch3.plan.limit_argv, None, "no LIMIT push-down under an unconsumed ORDER BY");
    }

    #[test]
    fn in_lists_and_limits() {
        let mut k = c(0, op::EQ);
        k.can_handle_in = true;
        let ch = best_index(&[k, c(-1, op::LIMIT), c(-1, op::OFFSET)], &[], 1, &colls(1), 0, 4);
        assert_eq!(ch.handle_in, vec![0]);
        assert_eq!(ch.plan.limit_argv, Some(2));
        assert_eq!(ch.plan.offset_argv, Some(3));
        assert!(ch.plan.terms[0].is_in);
    }

    #[test]
    fn roundtrip() {
        let ch = best_index(&[c(1, op::EQ), c(0, op::LIKE), c(-1, op::LIMIT)], &[(0, true)], 0xff, &colls(3), 1, 8);
        let s = ch.plan.encode();
        assert_eq!(s, "1;c=1:2:1:BINARY:0,0:65:2:BINARY:0;o=0:d:BINARY;l=3;u=ff");
        assert_eq!(Plan::decode(&s).unwrap(), ch.plan);
        assert!(Plan::decode("2;x").is_err());
        assert!(Plan::decode("1;c=1:2").is_err());
    }
}
