//! `USING sharded(...)` arguments → [`TableConfig`] (pure).
//!
//! Syntax: the arguments are a comma-separated mix of ordinary SQLite column definitions, table
//! constraints, and `name=value` options. An argument is an option when it starts with an
//! identifier immediately followed (after optional spaces) by `=`; everything else is schema text
//! and is passed through verbatim to every shard's `CREATE TABLE`, so affinity, NOT NULL, DEFAULT,
//! CHECK, COLLATE and UNIQUE are enforced by SQLite itself inside each shard.
//!
//! Options (values bare, 'single' or "double" quoted):
//!
//! | option        | strategy | default                          | meaning                              |
//! |---------------|----------|----------------------------------|--------------------------------------|
//! | shard_key     | both     | (required)                       | the routing column                   |
//! | strategy      | both     | hash                             | `hash` or `prefix`                   |
//! | shards        | hash     | 4                                | shard files, 1..=1024                |
//! | buckets       | hash     | max(256, shards)                 | virtual buckets, shards..=65536      |
//! | prefix_sep    | prefix   | none                             | separator string                     |
//! | prefix_depth  | prefix   | 1                                | separators kept, 1..=64              |
//! | prefix_len    | prefix   | none                             | prefix length in characters, 1..=1024|
//! | dir           | both     | `<db file>.<table>.shards`       | folder for catalog and shard files   |
//! | attach        | both     | off                              | `on`: use the existing table in `dir`|
//! |               |          |                                  | (DROP TABLE then keeps the files)    |
//! | outbox        | both     | off                              | `on`: record every committed change  |
//! |               |          |                                  | in a transactional outbox (`outbox`) |
//! | outbox_retention | both  | 0                                | keep acknowledged changes this long  |
//! |               |          |                                  | (`'90s'`,`'15m'`,`'36h'`,`'7d'`, secs)|
//!
//! Invariants: the result names an existing column as key; hash-only and prefix-only options are
//! never mixed; a prefix table has `prefix_sep` or `prefix_len`.

use crate::error::{Error, Result};
use crate::value::{affinity_of, Affinity};

pub const OPTION_NAMES: &[&str] =
    &["shard_key", "strategy", "shards", "buckets", "prefix_sep", "prefix_depth", "prefix_len", "dir", "outbox", "outbox_retention", "attach"];
pub const MAX_SHARDS: u32 = 1024;
pub const MAX_BUCKETS: u32 = 65536;
pub const DEFAULT_SHARDS: u32 = 4;
pub const DEFAULT_BUCKETS: u32 = 256;

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub decltype: String,
    pub affinity: Affinity,
    /// Upper-case collation name; "BINARY" when none is declared.
    pub collation: String,
    /// `INTEGER PRIMARY KEY`: this column is the rowid.
    pub is_rowid_alias: bool,
    /// The definition as written (passed to shards verbatim).
    pub definition: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    Hash { shards: u32, buckets: u32 },
    Prefix { sep: Option<String>, depth: u32, len: Option<u32> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableConfig {
    pub columns: Vec<ColumnDef>,
    /// Table constraints (`PRIMARY KEY(a,b)`, `UNIQUE(x)`, `CHECK(...)`), verbatim.
    pub table_constraints: Vec<String>,
    pub key_column: usize,
    pub strategy: Strategy,
    pub dir: Option<String>,
    /// `outbox=on`: committed changes are also recorded in each shard's outbox (see `outbox`).
    pub outbox: bool,
    /// `outbox_retention=<duration>`: seconds an acknowledged change is kept (counted from its
    /// commit) before a purge may delete it; 0 (default): purged once every consumer passed it.
    pub outbox_retention: u64,
    /// `attach=on`: CREATE connects to the existing table in `dir` (made by another database
    /// or connection) instead of creating one; DROP TABLE then leaves the files in place.
    pub attach: bool,
}

impl TableConfig {
    pub fn key(&self) -> &ColumnDef {
        &self.columns[self.key_column]
    }
    pub fn rowid_alias(&self) -> Option<usize> {
        self.columns.iter().position(|c| c.is_rowid_alias)
    }
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name.eq_ignore_ascii_case(name))
    }
    /// The index every shard gets on the shard key (lookups by key are the point of routing),
    /// unless the key is the rowid or already has a UNIQUE/PRIMARY KEY index of its own.
    pub fn key_index_sql(&self) -> Option<String> {
        let k = self.key();
        if k.is_rowid_alias {
            return None;
        }
        let up: Vec<String> = tokens(&k.definition).iter().map(|t| t.to_ascii_uppercase()).collect();
        if up.iter().skip(1).any(|t| t == "UNIQUE" || t == "PRIMARY") {
            return None;
        }
        Some(format!("CREATE INDEX IF NOT EXISTS data_shard_key ON data({})", quote_ident(&k.name)))
    }

    /// True when an index with this definition would duplicate the shard-key index
    /// (`data_shard_key`: the key column alone, its own collation, ascending, not UNIQUE). Such
    /// an index is recorded in the catalog under its name but not built a second time: every
    /// row insert would otherwise maintain two identical b-trees.
    pub fn duplicates_key_index(&self, definition: &str, unique: bool) -> bool {
        if unique || self.key_index_sql().is_none() {
            return false;
        }
        let toks = tokens(definition);
        let k = self.key();
        match toks.as_slice() {
            [name] => unquote(name).eq_ignore_ascii_case(&k.name),
            [name, dir] => unquote(name).eq_ignore_ascii_case(&k.name) && dir.eq_ignore_ascii_case("ASC"),
            _ => false,
        }
    }

    /// The schema body (`col defs, table constraints`) used for shards and for declare_vtab.
    pub fn schema_body(&self) -> String {
        let mut parts: Vec<&str> = self.columns.iter().map(|c| c.definition.as_str()).collect();
        parts.extend(self.table_constraints.iter().map(|s| s.as_str()));
        parts.join(", ")
    }
}

/// A set of columns that must be unique together (UNIQUE / PRIMARY KEY / unique index).
#[derive(Debug, Clone, PartialEq)]
pub struct UniqueGroup {
    pub columns: Vec<usize>,
}

/// Column indexes of a plain column list `a, b COLLATE x DESC` (None when any part is an
/// expression or names a collation other than the column's own).
pub fn plain_column_list(list: &str, columns: &[ColumnDef]) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in list.split(',') {
        let toks = tokens(part);
        let name = unquote(toks.first()?);
        let idx = columns.iter().position(|c| c.name.eq_ignore_ascii_case(&name))?;
        let mut i = 1;
        while i < toks.len() {
            match toks[i].to_ascii_uppercase().as_str() {
                "ASC" | "DESC" => i += 1,
                "COLLATE" => {
                    let c = unquote(toks.get(i + 1)?).to_ascii_uppercase();
                    if c != columns[idx].collation {
                        return None;
                    }
                    i += 2;
                }
                _ => return None,
            }
        }
        out.push(idx);
    }
    Some(out)
}

/// Uniqueness rules that a single shard cannot enforce alone: every UNIQUE/PRIMARY KEY column,
/// table constraint or unique index (plain columns only) that does not include the shard key.
/// (A group that includes the key is enforced by the shard: equal keys share a shard.)
pub fn cross_shard_unique_groups(cfg: &TableConfig, unique_index_defs: &[String]) -> Vec<UniqueGroup> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, c) in cfg.columns.iter().enumerate() {
        if c.is_rowid_alias {
            continue; // rowids are checked table-wide separately
        }
        let up: Vec<String> = tokens(&c.definition).iter().map(|t| t.to_ascii_uppercase()).collect();
        let pk = up.windows(2).any(|w| w[0] == "PRIMARY" && w[1] == "KEY");
        if pk || up.iter().skip(1).any(|t| t == "UNIQUE") {
            groups.push(vec![i]);
        }
    }
    for tc in &cfg.table_constraints {
        let toks = tokens(tc);
        let up: Vec<String> = toks.iter().map(|t| t.to_ascii_uppercase()).collect();
        let start = if let Some(p) = up.iter().position(|t| t == "UNIQUE") {
            p + 1
        } else if let Some(p) = up.iter().position(|t| t == "PRIMARY") {
            p + 2
        } else {
            continue;
        };
        if let Some(list) = toks.get(start).filter(|t| t.starts_with('(')) {
            if let Some(cols) = plain_column_list(&list[1..list.len() - 1], &cfg.columns) {
                if !(cols.len() == 1 && cfg.columns[cols[0]].is_rowid_alias) {
                    groups.push(cols);
                }
            }
        }
    }
    for d in unique_index_defs {
        if let Some(cols) = plain_column_list(d, &cfg.columns) {
            groups.push(cols);
        }
    }
    let mut out: Vec<UniqueGroup> = Vec::new();
    for g in groups {
        if g.contains(&cfg.key_column) || out.iter().any(|o| o.columns == g) {
            continue;
        }
        out.push(UniqueGroup { columns: g });
    }
    out
}

/// Splits `s` into SQL tokens: quoted identifiers/strings stay whole, parentheses groups are
/// kept as one token with their contents.
pub fn tokens(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        match c {
            b'\'' | b'"' | b'`' | b'[' => {
                let close = if c == b'[' { b']' } else { c };
                i += 1;
                while i < b.len() {
                    if b[i] == close {
                        if close != b']' && i + 1 < b.len() && b[i + 1] == close {
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    i += 1;
                }
            }
            b'(' => {
                let mut depth = 0;
                while i < b.len() {
                    match b[i] {
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        b'\'' | b'"' => {
                            let q = b[i];
                            i += 1;
                            while i < b.len() && b[i] != q {
                                i += 1;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => {
                while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'(' && b[i] != b'\'' && b[i] != b'"' {
                    i += 1;
                }
                if i == start {
                    i += 1;
                }
            }
        }
        out.push(s[start..i.min(b.len())].to_string());
    }
    out
}

/// The column list of `sql` when it is an `INSERT`/`REPLACE` into `table`:
/// None — not such a statement; Some(None) — no column list (every column supplied);
/// Some(Some(names)) — only these columns supplied (the others take their DEFAULT).
pub fn insert_columns(sql: &str, table: &str) -> Option<Option<Vec<String>>> {
    let toks = tokens(sql);
    let up: Vec<String> = toks.iter().map(|t| t.to_ascii_uppercase()).collect();
    let first = up.iter().position(|t| t == "INSERT" || t == "REPLACE")?;
    if up[..first].iter().any(|t| t != "WITH") && first > 0 && up[0] != "WITH" {
        return None;
    }
    let into = first + up[first..].iter().position(|t| t == "INTO")?;
    let name_tok = toks.get(into + 1)?;
    // schema.table may come as one token ("main.t") or quoted pieces
    let name = name_tok.rsplit('.').next().unwrap_or(name_tok);
    let mut next = into + 2;
    let name = if name_tok.ends_with('.') || toks.get(next).map(|t| t.starts_with('.')).unwrap_or(false) {
        // "main" . "t" split by the tokenizer
        let t = toks.get(next)?.trim_start_matches('.');
        next += 1;
        if t.is_empty() {
            next += 1;
            toks.get(next - 1)?.clone()
        } else {
            t.to_string()
        }
    } else {
        name.to_string()
    };
    if !unquote(&name).eq_ignore_ascii_case(table) {
        return None;
    }
    if up.get(next).map(|t| t == "AS").unwrap_or(false) {
        next += 2;
    }
    match toks.get(next) {
        Some(t) if t.starts_with('(') => {
            let inner = &t[1..t.len() - 1];
            Some(Some(inner.split(',').map(|c| unquote(c.trim())).collect()))
        }
        Some(t) if t.eq_ignore_ascii_case("DEFAULT") => Some(Some(vec![])),
        _ => Some(None),
    }
}

/// Removes SQL quoting from an identifier or string token.
pub fn unquote(t: &str) -> String {
    let t = t.trim();
    if t.len() >= 2 {
        let (f, l) = (t.as_bytes()[0], t.as_bytes()[t.len() - 1]);
        if (f == b'\'' && l == b'\'') || (f == b'"' && l == b'"') || (f == b'`' && l == b'`') {
            let q = f as char;
            return t[1..t.len() - 1].replace(&format!("{q}{q}"), &q.to_string());
        }
        if f == b'[' && l == b']' {
            return t[1..t.len() - 1].to_string();
        }
    }
    t.to_string()
}

/// Quotes an identifier for SQL text.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

const CONSTRAINT_WORDS: &[&str] =
    &["CONSTRAINT", "PRIMARY", "NOT", "NULL", "UNIQUE", "CHECK", "DEFAULT", "COLLATE", "REFERENCES", "GENERATED", "AS"];
const TABLE_CONSTRAINT_WORDS: &[&str] = &["CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"];

/// If `arg` is `name = value`, returns (name, raw value).
fn as_option(arg: &str) -> Option<(String, String)> {
    let a = arg.trim();
    let end = a.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
    if end == 0 || !a.as_bytes()[0].is_ascii_alphabetic() && a.as_bytes()[0] != b'_' {
        return None;
    }
    let rest = a[end..].trim_start();
    let value = rest.strip_prefix('=')?;
    if value.starts_with('=') {
        return None;
    }
    Some((a[..end].to_ascii_lowercase(), value.trim().to_string()))
}

fn parse_column(def: &str) -> Result<ColumnDef> {
    let toks = tokens(def);
    let name = unquote(&toks[0]);
    let mut type_toks = Vec::new();
    let mut i = 1;
    while i < toks.len() && !CONSTRAINT_WORDS.contains(&toks[i].to_ascii_uppercase().as_str()) {
        type_toks.push(toks[i].clone());
        i += 1;
    }
    let decltype = type_toks.join(" ");
    let upper: Vec<String> = toks.iter().map(|t| t.to_ascii_uppercase()).collect();
    let mut collation = "BINARY".to_string();
    let mut primary = false;
    let mut desc = false;
    for (j, t) in upper.iter().enumerate().skip(i) {
        if t == "COLLATE" {
            if let Some(c) = toks.get(j + 1) {
                collation = unquote(c).to_ascii_uppercase();
            }
        }
        if t == "PRIMARY" && upper.get(j + 1).map(|s| s == "KEY").unwrap_or(false) {
            primary = true;
            desc = upper.get(j + 2).map(|s| s == "DESC").unwrap_or(false);
        }
        if t == "GENERATED" || (t == "AS" && toks.get(j + 1).map(|s| s.starts_with('(')).unwrap_or(false)) {
            return Err(Error::config(format!(
                "sharded: generated column \"{name}\" is not supported (compute it in the INSERT instead)"
            )));
        }
    }
    let is_rowid_alias = primary && !desc && decltype.eq_ignore_ascii_case("INTEGER");
    Ok(ColumnDef {
        affinity: affinity_of(&decltype),
        name,
        decltype,
        collation,
        is_rowid_alias,
        definition: def.trim().to_string(),
    })
}

fn parse_u32(name: &str, raw: &str, min: u32, max: u32) -> Result<u32> {
    let v = unquote(raw);
    let n: i64 = v.trim().parse().map_err(|_| {
        Error::config(format!("sharded: option {name}={raw} is not an integer (expected {min}..{max})"))
    })?;
    if n < min as i64 || n > max as i64 {
        return Err(Error::config(format!("sharded: option {name}={n} is out of range (expected {min}..{max})")));
    }
    Ok(n as u32)
}

/// Parses the module arguments (argv[3..] of xCreate/xConnect).
pub fn parse(args: &[&str]) -> Result<TableConfig> {
    let mut columns = Vec::new();
    let mut table_constraints = Vec::new();
    let mut opts: Vec<(String, String)> = Vec::new();
    for arg in args {
        if arg.trim().is_empty() {
            continue;
        }
        if let Some((name, value)) = as_option(arg) {
            if !OPTION_NAMES.contains(&name.as_str()) {
                return Err(Error::config(format!(
                    "sharded: unknown option \"{name}\" (expected one of: {})",
                    OPTION_NAMES.join(", ")
                )));
            }
            if opts.iter().any(|(n, _)| *n == name) {
                return Err(Error::config(format!("sharded: option \"{name}\" given twice")));
            }
            opts.push((name, value));
            continue;
        }
        let first = tokens(arg).first().map(|t| t.to_ascii_uppercase()).unwrap_or_default();
        if TABLE_CONSTRAINT_WORDS.contains(&first.as_str()) {
            table_constraints.push(arg.trim().to_string());
        } else {
            columns.push(parse_column(arg)?);
        }
    }
    if columns.is_empty() {
        return Err(Error::config("sharded: no columns declared (write column definitions before the options)"));
    }
    for (i, c) in columns.iter().enumerate() {
        if columns[..i].iter().any(|d| d.name.eq_ignore_ascii_case(&c.name)) {
            return Err(Error::config(format!("sharded: duplicate column name: {}", c.name)));
        }
    }
    // A table-level PRIMARY KEY(x) on a single INTEGER column makes x the rowid, as in SQLite.
    for tc in &table_constraints {
        let toks = tokens(tc);
        let up: Vec<String> = toks.iter().map(|t| t.to_ascii_uppercase()).collect();
        if let Some(p) = up.iter().position(|t| t == "PRIMARY") {
            if let Some(list) = toks.get(p + 2).filter(|t| t.starts_with('(')) {
                let inner = &list[1..list.len() - 1];
                let cols: Vec<&str> = inner.split(',').collect();
                if cols.len() == 1 {
                    let ct = tokens(cols[0]);
                    let desc = ct.get(1).map(|t| t.eq_ignore_ascii_case("DESC")).unwrap_or(false);
                    let cname = unquote(ct.first().map(|s| s.as_str()).unwrap_or(""));
                    if let Some(c) = columns.iter_mut().find(|c| c.name.eq_ignore_ascii_case(&cname)) {
                        if c.decltype.eq_ignore_ascii_case("INTEGER") && !desc {
                            c.is_rowid_alias = true;
                        }
                    }
                }
            }
        }
    }
    let get = |n: &str| opts.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let key_name = get("shard_key").ok_or_else(|| {
        Error::config("sharded: missing required option shard_key (add shard_key=<column name>)")
    })?;
    let key_name = unquote(&key_name);
    let key_column = columns.iter().position(|c| c.name.eq_ignore_ascii_case(&key_name)).ok_or_else(|| {
        Error::config(format!(
            "sharded: shard_key \"{key_name}\" is not a column of this table (columns: {})",
            columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })?;
    let strategy_name = get("strategy").map(|s| unquote(&s).to_ascii_lowercase()).unwrap_or_else(|| "hash".into());
    let strategy = match strategy_name.as_str() {
        "hash" => {
            for o in ["prefix_sep", "prefix_depth", "prefix_len"] {
                if get(o).is_some() {
                    return Err(Error::config(format!("sharded: option {o} applies only to strategy=prefix")));
                }
            }
            let shards = match get("shards") {
                Some(v) => parse_u32("shards", &v, 1, MAX_SHARDS)?,
                None => DEFAULT_SHARDS,
            };
            let buckets = match get("buckets") {
                Some(v) => parse_u32("buckets", &v, shards, MAX_BUCKETS)?,
                None => DEFAULT_BUCKETS.max(shards),
            };
            Strategy::Hash { shards, buckets }
        }
        "prefix" => {
            for o in ["shards", "buckets"] {
                if get(o).is_some() {
                    return Err(Error::config(format!(
                        "sharded: option {o} applies only to strategy=hash (prefix tables get one file per prefix)"
                    )));
                }
            }
            let sep = get("prefix_sep").map(|s| unquote(&s));
            if let Some(s) = &sep {
                if s.is_empty() {
                    return Err(Error::config("sharded: prefix_sep must not be empty"));
                }
            }
            let depth = match get("prefix_depth") {
                Some(v) => parse_u32("prefix_depth", &v, 1, 64)?,
                None => 1,
            };
            let len = match get("prefix_len") {
                Some(v) => Some(parse_u32("prefix_len", &v, 1, 1024)?),
                None => None,
            };
            if sep.is_none() && len.is_none() {
                return Err(Error::config(
                    "sharded: strategy=prefix needs prefix_sep (e.g. prefix_sep=':') or prefix_len (e.g. prefix_len=2)",
                ));
            }
            if sep.is_none() && get("prefix_depth").is_some() {
                return Err(Error::config("sharded: prefix_depth needs prefix_sep"));
            }
            Strategy::Prefix { sep, depth, len }
        }
        other => {
            return Err(Error::config(format!(
                "sharded: unknown strategy \"{other}\" (expected hash or prefix)"
            )))
        }
    };
    let dir = get("dir").map(|d| unquote(&d));
    if let Some(d) = &dir {
        if d.is_empty() {
            return Err(Error::config("sharded: dir must not be empty"));
        }
    }
    let outbox = match get("outbox").map(|v| unquote(&v).to_ascii_lowercase()).as_deref() {
        None | Some("off") => false,
        Some("on") => true,
        Some(other) => {
            return Err(Error::config(format!("sharded: option outbox={other} is not valid (expected on or off)")))
        }
    };
    let outbox_retention = match get("outbox_retention").map(|v| unquote(&v)) {
        None => 0,
        Some(v) => {
            if !outbox {
                return Err(Error::config("sharded: outbox_retention needs outbox=on"));
            }
            parse_duration(&v).ok_or_else(|| {
                Error::config(format!(
                    "sharded: option outbox_retention={v} is not valid (expected seconds such as 3600, or a quoted duration such as '90s', '15m', '36h', '7d'; at most 100 years)"
                ))
            })?
        }
    };
    let attach = match get("attach").map(|v| unquote(&v).to_ascii_lowercase()).as_deref() {
        None | Some("off") => false,
        Some("on") => true,
        Some(other) => {
            return Err(Error::config(format!("sharded: option attach={other} is not valid (expected on or off)")))
        }
    };
    if attach && dir.is_none() {
        return Err(Error::config("sharded: attach=on needs dir= (the folder of the existing table)"));
    }
    Ok(TableConfig { columns, table_constraints, key_column, strategy, dir, outbox, outbox_retention, attach })
}

/// `<n>` seconds or `<n>s|m|h|d` (case-insensitive), at most 100 years.
pub fn parse_duration(v: &str) -> Option<u64> {
    let v = v.trim().to_ascii_lowercase();
    let (num, unit) = match v.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&v[..i], c),
        _ => (&v[..], 's'),
    };
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = num.parse::<u64>().ok()?.checked_mul(mult)?;
    (secs <= 100 * 365 * 86_400).then_some(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<TableConfig> {
        parse(args)
    }

    #[test]
    fn index_on_the_key_alone_is_the_key_index() {
        let c = p(&["id INTEGER PRIMARY KEY", "k TEXT", "v", "shard_key=k"]).unwrap();
        assert!(c.duplicates_key_index("k", false));
        assert!(c.duplicates_key_index(" \"K\" asc", false));
        assert!(!c.duplicates_key_index("k", true)); // UNIQUE: a different index
        assert!(!c.duplicates_key_index("k DESC", false));
        assert!(!c.duplicates_key_index("k COLLATE NOCASE", false));
        assert!(!c.duplicates_key_index("k, v", false));
        assert!(!c.duplicates_key_index("v", false));
        assert!(!c.duplicates_key_index("lower(k)", false));
        // a UNIQUE key column has SQLite's own index and no data_shard_key
        let u = p(&["k TEXT UNIQUE", "v", "shard_key=k"]).unwrap();
        assert!(!u.duplicates_key_index("k", false));
    }

    #[test]
    fn issue_example() {
        let c = p(&[
            "id INTEGER PRIMARY KEY",
            "user_id TEXT NOT NULL",
            "kind TEXT",
            "ts INTEGER",
            "body TEXT",
            "shard_key=user_id",
            "strategy=hash",
            "shards=8",
        ])
        .unwrap();
        assert_eq!(c.columns.len(), 5);
        assert_eq!(c.key().name, "user_id");
        assert_eq!(c.rowid_alias(), Some(0));
        assert_eq!(c.strategy, Strategy::Hash { shards: 8, buckets: 256 });
        assert_eq!(c.key().affinity, Affinity::Text);
    }

    #[test]
    fn quoted_values_and_collate() {
        let c = p(&["k TEXT COLLATE nocase", "v", "shard_key='k'", "strategy=\"prefix\"", "prefix_sep=':'", "prefix_depth=2"]).unwrap();
        assert_eq!(c.key().collation, "NOCASE");
        assert_eq!(c.strategy, Strategy::Prefix { sep: Some(":".into()), depth: 2, len: None });
        assert_eq!(c.columns[1].affinity, Affinity::Blob);
    }

    #[test]
    fn check_with_equals_is_not_an_option() {
        let c = p(&["a INTEGER CHECK(a=1)", "b INT DEFAULT 5", "shard_key=a"]).unwrap();
        assert_eq!(c.columns.len(), 2);
        assert_eq!(c.columns[0].definition, "a INTEGER CHECK(a=1)");
    }

    #[test]
    fn table_constraints_and_pk() {
        let c = p(&["a INTEGER", "b TEXT", "PRIMARY KEY(a)", "UNIQUE(b)", "shard_key=b"]).unwrap();
        assert_eq!(c.table_constraints.len(), 2);
        assert_eq!(c.rowid_alias(), Some(0));
        assert_eq!(c.schema_body(), "a INTEGER, b TEXT, PRIMARY KEY(a), UNIQUE(b)");
    }

    #[test]
    fn errors_are_clear() {
        let e = p(&["a", "shardz=3", "shard_key=a"]).unwrap_err();
        assert!(e.message.contains("unknown option \"shardz\""), "{}", e.message);
        assert!(p(&["a"]).unwrap_err().message.contains("missing required option shard_key"));
        assert!(p(&["a", "shard_key=b"]).unwrap_err().message.contains("not a column"));
        for bad in ["shards=0", "shards=-1", "shards=100000", "shards=x"] {
            let e = p(&["a", "shard_key=a", bad]).unwrap_err();
            assert!(e.message.contains("shards="), "{bad}: {}", e.message);
        }
        assert!(p(&["a", "shard_key=a", "strategy=range"]).unwrap_err().message.contains("unknown strategy"));
        assert!(p(&["a", "shard_key=a", "strategy=prefix"]).unwrap_err().message.contains("needs prefix_sep"));
        assert!(p(&["a", "shard_key=a", "strategy=prefix", "prefix_len=2", "shards=3"]).is_err());
        assert!(p(&["a", "shard_key=a", "prefix_len=2"]).is_err());
        assert!(p(&["a", "shard_key=a", "buckets=2", "shards=4"]).is_err());
        assert!(p(&["a", "a", "shard_key=a"]).unwrap_err().message.contains("duplicate column"));
        assert!(p(&["a", "shard_key=a", "dir="]).is_err());
        assert!(p(&["a", "shard_key=a", "outbox=yes"]).unwrap_err().message.contains("expected on or off"));
    }

    #[test]
    fn attach_option() {
        assert!(p(&["a", "shard_key=a", "attach=on", "dir='/x'"]).unwrap().attach);
        assert!(p(&["a", "shard_key=a", "attach=on"]).unwrap_err().message.contains("needs dir"));
        assert!(p(&["a", "shard_key=a", "attach=maybe", "dir=x"]).is_err());
    }

    #[test]
    fn outbox_retention_option() {
        assert_eq!(p(&["a", "shard_key=a", "outbox=on"]).unwrap().outbox_retention, 0);
        assert_eq!(p(&["a", "shard_key=a", "outbox=on", "outbox_retention=7d"]).unwrap().outbox_retention, 7 * 86_400);
        assert_eq!(p(&["a", "shard_key=a", "outbox=on", "outbox_retention='90S'"]).unwrap().outbox_retention, 90);
        assert_eq!(p(&["a", "shard_key=a", "outbox=on", "outbox_retention=3600"]).unwrap().outbox_retention, 3600);
        assert_eq!(p(&["a", "shard_key=a", "outbox=on", "outbox_retention=15m"]).unwrap().outbox_retention, 900);
        assert!(p(&["a", "shard_key=a", "outbox_retention=1h"]).unwrap_err().message.contains("needs outbox=on"));
        for bad in ["-1", "1w", "h", "1.5h", "", "99999999999d", "1 h"] {
            let e = p(&["a", "shard_key=a", "outbox=on", &format!("outbox_retention={bad}")]).unwrap_err();
            assert!(e.message.contains("outbox_retention"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn outbox_option() {
        assert!(!p(&["a", "shard_key=a"]).unwrap().outbox);
        assert!(!p(&["a", "shard_key=a", "outbox=off"]).unwrap().outbox);
        assert!(p(&["a", "shard_key=a", "outbox=ON"]).unwrap().outbox);
        assert!(p(&["a", "shard_key=a", "outbox='on'", "strategy=prefix", "prefix_len=1"]).unwrap().outbox);
    }

    #[test]
    fn unique_groups() {
        let c = p(&["id INTEGER PRIMARY KEY", "k TEXT", "email TEXT UNIQUE", "a", "b", "UNIQUE(a, b)", "UNIQUE(k, a)", "shard_key=k"]).unwrap();
        let g = cross_shard_unique_groups(&c, &["b COLLATE BINARY DESC".into(), "lower(a)".into(), "k".into()]);
        let cols: Vec<Vec<usize>> = g.into_iter().map(|g| g.columns).collect();
        assert_eq!(cols, vec![vec![2], vec![3, 4], vec![4]]);
        assert_eq!(plain_column_list("a COLLATE NOCASE", &c.columns), None);
    }

    #[test]
    fn insert_column_lists() {
        assert_eq!(insert_columns("INSERT INTO t(a, \"b\") VALUES (1,2)", "t"), Some(Some(vec!["a".into(), "b".into()])));
        assert_eq!(insert_columns("insert or replace into main.t (a) select 1", "T"), Some(Some(vec!["a".into()])));
        assert_eq!(insert_columns("INSERT INTO t VALUES (1,2)", "t"), Some(None));
        assert_eq!(insert_columns("INSERT INTO t DEFAULT VALUES", "t"), Some(Some(vec![])));
        assert_eq!(insert_columns("REPLACE INTO t AS x(a) VALUES (1)", "t"), Some(Some(vec!["a".into()])));
        assert_eq!(insert_columns("INSERT INTO u(a) VALUES (1)", "t"), None);
        assert_eq!(insert_columns("UPDATE t SET a=1", "t"), None);
    }

    #[test]
    fn tokenizer() {
        assert_eq!(tokens("\"my col\" VARCHAR(10) DEFAULT 'a b'"), vec!["\"my col\"", "VARCHAR", "(10)", "DEFAULT", "'a b'"]);
        assert_eq!(unquote("'it''s'"), "it's");
        assert_eq!(unquote("[x y]"), "x y");
        let c = p(&["\"my col\" VARCHAR(10)", "shard_key=\"my col\""]).unwrap();
        assert_eq!(c.key().name, "my col");
        assert_eq!(c.key().decltype, "VARCHAR (10)");
        assert_eq!(c.key().affinity, Affinity::Text);
    }
}
