//! Exact cross-shard aggregation (pure): parse a restricted aggregate SELECT over one sharded
//! table and rewrite it into per-shard partial queries plus one final query.
//!
//! WHAT. A virtual table never sees GROUP BY, so `SELECT kind, count(*) FROM events GROUP BY kind`
//! on a sharded table pulls every row through the host. `sharded_agg` (module) and
//! `shardvt_aggregate(sql)` (scalar, JSON) instead run partial aggregates inside every shard file
//! and combine them exactly. This folder holds the pure part: [`lex`] (tokens with source spans),
//! [`parse`] (the clauses), [`plan`] (the rewrite). `vtab::agg_tvf` runs a plan.
//!
//! HOW (see `plan` for the SQL shapes).
//! 1. Each shard runs `SELECT <group exprs>, <partial states> FROM data WHERE (<where>)
//!    GROUP BY <group exprs>` (WHERE verbatim, the table name and its qualifiers removed; the
//!    shard table is `data`), plus, per DISTINCT aggregate or group_concat, a query gathering
//!    the distinct values / the values with their rowids.
//! 2. Every shard's rows are read in full, one shard after the other (sequential, no parallel
//!    scans), and inserted
//!    into tables of a private in-memory scratch database whose group columns carry the group
//!    expression's declared type and collation.
//! 3. The scratch database runs `SELECT <select list over combined values> FROM (SELECT
//!    <group cols>, <combined aggregates> FROM p GROUP BY <group cols>) AS q WHERE <having>
//!    ORDER BY .. LIMIT ..`: HAVING, ORDER BY, LIMIT/OFFSET apply after combining.
//!
//! INVARIANTS.
//! - Combining is exact, never an approximation: count = Σ counts; min/max = min/max of partial
//!   min/max; avg = (exact sum)/(Σ counts), never an average of averages; an all-integer sum is
//!   rebuilt exactly from 32-bit halves and raises SQLite's "integer overflow" error when the
//!   total does not fit 64 bits (as native sum() does); total()/avg() are REAL; count(DISTINCT x)
//!   etc. union the per-shard distinct values and aggregate them again; group_concat gathers the
//!   values and concatenates them in rowid order.
//! - An aggregate query without GROUP BY returns one row even when no shard has a row
//!   (`count(*)` = 0, `sum` = NULL, `total` = 0.0).
//! - What cannot be computed exactly is refused with an error naming the construct.
//!
//! SUPPORTED: `count(*)`, `count()`, `count([DISTINCT] x)`, `sum`, `total`, `avg` (each
//! `[DISTINCT]`), `min(x)`, `max(x)`, `group_concat(x [, sep])`, `group_concat(DISTINCT x)`,
//! any scalar expression over aggregates and GROUP BY expressions (`sum(x)/count(*)`,
//! `kind || '!'`), GROUP BY on expressions, positions (`GROUP BY 1`) and aliases; HAVING, ORDER
//! BY (positions, aliases, expressions), LIMIT/OFFSET; `FROM t [AS a]` with `t.col` / `a.col`.
//!
//! REFUSED: joins, subqueries, compound SELECTs, WITH, SELECT DISTINCT, `*`, window functions,
//! FILTER, ORDER BY inside an aggregate, aggregates other than the supported ones (the host's
//! `pragma_function_list` names them: json_group_array, string_agg, user aggregates…), nested
//! aggregates, bare columns (a column outside every aggregate that is not a GROUP BY expression),
//! parameters, COLLATE anywhere but last in a GROUP BY / min / max / DISTINCT argument.
//!
//! DIFFERENCES FROM A NATIVE RUN (documented, not approximations of a defined answer):
//! - group_concat order: rowid order. A native table's group_concat order is unspecified; a full
//!   scan without an index gives rowid order, which is what this reproduces.
//! - Native sum() also raises "integer overflow" when an intermediate running total overflows
//!   even though the final total fits (an order-dependent effect); here only the final total
//!   counts. REAL sums add per-shard totals, so their last bits can differ from one native
//!   scan's order of additions.
//! - Values that compare equal but differ in form (`'A'`/`'a'` under NOCASE, `1`/`1.0`): a
//!   group's value and min()/max() follow SQLite's row rules for a rowid-order scan (`plan`); the
//!   value a DISTINCT aggregate keeps from such a set is not pinned (SQLite keeps the first seen).
//! - Limits of the exact integer sum: the low halves are summed in 64 bits, so more than 2³¹
//!   non-NULL values in one group would overflow them.

pub mod lex;
pub mod parse;
pub mod plan;

pub use parse::{parse, AggQuery};
pub use plan::{plan, AggPlan, ColumnInfo, Partial};
