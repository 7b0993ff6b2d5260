//! Rewrite of a parsed aggregate query into per-shard partial queries and one final query over
//! a scratch database (pure: produces SQL text; `vtab::agg_tvf` runs it).
//!
//! Shapes (k = index of an aggregate call, j = index of a GROUP BY expression):
//!
//! ```text
//! shards  p:  SELECT g0.., count(*), min(rowid), <states> FROM data [WHERE (w)] [GROUP BY 1..n]
//!         mK: SELECT g0.., min(x), _shardvt_rid FROM (SELECT rowid AS _shardvt_rid, * FROM data
//!             [WHERE (w)] ORDER BY rowid) [GROUP BY 1..n]                             -- min/max(x)
//!         dK: SELECT DISTINCT g0.., x FROM data WHERE (w) AND (x) IS NOT NULL        -- agg(DISTINCT x)
//!         cK: SELECT g0.., x, sep, rowid FROM data WHERE (w) AND (x) IS NOT NULL     -- group_concat(x, sep)
//!         cK: SELECT g0.., x, min(rowid) FROM data WHERE .. GROUP BY 1..n+1          -- group_concat(DISTINCT x)
//! scratch inner: SELECT (<group value>) AS g0.., <combine_k> AS aK FROM p [GROUP BY p.g0..]
//!         final: SELECT <items over q.gJ / q.aK> FROM (inner) AS q [WHERE <having>]
//!                [ORDER BY ..] [LIMIT ..]
//! ```
//!
//! Combining (exact): count → sum of counts (0 when no rows); min/max → the least/greatest shard
//! value, ties to the smallest rowid (each shard reports its value with the rowid of its first row
//! holding it, through SQLite's bare-column rule for a lone min()/max(); columns declared with the
//! argument's collation), so the value kept is the one a native rowid-order scan keeps even when
//! equal values differ in form ('A'/'a' under NOCASE, 1/1.0). A group's value comes from the row
//! SQLite's own rule picks: with a min()/max() in the query, the row where the last of them (in
//! AggInfo order: select list, ORDER BY, HAVING) took its final value; else the group's first
//! row. sum/total/avg keep five states
//! per shard: non-NULL count, count of values SQLite's sum() treats as non-integer, the sums of
//! the high and low 32 bits of the integer values (cannot overflow), and total(x). An all-integer
//! sum is rebuilt exactly as hi·2³² + lo and raises SQLite's own "integer overflow" error when it
//! does not fit 64 bits; otherwise the REAL result is the total of the shard totals. avg is
//! (that sum as REAL) / count. DISTINCT aggregates and group_concat gather values, and the
//! scratch query runs the native aggregate over their union (group_concat in rowid order).
//!
//! Expressions are token lists. In the outer expressions (select list, HAVING, ORDER BY) an
//! aggregate call becomes `q.aK`, a GROUP BY expression becomes `q.gJ` (matched on normalised
//! tokens, where it is a whole sub-expression), and any other column reference is refused (a
//! "bare column" takes its value from an arbitrary row). GROUP BY columns keep the source
//! expression's declared type (affinity) and collation in the scratch tables, so grouping,
//! comparisons and ORDER BY behave as on the table.

use std::collections::HashSet;

use super::lex::{join, Tok, Token};
use super::parse::{matching_paren, refuse, split_commas, unique_names, AggQuery};
use crate::config::quote_ident;
use crate::error::{Error, Result};
use crate::shard::SHARD_TABLE;

/// One column of the sharded table, as the planner needs it.
#[derive(Debug, Clone)]
pub struct ColumnInfo {
    pub name: String,
    pub decltype: String,
    /// Upper-case collation, "BINARY" when none.
    pub collation: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Count,
    Sum,
    Total,
    Avg,
    Min,
    Max,
    GroupConcat,
}

pub const SUPPORTED: &str = "count, sum, total, avg, min, max, group_concat";

#[derive(Debug, Clone)]
struct AggCall {
    func: Func,
    distinct: bool,
    /// Arguments (empty for count(*) / count()).
    args: Vec<Vec<Token>>,
    key: String,
}

/// A partial query: run `shard_sql` on every shard, insert each row into scratch `table`.
#[derive(Debug, Clone, PartialEq)]
pub struct Partial {
    pub table: String,
    pub shard_sql: String,
    pub ncols: usize,
}

impl Partial {
    pub fn insert_sql(&self) -> String {
        let marks: Vec<String> = (1..=self.ncols).map(|i| format!("?{i}")).collect();
        format!("INSERT INTO {} VALUES ({})", self.table, marks.join(", "))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AggPlan {
    /// Result-column names (unique).
    pub names: Vec<String>,
    /// Scratch schema: run first, in order.
    pub scratch_ddl: Vec<String>,
    pub partials: Vec<Partial>,
    /// The final query on the scratch database; its columns are `names`.
    pub final_sql: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct ExprType {
    decl: Option<String>,
    coll: Option<String>,
    /// The collation comes from an explicit COLLATE (it then propagates through functions).
    explicit: bool,
}

struct Planner<'a> {
    cols: &'a [ColumnInfo],
    host_aggs: &'a HashSet<String>,
    quals: Vec<String>,
    groups: Vec<Vec<Token>>,
    aggs: Vec<AggCall>,
}

/// Builds the plan. `host_aggs`: lower-case names of every aggregate or window function the host
/// knows (any not in [`SUPPORTED`] is refused rather than mistaken for a scalar function).
pub fn plan(q: &AggQuery, cols: &[ColumnInfo], host_aggs: &HashSet<String>) -> Result<AggPlan> {
    let mut p = Planner { cols, host_aggs, quals: q.qualifiers.clone(), groups: vec![], aggs: vec![] };
    let items: Vec<Vec<Token>> = q.items.iter().map(|i| p.strip(&i.expr)).collect();

    // GROUP BY: positions and aliases name result columns (SQLite's rule: columns first).
    for g in &q.group_by {
        let g = p.strip(g);
        let resolved = if g.len() == 1 && g[0].tok == Tok::Num && g[0].text.bytes().all(|b| b.is_ascii_digit()) {
            let n: usize = g[0].text.parse().unwrap_or(0);
            if n == 0 || n > items.len() {
                return Err(Error::config(format!(
                    "sharded_agg: GROUP BY term {n} out of range - should be between 1 and {}",
                    items.len()
                )));
            }
            items[n - 1].clone()
        } else if let Some(i) = single_ident(&g).filter(|n| p.column(n).is_none()).and_then(|n| {
            q.items.iter().position(|it| it.alias.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(n)))
        }) {
            items[i].clone()
        } else {
            g
        };
        if p.contains_agg(&resolved)? {
            return Err(Error::config("sharded_agg: aggregate functions are not allowed in the GROUP BY clause"));
        }
        p.groups.push(resolved);
    }

    let mut any_agg = !p.groups.is_empty();
    for e in items.iter().chain(q.having.iter()) {
        any_agg = any_agg || p.contains_agg(e)?;
    }
    if !any_agg {
        return Err(Error::config(
            "sharded_agg: the query has no aggregate function and no GROUP BY (query the sharded table directly)",
        ));
    }

    // Outer expressions.
    let names = unique_names(q);
    let mut outer_items = Vec::new();
    for (i, it) in q.items.iter().enumerate() {
        let e = p.rewrite(&items[i])?;
        outer_items.push(format!("{e} AS {}", quote_ident(it.alias.as_deref().unwrap_or(&names[i]))));
    }
    // Aggregates are numbered as SQLite's AggInfo numbers them: select list, ORDER BY, HAVING.
    let mut order = Vec::new();
    for t in &q.order_by {
        let e = p.strip(&t.expr);
        let is_pos = e.len() == 1 && e[0].tok == Tok::Num;
        let is_alias = single_ident(&e)
            .is_some_and(|n| q.items.iter().any(|it| it.alias.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(n))));
        let text = if is_pos || is_alias { join(&e) } else { p.rewrite(&e)? };
        order.push(if t.suffix.is_empty() { text } else { format!("{text} {}", t.suffix) });
    }
    let having = match &q.having {
        Some(h) => Some(p.rewrite(&p.strip(h))?),
        None => None,
    };
    p.build(q, names, outer_items, having, order)
}

fn single_ident(t: &[Token]) -> Option<&str> {
    if t.len() == 1 {
        t[0].ident()
    } else {
        None
    }
}

/// `(x)`: the expression parenthesised for safe embedding.
fn par(t: &[Token]) -> String {
    format!("({})", join(t))
}

impl<'a> Planner<'a> {
    /// The declared type/collation of column `name` (or the rowid).
    fn column(&self, name: &str) -> Option<ExprType> {
        if let Some(c) = self.cols.iter().find(|c| c.name.eq_ignore_ascii_case(name)) {
            return Some(ExprType {
                decl: Some(c.decltype.clone()).filter(|d| !d.trim().is_empty()),
                coll: Some(c.collation.clone()).filter(|c| c != "BINARY"),
                explicit: false,
            });
        }
        if ["rowid", "oid", "_rowid_"].iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Some(ExprType { decl: Some("INTEGER".into()), coll: None, explicit: false });
        }
        None
    }

    /// Drops `t.` / `schema.t.` / `alias.` qualifiers (shard queries read table `data`).
    fn strip(&self, t: &[Token]) -> Vec<Token> {
        let mut out = Vec::with_capacity(t.len());
        let mut i = 0;
        while i < t.len() {
            let qualifies = t[i].ident().is_some_and(|n| self.quals.iter().any(|q| q.eq_ignore_ascii_case(n)))
                && t.get(i + 1).is_some_and(|x| x.is_op("."))
                && t.get(i + 2).is_some_and(|x| x.ident().is_some() || x.is_op("*"))
                && !(i > 0 && t[i - 1].is_op("."));
            if qualifies {
                i += 2;
                // schema.table.column: the table name follows
                while t[i].ident().is_some_and(|n| self.quals.iter().any(|q| q.eq_ignore_ascii_case(n)))
                    && t.get(i + 1).is_some_and(|x| x.is_op("."))
                    && t.get(i + 2).is_some_and(|x| x.ident().is_some())
                {
                    i += 2;
                }
                continue;
            }
            out.push(t[i].clone());
            i += 1;
        }
        out
    }

    /// The column referenced by the identifier at `i`, if it is one.
    fn column_ref_at(&self, t: &[Token], i: usize) -> Option<String> {
        let name = t[i].ident()?;
        if t.get(i + 1).is_some_and(|x| x.is_op("(") || x.is_op(".")) {
            return None;
        }
        if i > 0 && (t[i - 1].is_op(".") || t[i - 1].is_kw("COLLATE") || t[i - 1].is_kw("AS")) {
            return None;
        }
        self.column(name).map(|_| name.to_string())
    }

    fn contains_agg(&self, t: &[Token]) -> Result<bool> {
        for i in 0..t.len() {
            if self.agg_at(t, i)?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// An aggregate call starting at `i`: the call and the index after its `)`.
    fn agg_at(&self, t: &[Token], i: usize) -> Result<Option<(AggCall, usize)>> {
        let name = match &t[i].tok {
            Tok::Ident { name, .. } => name.to_ascii_lowercase(),
            _ => return Ok(None),
        };
        if !t.get(i + 1).is_some_and(|x| x.is_op("(")) || (i > 0 && t[i - 1].is_op(".")) {
            return Ok(None);
        }
        let close = matching_paren(t, i + 1).ok_or_else(|| Error::config("sharded_agg: unbalanced parentheses"))?;
        let func = match name.as_str() {
            "count" => Func::Count,
            "sum" => Func::Sum,
            "total" => Func::Total,
            "avg" => Func::Avg,
            "min" => Func::Min,
            "max" => Func::Max,
            "group_concat" => Func::GroupConcat,
            _ => {
                if self.host_aggs.contains(&name) {
                    return Err(refuse(&format!("aggregate function {name}() (supported: {SUPPORTED})")));
                }
                return Ok(None);
            }
        };
        let mut inner = &t[i + 2..close];
        let mut distinct = false;
        if inner.first().is_some_and(|x| x.is_kw("DISTINCT")) {
            distinct = true;
            inner = &inner[1..];
        } else if inner.first().is_some_and(|x| x.is_kw("ALL")) {
            inner = &inner[1..];
        }
        let mut args = if inner.is_empty() { vec![] } else { split_commas(inner) };
        if matches!(func, Func::Min | Func::Max) && args.len() != 1 && !distinct {
            return Ok(None); // min(a, b) / max(a, b): the scalar functions
        }
        let mut depth = 0;
        for x in inner {
            if x.is_op("(") {
                depth += 1;
            } else if x.is_op(")") {
                depth -= 1;
            } else if depth == 0 && x.is_kw("ORDER") {
                return Err(refuse(&format!("ORDER BY inside {name}()")));
            }
        }
        if t.get(close + 1).is_some_and(|x| x.is_kw("FILTER")) {
            return Err(refuse(&format!("FILTER on {name}()")));
        }
        let star = args.len() == 1 && args[0].len() == 1 && args[0][0].is_op("*");
        let wrong = || Error::config(format!("sharded_agg: wrong number of arguments to function {name}()"));
        if star {
            if func != Func::Count || distinct {
                return Err(wrong());
            }
            args.clear();
        }
        match func {
            Func::Count if args.len() > 1 => return Err(wrong()),
            Func::Count if args.is_empty() && distinct => return Err(wrong()),
            Func::Sum | Func::Total | Func::Avg | Func::Min | Func::Max if args.len() != 1 => return Err(wrong()),
            Func::GroupConcat if args.is_empty() || args.len() > 2 => return Err(wrong()),
            Func::GroupConcat if distinct && args.len() != 1 => {
                return Err(Error::config("sharded_agg: DISTINCT aggregates must have exactly one argument"))
            }
            _ => {}
        }
        for a in &args {
            if a.is_empty() {
                return Err(Error::config(format!("sharded_agg: empty argument in {name}()")));
            }
            if self.contains_agg(a)? {
                return Err(Error::config(format!("sharded_agg: misuse of aggregate: an aggregate inside {name}()")));
            }
        }
        let norm: Vec<String> = args.iter().map(|a| a.iter().map(|x| x.norm()).collect::<Vec<_>>().join(" ")).collect();
        let key = format!("{func:?}|{distinct}|{}", norm.join(","));
        Ok(Some((AggCall { func, distinct, args, key }, close + 1)))
    }

    /// Type and collation of an expression as SQLite derives them (column, CAST, COLLATE, `+`).
    fn expr_type(&self, t: &[Token]) -> Result<ExprType> {
        let n = t.len();
        let colls: Vec<usize> = (0..n).filter(|&i| t[i].is_kw("COLLATE")).collect();
        if !colls.is_empty() {
            if colls == [n - 2] && n >= 3 && t[n - 1].ident().is_some() {
                let mut e = self.expr_type(&t[..n - 2])?;
                e.coll = Some(t[n - 1].ident().unwrap().to_ascii_uppercase()).filter(|c| c != "BINARY");
                e.explicit = true;
                return Ok(e);
            }
            return Err(refuse(&format!("COLLATE inside the expression \"{}\" (write COLLATE last)", join(t))));
        }
        if n >= 2 && t[0].is_op("(") && matching_paren(t, 0) == Some(n - 1) {
            return self.expr_type(&t[1..n - 1]);
        }
        if n >= 2 && t[0].is_op("+") {
            let mut e = self.expr_type(&t[1..])?;
            e.decl = None;
            return Ok(e);
        }
        if n == 1 {
            if let Some(name) = t[0].ident() {
                return Ok(self.column(name).unwrap_or_default());
            }
        }
        if n >= 4 && t[0].is_kw("CAST") && t[1].is_op("(") && matching_paren(t, 1) == Some(n - 1) {
            let inner = &t[2..n - 1];
            let mut depth = 0;
            for (i, x) in inner.iter().enumerate() {
                if x.is_op("(") {
                    depth += 1;
                } else if x.is_op(")") {
                    depth -= 1;
                } else if depth == 0 && x.is_kw("AS") {
                    let e = self.expr_type(&inner[..i])?;
                    return Ok(ExprType { decl: Some(join(&inner[i + 1..])), coll: e.coll, explicit: e.explicit });
                }
            }
        }
        Ok(ExprType::default())
    }

    fn register(&mut self, a: AggCall) -> usize {
        match self.aggs.iter().position(|x| x.key == a.key) {
            Some(k) => k,
            None => {
                self.aggs.push(a);
                self.aggs.len() - 1
            }
        }
    }

    /// An outer expression over `q`: aggregates → q.aK, GROUP BY expressions → q.gJ.
    fn rewrite(&mut self, t: &[Token]) -> Result<String> {
        let mut out: Vec<String> = Vec::new();
        let mut order: Vec<usize> = (0..self.groups.len()).collect();
        order.sort_by_key(|&j| std::cmp::Reverse(self.groups[j].len()));
        let mut i = 0;
        'scan: while i < t.len() {
            if let Some((call, end)) = self.agg_at(t, i)? {
                let k = self.register(call);
                out.push(format!("q.a{k}"));
                i = end;
                continue;
            }
            for &j in &order {
                let g = &self.groups[j];
                if self.group_matches(t, i, g) {
                    out.push(format!("q.g{j}"));
                    i += g.len();
                    continue 'scan;
                }
            }
            if let Some(c) = self.column_ref_at(t, i) {
                return Err(Error::config(format!(
                    "sharded_agg: column \"{c}\" is used outside an aggregate function but is not a GROUP BY \
                     expression; its value would come from an arbitrary row, so it is refused (add it to GROUP BY \
                     or wrap it in min()/max())"
                )));
            }
            out.push(t[i].text.clone());
            i += 1;
        }
        Ok(out.join(" "))
    }

    /// Whether group expression `g` occurs at `i` as a whole sub-expression.
    fn group_matches(&self, t: &[Token], i: usize, g: &[Token]) -> bool {
        let len = g.len();
        if i + len > t.len() || !(0..len).all(|k| t[i + k].norm() == g[k].norm()) {
            return false;
        }
        if i == 0 && len == t.len() {
            return true;
        }
        let prev = if i > 0 { Some(&t[i - 1]) } else { None };
        let next = t.get(i + len);
        let left_closed = prev.is_none_or(|p| p.is_op("(") || p.is_op(","));
        let right_closed = next.is_none_or(|n| n.is_op(")") || n.is_op(","));
        if left_closed && right_closed && (prev.is_some() || next.is_some()) {
            return true;
        }
        let primary = len == 1
            || (g[0].ident().is_some() && g[1].is_op("(") && matching_paren(g, 1) == Some(len - 1))
            || (g[0].is_op("(") && matching_paren(g, 0) == Some(len - 1));
        if !primary || prev.is_some_and(|p| p.is_op(".") || p.is_kw("COLLATE") || p.is_kw("AS")) {
            return false;
        }
        if len == 1 && next.is_some_and(|n| n.is_op("(") || n.is_op(".")) {
            return false;
        }
        true
    }

    fn build(
        &self,
        q: &AggQuery,
        names: Vec<String>,
        outer_items: Vec<String>,
        having: Option<String>,
        order: Vec<String>,
    ) -> Result<AggPlan> {
        let ng = self.groups.len();
        let mut gdefs = Vec::new();
        for (j, g) in self.groups.iter().enumerate() {
            let ty = self.expr_type(g)?;
            let mut d = format!("g{j}");
            if let Some(decl) = ty.decl {
                d.push(' ');
                d.push_str(&decl);
            }
            if let Some(c) = ty.coll {
                d.push_str(&format!(" COLLATE {c}"));
            }
            gdefs.push(d);
        }
        let gsel: Vec<String> = self.groups.iter().map(|g| par(g)).collect();
        let gpos = |n: usize| (1..=n).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
        let where_sql = q.where_.as_ref().map(|w| par(&self.strip(w)));
        let where_and = |extra: &str| match &where_sql {
            Some(w) => format!(" WHERE {w} AND {extra}"),
            None => format!(" WHERE {extra}"),
        };
        let corr = |tab: &str| {
            if ng == 0 {
                "1".to_string()
            } else {
                (0..ng).map(|j| format!("{tab}.g{j} IS p.g{j}")).collect::<Vec<_>>().join(" AND ")
            }
        };
        let gcols = |prefix: &str| (0..ng).map(|j| format!("{prefix}g{j}")).collect::<Vec<_>>();

        // p: one row per shard and group. State 0 is count(*) (it also makes the inner query an
        // aggregate when every call is gathered elsewhere).
        // State 1 is the group's first rowid: the group's value is taken from that row, as a
        // native GROUP BY does when equal values differ in form ('A'/'a' under NOCASE, 1/1.0).
        let mut states: Vec<(String, String)> = vec![("count(*)".into(), "s0".into()), ("min(rowid)".into(), "s1".into())];
        let mut ddl = Vec::new();
        let mut partials = Vec::new();
        let mut combine = Vec::new();
        let push = |states: &mut Vec<(String, String)>, sql: String, coll: Option<&str>| -> String {
            let name = format!("s{}", states.len());
            let def = match coll {
                Some(c) => format!("{name} COLLATE {c}"),
                None => name.clone(),
            };
            states.push((sql, def));
            format!("p.{name}")
        };
        for (k, a) in self.aggs.iter().enumerate() {
            let x = a.args.first().map(|x| par(x)).unwrap_or_default();
            let c = match (a.func, a.distinct) {
                (Func::Count, false) => {
                    let s = push(&mut states, if a.args.is_empty() { "count(*)".into() } else { format!("count({x})") }, None);
                    format!("coalesce(sum({s}), 0)")
                }
                (Func::Min | Func::Max, _) => {
                    // Each shard's min/max with the rowid of its first row holding it (SQLite's
                    // bare-column rule for a lone min()/max()); the winner is the least/greatest
                    // value, ties to the smallest rowid: the value a native scan keeps.
                    let ty = self.expr_type(&a.args[0])?;
                    let (f, dir) = if a.func == Func::Min { ("min", "") } else { ("max", " DESC") };
                    let tab = format!("m{k}");
                    let mut defs = gdefs.clone();
                    defs.push(match &ty.coll {
                        Some(c) => format!("v COLLATE {c}"),
                        None => "v".into(),
                    });
                    defs.push("rid".into());
                    ddl.push(format!("CREATE TABLE {tab}({})", defs.join(", ")));
                    let mut idx = gcols("");
                    idx.push("v".into());
                    ddl.push(format!("CREATE INDEX {tab}_g ON {tab}({})", idx.join(", ")));
                    // The shard must meet the rows in rowid order (an index chosen for WHERE or
                    // GROUP BY would change which of equal values is first): read them through
                    // an ordered subquery, or NOT INDEXED when the expressions name the rowid
                    // (a subquery has none).
                    let names_rowid = self.groups.iter().chain(a.args.iter()).flatten().any(|t| {
                        t.ident().is_some_and(|n| ["rowid", "oid", "_rowid_"].iter().any(|r| r.eq_ignore_ascii_case(n)))
                    });
                    let mut sel = gsel.clone();
                    sel.push(format!("{f}({x})"));
                    let w = where_sql.as_ref().map(|w| format!(" WHERE {w}")).unwrap_or_default();
                    let mut shard_sql = if names_rowid {
                        sel.push("rowid".into());
                        format!("SELECT {} FROM {SHARD_TABLE} NOT INDEXED{w}", sel.join(", "))
                    } else {
                        sel.push("_shardvt_rid".into());
                        format!(
                            "SELECT {} FROM (SELECT rowid AS _shardvt_rid, * FROM {SHARD_TABLE}{w} ORDER BY rowid)",
                            sel.join(", ")
                        )
                    };
                    if ng > 0 {
                        shard_sql.push_str(&format!(" GROUP BY {}", gpos(ng)));
                    }
                    partials.push(Partial { table: tab.clone(), shard_sql, ncols: ng + 2 });
                    let pick = format!("(SELECT v FROM {tab} WHERE {} AND v IS NOT NULL ORDER BY v{dir}, rid LIMIT 1)", corr(&tab));
                    match (&ty.coll, ty.explicit) {
                        (Some(c), true) => format!("({pick} COLLATE {c})"),
                        _ => pick,
                    }
                }
                (Func::Sum | Func::Total | Func::Avg, false) => {
                    let cnt = push(&mut states, format!("count({x})"), None);
                    let nonint = push(
                        &mut states,
                        format!(
                            "count(CASE WHEN typeof({x}) IN ('real', 'blob') THEN 1 END) + \
                             (typeof(sum(CASE WHEN typeof({x}) = 'text' THEN {x} END)) = 'real')"
                        ),
                        None,
                    );
                    let ival = format!("CASE WHEN typeof({x}) IN ('integer', 'text') THEN CAST({x} AS INTEGER)");
                    let hi = push(&mut states, format!("sum({ival} >> 32 END)"), None);
                    let lo = push(&mut states, format!("sum({ival} & 4294967295 END)"), None);
                    let tot = push(&mut states, format!("total({x})"), None);
                    let h2 = format!("(coalesce(sum({hi}), 0) + (coalesce(sum({lo}), 0) >> 32))");
                    let l2 = format!("(coalesce(sum({lo}), 0) & 4294967295)");
                    let int = format!(
                        "CASE WHEN {h2} BETWEEN -2147483648 AND 2147483647 THEN {h2} * 4294967296 + {l2} \
                         ELSE abs({h2} - {h2} - 9223372036854775807 - 1) END"
                    );
                    let real = format!("(CASE WHEN coalesce(sum({nonint}), 0) > 0 THEN total({tot}) ELSE {h2} * 4294967296.0 + {l2} END)");
                    match a.func {
                        Func::Sum => format!(
                            "CASE WHEN coalesce(sum({cnt}), 0) = 0 THEN NULL WHEN sum({nonint}) > 0 THEN total({tot}) ELSE {int} END"
                        ),
                        Func::Total => real,
                        _ => format!("CASE WHEN coalesce(sum({cnt}), 0) = 0 THEN NULL ELSE {real} / sum({cnt}) END"),
                    }
                }
                (Func::Count | Func::Sum | Func::Total | Func::Avg, true) => {
                    let ty = self.expr_type(&a.args[0])?;
                    let tab = format!("d{k}");
                    let mut defs = gdefs.clone();
                    defs.push(match &ty.coll {
                        Some(c) => format!("v COLLATE {c}"),
                        None => "v".into(),
                    });
                    ddl.push(format!("CREATE TABLE {tab}({})", defs.join(", ")));
                    if ng > 0 {
                        ddl.push(format!("CREATE INDEX {tab}_g ON {tab}({})", gcols("").join(", ")));
                    }
                    let mut sel = gsel.clone();
                    sel.push(x.clone());
                    partials.push(Partial {
                        table: tab.clone(),
                        shard_sql: format!(
                            "SELECT DISTINCT {} FROM {SHARD_TABLE}{}",
                            sel.join(", "),
                            where_and(&format!("{x} IS NOT NULL"))
                        ),
                        ncols: ng + 1,
                    });
                    let f = match a.func {
                        Func::Count => "count",
                        Func::Sum => "sum",
                        Func::Total => "total",
                        _ => "avg",
                    };
                    format!("(SELECT {f}(DISTINCT {tab}.v) FROM {tab} WHERE {})", corr(&tab))
                }
                (Func::GroupConcat, distinct) => {
                    let tab = format!("c{k}");
                    let mut defs = gdefs.clone();
                    let mut sel = gsel.clone();
                    sel.push(x.clone());
                    let shard_sql;
                    let comb;
                    if distinct {
                        let ty = self.expr_type(&a.args[0])?;
                        defs.push(match &ty.coll {
                            Some(c) => format!("v COLLATE {c}"),
                            None => "v".into(),
                        });
                        defs.push("rid".into());
                        sel.push("min(rowid)".into());
                        shard_sql = format!(
                            "SELECT {} FROM {SHARD_TABLE}{} GROUP BY {}",
                            sel.join(", "),
                            where_and(&format!("{x} IS NOT NULL")),
                            gpos(ng + 1)
                        );
                        comb = format!(
                            "(SELECT group_concat(v) FROM (SELECT v, min(rid) AS r FROM {tab} WHERE {} GROUP BY v ORDER BY r))",
                            corr(&tab)
                        );
                    } else {
                        defs.extend(["v".to_string(), "sep".into(), "rid".into()]);
                        let two = a.args.len() == 2;
                        sel.push(if two { par(&a.args[1]) } else { "NULL".into() });
                        sel.push("rowid".into());
                        shard_sql = format!("SELECT {} FROM {SHARD_TABLE}{}", sel.join(", "), where_and(&format!("{x} IS NOT NULL")));
                        comb = format!(
                            "(SELECT group_concat({}) FROM (SELECT v, sep FROM {tab} WHERE {} ORDER BY rid))",
                            if two { "v, sep" } else { "v" },
                            corr(&tab)
                        );
                    }
                    let ncols = defs.len();
                    ddl.push(format!("CREATE TABLE {tab}({})", defs.join(", ")));
                    let mut idx = gcols("");
                    idx.push("rid".into());
                    ddl.push(format!("CREATE INDEX {tab}_g ON {tab}({})", idx.join(", ")));
                    partials.push(Partial { table: tab, shard_sql, ncols });
                    comb
                }
            };
            combine.push(c);
        }

        // p itself, first.
        let mut pdefs = gdefs.clone();
        pdefs.extend(states.iter().map(|(_, d)| d.clone()));
        ddl.insert(0, format!("CREATE TABLE p({})", pdefs.join(", ")));
        let mut psel = gsel.clone();
        psel.extend(states.iter().map(|(s, _)| s.clone()));
        let mut psql = format!("SELECT {} FROM {SHARD_TABLE}", psel.join(", "));
        if let Some(w) = &where_sql {
            psql.push_str(&format!(" WHERE {w}"));
        }
        if ng > 0 {
            psql.push_str(&format!(" GROUP BY {}", gpos(ng)));
        }
        partials.insert(0, Partial { table: "p".into(), shard_sql: psql, ncols: pdefs.len() });

        if ng > 0 {
            let mut idx = gcols("");
            idx.push("s1".into());
            ddl.insert(1, format!("CREATE INDEX p_g ON p({})", idx.join(", ")));
        }
        // Which row a group's value comes from (SQLite's rule, visible when equal values differ
        // in form): with a min()/max() in the query, the row where the last of them (in AggInfo
        // order) took its final value — its first row holding the extremum, or the group's last
        // row when all its arguments are NULL; otherwise the group's first row.
        let same_group = (0..ng).map(|j| format!("x.g{j} IS p.g{j}")).collect::<Vec<_>>().join(" AND ");
        let rep_from = match self.aggs.iter().rposition(|a| matches!(a.func, Func::Min | Func::Max)) {
            Some(k) => {
                let dir = if self.aggs[k].func == Func::Min { "" } else { " DESC" };
                format!(
                    "FROM m{k} AS x WHERE {same_group} ORDER BY x.v IS NULL, x.v{dir}, \
                     CASE WHEN x.v IS NULL THEN -x.rid ELSE x.rid END LIMIT 1"
                )
            }
            None => format!("FROM p AS x WHERE {same_group} ORDER BY x.s1 LIMIT 1"),
        };
        let mut inner: Vec<String> = Vec::new();
        for (j, g) in self.groups.iter().enumerate() {
            let coll = self.expr_type(g)?.coll.map(|c| format!(" COLLATE {c}")).unwrap_or_default();
            inner.push(format!("(SELECT x.g{j} {rep_from}){coll} AS g{j}"));
        }
        inner.push("coalesce(sum(p.s0), 0) AS n".into());
        inner.extend(combine.iter().enumerate().map(|(k, c)| format!("{c} AS a{k}")));
        let mut inner_sql = format!("SELECT {} FROM p", inner.join(", "));
        if ng > 0 {
            inner_sql.push_str(&format!(" GROUP BY {}", gcols("p.").join(", ")));
        }
        let mut final_sql = format!("SELECT {} FROM ({inner_sql}) AS q", outer_items.join(", "));
        if let Some(h) = having {
            final_sql.push_str(&format!(" WHERE {h}"));
        }
        if !order.is_empty() {
            final_sql.push_str(&format!(" ORDER BY {}", order.join(", ")));
        }
        if let Some(l) = &q.limit {
            final_sql.push(' ');
            final_sql.push_str(l);
        }
        Ok(AggPlan { names, scratch_ddl: ddl, partials, final_sql })
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    fn cols() -> Vec<ColumnInfo> {
        let c = |n: &str, t: &str, coll: &str| ColumnInfo { name: n.into(), decltype: t.into(), collation: coll.into() };
        vec![c("id", "INTEGER", "BINARY"), c("kind", "TEXT", "BINARY"), c("ts", "INTEGER", "BINARY"), c("tag", "TEXT", "NOCASE")]
    }

    fn host() -> HashSet<String> {
        ["count", "sum", "min", "max", "json_group_array", "row_number", "string_agg"].iter().map(|s| s.to_string()).collect()
    }

    fn pl(sql: &str) -> Result<AggPlan> {
        plan(&parse(sql)?, &cols(), &host())
    }

    fn err(sql: &str) -> String {
        pl(sql).unwrap_err().message
    }

    #[test]
    fn brief_example() {
        let p = pl("SELECT kind, count(*) AS n, avg(ts) AS avg_ts FROM events WHERE ts > 5 GROUP BY kind").unwrap();
        assert_eq!(p.names, ["kind", "n", "avg_ts"]);
        assert_eq!(p.partials.len(), 1);
        let s = &p.partials[0].shard_sql;
        assert!(s.starts_with("SELECT (kind), count(*), min(rowid), count(*), count((ts)),"), "{s}");
        assert!(s.ends_with("FROM data WHERE (ts > 5) GROUP BY 1"), "{s}");
        assert!(p.scratch_ddl[0].starts_with("CREATE TABLE p(g0 TEXT, s0, s1, s2,"), "{}", p.scratch_ddl[0]);
        assert_eq!(p.scratch_ddl[1], "CREATE INDEX p_g ON p(g0, s1)");
        assert!(p.final_sql.starts_with("SELECT q.g0 AS \"kind\", q.a0 AS \"n\", q.a1 AS \"avg_ts\" FROM (SELECT (SELECT x.g0 FROM p AS x WHERE x.g0 IS p.g0 ORDER BY x.s1 LIMIT 1) AS g0,"), "{}", p.final_sql);
        assert!(p.final_sql.ends_with("FROM p GROUP BY p.g0) AS q"), "{}", p.final_sql);
        assert_eq!(p.partials[0].insert_sql(), format!("INSERT INTO p VALUES ({})", (1..=p.partials[0].ncols).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")));
    }

    #[test]
    fn aggregates_are_shared_and_rewritten() {
        let p = pl("SELECT e.kind || '!' k, sum(ts) / count(*), count(*) FROM events e GROUP BY kind HAVING count(*) > 1 AND kind <> 'x' ORDER BY k, sum(ts) DESC, 2 LIMIT 1, 2").unwrap();
        assert!(p.final_sql.starts_with("SELECT q.g0 || '!' AS \"k\", q.a0 / q.a1 AS \"sum(ts) / count(*)\", q.a1 AS \"count(*)\""), "{}", p.final_sql);
        assert!(p.final_sql.ends_with("WHERE q.a1 > 1 AND q.g0 <> 'x' ORDER BY k, q.a0 DESC, 2 LIMIT 1 , 2"), "{}", p.final_sql);
    }

    #[test]
    fn group_by_positions_aliases_and_expressions() {
        let p = pl("SELECT substr(kind, 1, 2) AS pre, count(*) FROM t GROUP BY pre").unwrap();
        assert!(p.partials[0].shard_sql.starts_with("SELECT (substr ( kind , 1 , 2 )),"), "{}", p.partials[0].shard_sql);
        assert!(p.final_sql.starts_with("SELECT q.g0 AS \"pre\""));
        let p = pl("SELECT upper(kind), max(ts) FROM t GROUP BY 1").unwrap();
        assert!(p.final_sql.starts_with("SELECT q.g0 AS"));
        let p = pl("SELECT lower(upper(kind)), count(*) FROM t GROUP BY upper(kind)").unwrap();
        assert!(p.final_sql.starts_with("SELECT lower ( q.g0 ) AS"), "{}", p.final_sql);
        let p = pl("SELECT ts + 1, count(*) FROM t GROUP BY ts + 1 ORDER BY (ts + 1) DESC").unwrap();
        assert!(p.final_sql.starts_with("SELECT q.g0 AS \"ts + 1\""), "{}", p.final_sql);
        assert!(p.final_sql.contains("ORDER BY ( q.g0 ) DESC"), "{}", p.final_sql);
        assert!(err("SELECT count(*) FROM t GROUP BY 3").contains("out of range"));
        assert!(err("SELECT count(*) AS n FROM t GROUP BY n").contains("not allowed in the GROUP BY"));
    }

    #[test]
    fn collations_and_types_follow_the_expression() {
        let p = pl("SELECT tag, min(tag), count(DISTINCT tag), max(kind COLLATE NOCASE) FROM t GROUP BY tag").unwrap();
        assert_eq!(p.scratch_ddl[0], "CREATE TABLE p(g0 TEXT COLLATE NOCASE, s0, s1)");
        assert!(p.scratch_ddl.iter().any(|d| d == "CREATE TABLE m0(g0 TEXT COLLATE NOCASE, v COLLATE NOCASE, rid)"), "{:?}", p.scratch_ddl);
        assert!(p.scratch_ddl.iter().any(|d| d == "CREATE TABLE d1(g0 TEXT COLLATE NOCASE, v COLLATE NOCASE)"), "{:?}", p.scratch_ddl);
        assert!(p.final_sql.contains("((SELECT v FROM m2 WHERE m2.g0 IS p.g0 AND v IS NOT NULL ORDER BY v DESC, rid LIMIT 1) COLLATE NOCASE) AS a2"), "{}", p.final_sql);
        assert!(p.final_sql.contains("(SELECT x.g0 FROM m2 AS x WHERE x.g0 IS p.g0 ORDER BY x.v IS NULL, x.v DESC,"), "{}", p.final_sql);
        assert!(p.final_sql.contains("LIMIT 1) COLLATE NOCASE AS g0"), "{}", p.final_sql);
        let m = &p.partials[1];
        assert_eq!(m.shard_sql, "SELECT (tag), min((tag)), _shardvt_rid FROM (SELECT rowid AS _shardvt_rid, * FROM data ORDER BY rowid) GROUP BY 1");
        let p = pl("SELECT max(rowid) FROM t WHERE ts > 1").unwrap();
        assert_eq!(p.partials[1].shard_sql, "SELECT max((rowid)), rowid FROM data NOT INDEXED WHERE (ts > 1)");
        let p = pl("SELECT CAST(ts AS TEXT), count(*) FROM t GROUP BY CAST(ts AS TEXT)").unwrap();
        assert!(p.scratch_ddl[0].starts_with("CREATE TABLE p(g0 TEXT,"), "{}", p.scratch_ddl[0]);
        let p = pl("SELECT count(*) FROM t GROUP BY +tag").unwrap();
        assert!(p.scratch_ddl[0].starts_with("CREATE TABLE p(g0 COLLATE NOCASE,"), "{}", p.scratch_ddl[0]);
        assert!(err("SELECT count(*) FROM t GROUP BY (tag COLLATE NOCASE) || 'x'").contains("COLLATE inside"));
    }

    #[test]
    fn gathered_aggregates() {
        let p = pl("SELECT group_concat(kind, ';'), group_concat(DISTINCT kind), sum(DISTINCT ts) FROM t WHERE ts > 0").unwrap();
        assert_eq!(p.partials.len(), 4);
        assert_eq!(p.partials[1].shard_sql, "SELECT (kind), (';'), rowid FROM data WHERE (ts > 0) AND (kind) IS NOT NULL");
        assert_eq!(p.partials[2].shard_sql, "SELECT (kind), min(rowid) FROM data WHERE (ts > 0) AND (kind) IS NOT NULL GROUP BY 1");
        assert_eq!(p.partials[3].shard_sql, "SELECT DISTINCT (ts) FROM data WHERE (ts > 0) AND (ts) IS NOT NULL");
        assert!(p.final_sql.contains("(SELECT group_concat(v, sep) FROM (SELECT v, sep FROM c0 WHERE 1 ORDER BY rid)) AS a0"), "{}", p.final_sql);
        assert!(p.final_sql.contains("(SELECT sum(DISTINCT d2.v) FROM d2 WHERE 1) AS a2"), "{}", p.final_sql);
        // no GROUP BY: the inner query aggregates p (one row even when every shard is empty)
        assert!(p.final_sql.contains("coalesce(sum(p.s0), 0) AS n"));
        assert!(!p.final_sql.contains("GROUP BY p."));
    }

    #[test]
    fn scalar_min_max_and_functions_pass() {
        let p = pl("SELECT max(ts, 0), abs(sum(ts)), min(min(ts), 3) FROM t GROUP BY ts").unwrap();
        assert!(p.final_sql.starts_with("SELECT max ( q.g0 , 0 ) AS \"max(ts, 0)\", abs ( q.a0 ) AS"), "{}", p.final_sql);
        assert!(p.final_sql.contains("min ( q.a1 , 3 )"), "{}", p.final_sql);
    }

    #[test]
    fn refusals() {
        let cases = [
            ("SELECT kind, count(*) FROM t", "column \"kind\" is used outside an aggregate"),
            ("SELECT ts, count(*) FROM t GROUP BY kind", "column \"ts\""),
            ("SELECT count(*) FROM t GROUP BY kind HAVING ts > 1", "column \"ts\""),
            ("SELECT json_group_array(kind) FROM t", "aggregate function json_group_array()"),
            ("SELECT string_agg(kind, ',') FROM t", "string_agg()"),
            ("SELECT sum(count(*)) FROM t", "an aggregate inside sum()"),
            ("SELECT count(*) FILTER (WHERE ts > 1) FROM t", "FILTER on count()"),
            ("SELECT group_concat(kind ORDER BY ts) FROM t", "ORDER BY inside group_concat()"),
            ("SELECT sum(a, b) FROM t", "wrong number of arguments to function sum()"),
            ("SELECT count(DISTINCT *) FROM t", "wrong number"),
            ("SELECT group_concat(DISTINCT kind, ',') FROM t", "exactly one argument"),
            ("SELECT kind FROM t", "no aggregate function and no GROUP BY"),
        ];
        for (sql, want) in cases {
            let e = err(sql);
            assert!(e.contains(want), "{sql}: {e}");
        }
        // a function the host does not list as aggregate is scalar
        assert!(pl("SELECT myfunc(sum(ts)) FROM t").is_ok());
        assert!(pl("SELECT count() FROM t").unwrap().partials[0].shard_sql.contains("min(rowid), count(*)"));
    }
}
