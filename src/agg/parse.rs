//! The restricted SELECT accepted by `sharded_agg` / `shardvt_aggregate`, split into clauses (pure).
//!
//! Grammar (keywords case-insensitive; expressions are kept as token lists, not trees):
//!
//! ```text
//! query   := SELECT [ALL] item ("," item)* FROM table [[AS] alias]
//!            [WHERE expr] [GROUP BY expr ("," expr)*] [HAVING expr]
//!            [ORDER BY term ("," term)*] [LIMIT expr [(OFFSET | ",") expr]] [";"]
//! item    := expr [[AS] name]
//! table   := name | schema "." name
//! term    := expr [ASC | DESC] [NULLS (FIRST | LAST)]
//! ```
//!
//! Refused here (by construct, with a message naming it): anything but one SELECT (WITH, VALUES,
//! compound SELECT, several statements), SELECT DISTINCT, `*`, subqueries (any nested SELECT),
//! joins / table lists / table-valued functions / INDEXED BY in FROM, window functions (OVER,
//! WINDOW), and parameters. Aggregates are recognised later (`plan`).

use super::lex::{join, tokenize, Tok, Token};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct SelectItem {
    pub expr: Vec<Token>,
    /// `AS name` or a bare trailing name.
    pub alias: Option<String>,
    /// The result-column name: the alias, else a column reference's name, else the
    /// expression's source text (SQLite's rule).
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderTerm {
    pub expr: Vec<Token>,
    /// `ASC`/`DESC`/`NULLS FIRST|LAST` as written (may be empty).
    pub suffix: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AggQuery {
    pub items: Vec<SelectItem>,
    /// The FROM table as `name` or `schema.name` (for `with_table`).
    pub table: String,
    /// Names that may qualify a column (`t.x`): the table name, its alias, its schema.
    pub qualifiers: Vec<String>,
    pub where_: Option<Vec<Token>>,
    pub group_by: Vec<Vec<Token>>,
    pub having: Option<Vec<Token>>,
    pub order_by: Vec<OrderTerm>,
    /// The LIMIT clause verbatim (`LIMIT 5 OFFSET 2`), applied after combining.
    pub limit: Option<String>,
}

pub(crate) fn refuse(what: &str) -> Error {
    Error::config(format!("sharded_agg: {what} cannot be combined exactly across shards and is refused"))
}

/// Words that end an expression, so a following name is not an implicit alias of them, and
/// that can never be an implicit alias themselves.
const EXPR_END_WORDS: &[&str] = &["null", "end", "true", "false", "isnull", "notnull", "current_date", "current_time", "current_timestamp"];
const NOT_ALIAS_WORDS: &[&str] = &[
    "null", "end", "true", "false", "isnull", "notnull", "and", "or", "not", "is", "in", "like", "glob", "regexp", "match",
    "between", "escape", "collate", "then", "else", "when", "case", "cast", "asc", "desc", "from", "current_date",
    "current_time", "current_timestamp",
];

/// Index of the `)` matching the `(` at `open`.
pub(crate) fn matching_paren(t: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0i32;
    for (i, tok) in t.iter().enumerate().skip(open) {
        if tok.is_op("(") {
            depth += 1;
        } else if tok.is_op(")") {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

/// Splits at top-level commas.
pub(crate) fn split_commas(t: &[Token]) -> Vec<Vec<Token>> {
    let mut out = vec![Vec::new()];
    let mut depth = 0i32;
    for tok in t {
        if tok.is_op("(") {
            depth += 1;
        } else if tok.is_op(")") {
            depth -= 1;
        }
        if depth == 0 && tok.is_op(",") {
            out.push(Vec::new());
        } else {
            out.last_mut().unwrap().push(tok.clone());
        }
    }
    out
}

fn ends_operand(t: &Token) -> bool {
    match &t.tok {
        Tok::Ident { name, quoted } => *quoted || EXPR_END_WORDS.contains(&name.to_ascii_lowercase().as_str()) || !NOT_ALIAS_WORDS.contains(&name.to_ascii_lowercase().as_str()),
        Tok::Str | Tok::Num | Tok::Blob => true,
        Tok::Op(o) => o == ")",
        Tok::Param => true,
    }
}

fn parse_item(mut t: Vec<Token>, src: &str) -> Result<SelectItem> {
    if t.is_empty() {
        return Err(Error::config("sharded_agg: empty result column in the SELECT list"));
    }
    if t.iter().any(|x| x.is_op("*")) && (t.len() == 1 || (t.len() == 3 && t[1].is_op(".") && t[2].is_op("*"))) {
        return Err(refuse("SELECT * (a bare column list)"));
    }
    let mut alias = None;
    let n = t.len();
    if n >= 3 && t[n - 2].is_kw("AS") {
        alias = match &t[n - 1].tok {
            Tok::Ident { name, .. } => Some(name.clone()),
            Tok::Str => Some(t[n - 1].text[1..t[n - 1].text.len() - 1].replace("''", "'")),
            _ => return Err(Error::config(format!("sharded_agg: near \"{}\": expected a name after AS", t[n - 1].text))),
        };
        t.truncate(n - 2);
    } else if n >= 2 {
        let last = &t[n - 1];
        let is_name = match &last.tok {
            Tok::Ident { name, quoted } => *quoted || !NOT_ALIAS_WORDS.contains(&name.to_ascii_lowercase().as_str()),
            _ => false,
        };
        let prev = &t[n - 2];
        let after_collate = n >= 3 && t[n - 3].is_kw("COLLATE");
        if is_name && ends_operand(prev) && !prev.is_kw("COLLATE") && !after_collate && !prev.is_op(".") {
            alias = last.ident().map(|s| s.to_string());
            t.truncate(n - 1);
        }
    }
    let name = match &alias {
        Some(a) => a.clone(),
        None => {
            let l = t.len();
            if l == 1 && t[0].ident().is_some() {
                t[0].ident().unwrap().to_string()
            } else if l >= 3 && t[l - 2].is_op(".") && t[l - 1].ident().is_some() && t[..l - 2].iter().all(|x| x.ident().is_some() || x.is_op(".")) {
                t[l - 1].ident().unwrap().to_string()
            } else {
                src[t[0].start..t[l - 1].end].trim().to_string()
            }
        }
    };
    Ok(SelectItem { expr: t, alias, name })
}

fn parse_order_term(mut t: Vec<Token>) -> Result<OrderTerm> {
    let mut suffix = Vec::new();
    let n = t.len();
    if n >= 2 && t[n - 2].is_kw("NULLS") && (t[n - 1].is_kw("FIRST") || t[n - 1].is_kw("LAST")) {
        suffix = t.split_off(n - 2);
    }
    if let Some(last) = t.last() {
        if last.is_kw("ASC") || last.is_kw("DESC") {
            let s = t.pop().unwrap();
            suffix.insert(0, s);
        }
    }
    if t.is_empty() {
        return Err(Error::config("sharded_agg: empty ORDER BY term"));
    }
    Ok(OrderTerm { expr: t, suffix: join(&suffix) })
}

/// Parses `sql` into clauses, refusing what cannot be combined across shards.
pub fn parse(sql: &str) -> Result<AggQuery> {
    let mut t = tokenize(sql)?;
    while t.last().is_some_and(|x| x.is_op(";")) {
        t.pop();
    }
    if t.is_empty() {
        return Err(Error::config("sharded_agg: empty query (expected SELECT ... FROM <sharded table> ...)"));
    }
    if t.iter().any(|x| x.is_op(";")) {
        return Err(refuse("more than one statement"));
    }
    if t[0].is_kw("WITH") {
        return Err(refuse("WITH (a common table expression)"));
    }
    if !t[0].is_kw("SELECT") {
        return Err(Error::config(format!(
            "sharded_agg: expected a SELECT statement, got \"{}\" (only SELECT ... FROM <sharded table> ... is accepted)",
            t[0].text
        )));
    }
    for kw in ["UNION", "INTERSECT", "EXCEPT"] {
        if t.iter().any(|x| x.is_kw(kw)) {
            return Err(refuse(&format!("a compound SELECT ({kw})")));
        }
    }
    if t[1..].iter().any(|x| x.is_kw("SELECT")) {
        return Err(refuse("a subquery"));
    }
    if t.iter().any(|x| x.tok == Tok::Param) {
        return Err(refuse("a parameter (?, :name, @name, $name); write the value into the query instead,"));
    }
    if t.iter().any(|x| x.is_kw("OVER") || x.is_kw("WINDOW")) {
        return Err(refuse("a window function (OVER / WINDOW)"));
    }
    // Top-level clause keywords.
    let mut depth = 0i32;
    let mut marks: Vec<(&'static str, usize)> = Vec::new();
    for (i, x) in t.iter().enumerate() {
        if x.is_op("(") {
            depth += 1;
        } else if x.is_op(")") {
            depth -= 1;
        }
        if depth != 0 {
            continue;
        }
        let next_by = t.get(i + 1).is_some_and(|n| n.is_kw("BY"));
        let clause = if x.is_kw("FROM") {
            Some("FROM")
        } else if x.is_kw("WHERE") {
            Some("WHERE")
        } else if x.is_kw("GROUP") && next_by {
            Some("GROUP BY")
        } else if x.is_kw("HAVING") {
            Some("HAVING")
        } else if x.is_kw("ORDER") && next_by {
            Some("ORDER BY")
        } else if x.is_kw("LIMIT") {
            Some("LIMIT")
        } else {
            None
        };
        if let Some(c) = clause {
            marks.push((c, i));
        }
    }
    const ORDER: [&str; 6] = ["FROM", "WHERE", "GROUP BY", "HAVING", "ORDER BY", "LIMIT"];
    let mut last_rank = None;
    for (c, _) in &marks {
        let r = ORDER.iter().position(|o| o == c).unwrap();
        if last_rank.is_some_and(|l| r <= l) {
            return Err(Error::config(format!("sharded_agg: clause {c} is repeated or out of order")));
        }
        last_rank = Some(r);
    }
    let clause = |name: &str| -> Option<Vec<Token>> {
        let pos = marks.iter().position(|(c, _)| *c == name)?;
        let start = marks[pos].1 + if name.contains(' ') { 2 } else { 1 };
        let end = marks.get(pos + 1).map(|m| m.1).unwrap_or(t.len());
        Some(t[start..end].to_vec())
    };
    let from_at = match marks.first() {
        Some(("FROM", i)) => *i,
        _ => return Err(Error::config("sharded_agg: the query needs FROM <sharded table>")),
    };

    // SELECT list
    let mut list = &t[1..from_at];
    if list.first().is_some_and(|x| x.is_kw("DISTINCT")) {
        return Err(refuse("SELECT DISTINCT"));
    }
    if list.first().is_some_and(|x| x.is_kw("ALL")) {
        list = &list[1..];
    }
    let items = split_commas(list).into_iter().map(|i| parse_item(i, sql)).collect::<Result<Vec<_>>>()?;

    // FROM
    let from = clause("FROM").unwrap();
    let (table, qualifiers) = parse_from(&from)?;

    let where_ = clause("WHERE");
    if where_.as_ref().is_some_and(|w| w.is_empty()) {
        return Err(Error::config("sharded_agg: empty WHERE clause"));
    }
    let group_by = match clause("GROUP BY") {
        Some(g) => {
            let terms = split_commas(&g);
            if terms.iter().any(|x| x.is_empty()) {
                return Err(Error::config("sharded_agg: empty GROUP BY term"));
            }
            terms
        }
        None => vec![],
    };
    let having = clause("HAVING");
    if having.as_ref().is_some_and(|w| w.is_empty()) {
        return Err(Error::config("sharded_agg: empty HAVING clause"));
    }
    let order_by = match clause("ORDER BY") {
        Some(o) => split_commas(&o).into_iter().map(parse_order_term).collect::<Result<Vec<_>>>()?,
        None => vec![],
    };
    let limit = clause("LIMIT").map(|l| format!("LIMIT {}", join(&l)));
    if limit.as_deref() == Some("LIMIT ") {
        return Err(Error::config("sharded_agg: empty LIMIT clause"));
    }
    Ok(AggQuery { items, table, qualifiers, where_, group_by, having, order_by, limit })
}

fn parse_from(f: &[Token]) -> Result<(String, Vec<String>)> {
    let bad = |what: &str| Err(refuse(what));
    let mut depth = 0;
    for x in f {
        if x.is_op("(") {
            depth += 1;
        } else if x.is_op(")") {
            depth -= 1;
        } else if x.is_kw("JOIN") || (depth == 0 && x.is_op(",")) {
            return bad("a join (FROM must name exactly one sharded table)");
        }
    }
    if f.iter().any(|x| x.is_op("(")) {
        return bad("a table-valued function or parenthesised FROM");
    }
    if f.iter().any(|x| x.is_kw("INDEXED")) {
        return bad("INDEXED BY / NOT INDEXED");
    }
    let name_of = |x: &Token| x.ident().map(|s| s.to_string());
    let (schema, name, rest) = if f.len() >= 3 && f[1].is_op(".") {
        (name_of(&f[0]), name_of(&f[2]), &f[3..])
    } else if !f.is_empty() {
        (None, name_of(&f[0]), &f[1..])
    } else {
        (None, None, f)
    };
    let name = name.ok_or_else(|| Error::config("sharded_agg: FROM must name a sharded table"))?;
    let alias = match rest {
        [] => None,
        [a] => name_of(a),
        [as_, a] if as_.is_kw("AS") => name_of(a),
        _ => return bad(&format!("\"{}\" in FROM (only one table with an optional alias is accepted)", join(rest))),
    };
    let mut quals = vec![name.clone()];
    if let Some(a) = alias {
        quals.push(a);
    }
    if let Some(s) = &schema {
        quals.push(s.clone());
    }
    let table = match schema {
        Some(s) => format!("{s}.{name}"),
        None => name,
    };
    Ok((table, quals))
}

/// Result-column names made unique the way SQLite names view columns (`x`, `x:1`, `x:2`…).
pub fn unique_names(q: &AggQuery) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for it in &q.items {
        let mut name = it.name.clone();
        let mut n = 0;
        while out.iter().any(|o| o.eq_ignore_ascii_case(&name)) {
            n += 1;
            name = format!("{}:{n}", it.name);
        }
        out.push(name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(t: &[Token]) -> String {
        join(t)
    }

    #[test]
    fn clauses() {
        let q = parse(
            "SELECT kind, count(*) AS n, avg(ts) avg_ts, sum(x)/2 FROM main.events e WHERE ts > 5 GROUP BY kind \
             HAVING count(*) > 1 ORDER BY n DESC, 1 NULLS LAST LIMIT 3 OFFSET 1;",
        )
        .unwrap();
        let names: Vec<&str> = q.items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["kind", "n", "avg_ts", "sum(x)/2"]);
        assert_eq!(q.table, "main.events");
        assert_eq!(q.qualifiers, ["events", "e", "main"]);
        assert_eq!(texts(q.where_.as_ref().unwrap()), "ts > 5");
        assert_eq!(q.group_by.len(), 1);
        assert_eq!(texts(q.having.as_ref().unwrap()), "count ( * ) > 1");
        assert_eq!(q.order_by[0].suffix, "DESC");
        assert_eq!(q.order_by[1].suffix, "NULLS LAST");
        assert_eq!(q.limit.as_deref(), Some("LIMIT 3 OFFSET 1"));
    }

    #[test]
    fn names_follow_sqlite() {
        let q = parse("SELECT e.kind, count( * ), x COLLATE nocase, 'a' AS \"q\", count(*) c, y IS NULL FROM t e").unwrap();
        let names: Vec<&str> = q.items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["kind", "count( * )", "x COLLATE nocase", "q", "c", "y IS NULL"]);
        let q = parse("SELECT count(*), count(*), count(*) FROM t").unwrap();
        assert_eq!(unique_names(&q), ["count(*)", "count(*):1", "count(*):2"]);
    }

    #[test]
    fn refusals_name_the_construct() {
        let cases = [
            ("SELECT DISTINCT count(*) FROM t", "SELECT DISTINCT"),
            ("SELECT count(*) FROM t JOIN u", "a join"),
            ("SELECT count(*) FROM t, u", "a join"),
            ("SELECT count(*) FROM t JOIN u USING (id)", "a join"),
            ("SELECT count(*) FROM t WHERE x IN (SELECT 1)", "a subquery"),
            ("SELECT sum(x) OVER () FROM t", "window function"),
            ("SELECT count(*) FROM t UNION SELECT 1 FROM u", "compound SELECT (UNION)"),
            ("WITH c AS (SELECT 1) SELECT count(*) FROM c", "WITH"),
            ("SELECT count(*) FROM t WHERE x = ?", "parameter"),
            ("SELECT * FROM t", "SELECT *"),
            ("SELECT count(*) FROM t; SELECT 1", "more than one statement"),
            ("SELECT count(*) FROM generate_series(1,3)", "table-valued"),
            ("SELECT count(*) FROM t INDEXED BY i", "INDEXED BY"),
        ];
        for (sql, want) in cases {
            let e = parse(sql).unwrap_err().message;
            assert!(e.contains(want), "{sql}: {e}");
        }
        assert!(parse("SELECT count(*)").unwrap_err().message.contains("needs FROM"));
        assert!(parse("SELECT count(*) FROM t GROUP BY x WHERE y").unwrap_err().message.contains("out of order"));
        assert!(parse("DELETE FROM t").unwrap_err().message.contains("expected a SELECT"));
    }
}
