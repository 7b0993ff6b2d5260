//! SQLite values as plain Rust data, column affinity, and SQLite's value ordering.
//!
//! The sharded table routes a row by its shard-key value *after* column affinity, exactly as the
//! shard file will store it, so `5`, `5.0` and `'5'` in an INTEGER column land in one shard.
//! [`affinity_of`] follows SQLite's five rules for a declared type (section 3.1 of "Datatypes In
//! SQLite"); [`apply_affinity`] follows its conversion rules for storing a value.
//!
//! Ordering ([`compare`]) is SQLite's: NULL < INTEGER/REAL (numerically) < TEXT < BLOB, text by
//! the BINARY collation (memcmp). Other collations are applied by callers to the text first.
//!
//! Not supported: hexadecimal integer literals in text (SQLite does not convert them either).

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    /// UTF-8 as SQLite stores it (not validated: SQLite may hold invalid UTF-8).
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl Value {
    pub fn text(s: &str) -> Value {
        Value::Text(s.as_bytes().to_vec())
    }
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }
    /// The text SQLite would produce with CAST(x AS TEXT).
    pub fn to_text(&self) -> Vec<u8> {
        match self {
            Value::Null => Vec::new(),
            Value::Integer(i) => i.to_string().into_bytes(),
            Value::Real(f) => real_to_text(*f).into_bytes(),
            Value::Text(t) | Value::Blob(t) => t.clone(),
        }
    }
    /// A SQL literal for this value (used in explain output and generated DDL).
    pub fn to_sql_literal(&self) -> String {
        match self {
            Value::Null => "NULL".into(),
            Value::Integer(i) => i.to_string(),
            Value::Real(f) => real_to_text(*f),
            Value::Text(t) => format!("'{}'", String::from_utf8_lossy(t).replace('\'', "''")),
            Value::Blob(b) => {
                let mut s = String::from("X'");
                for x in b {
                    s.push_str(&format!("{x:02X}"));
                }
                s.push('\'');
                s
            }
        }
    }
}

/// Column affinity (SQLite "Datatypes", 3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

/// The affinity SQLite derives from a declared column type.
pub fn affinity_of(decltype: &str) -> Affinity {
    let t = decltype.to_ascii_uppercase();
    if t.contains("INT") {
        Affinity::Integer
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        Affinity::Text
    } else if t.contains("BLOB") || t.trim().is_empty() {
        Affinity::Blob
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        Affinity::Real
    } else {
        Affinity::Numeric
    }
}

/// Integral reals that fit an i64 convert losslessly to INTEGER.
pub fn real_as_integer(f: f64) -> Option<i64> {
    if f.fract() == 0.0 && (-9.223_372_036_854_775_808e18..9.223_372_036_854_775_808e18).contains(&f) {
        Some(f as i64)
    } else {
        None
    }
}

/// Parses text the way SQLite decides whether text "looks like a number": optional surrounding
/// spaces, optional sign, digits with optional fraction and exponent. Returns the number as an
/// INTEGER when it is a pure integer literal that fits, else as a REAL.
pub fn parse_numeric_text(bytes: &[u8]) -> Option<Value> {
    let s = std::str::from_utf8(bytes).ok()?;
    let s = s.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\x0c');
    if s.is_empty() {
        return None;
    }
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'E' || b == b'+' || b == b'-') {
        return None;
    }
    if !body.as_bytes()[0].is_ascii_digit() && !(body.as_bytes()[0] == b'.' && body.len() > 1 && body.as_bytes()[1].is_ascii_digit()) {
        return None;
    }
    if body.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = s.trim_start_matches('+').parse::<i64>() {
            return Some(Value::Integer(i));
        }
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite() || body.bytes().all(|b| b.is_ascii_digit())).map(Value::Real)
}

/// The value as it will be stored in a column of affinity `aff`.
pub fn apply_affinity(v: &Value, aff: Affinity) -> Value {
    match aff {
        Affinity::Blob => v.clone(),
        Affinity::Text => match v {
            Value::Integer(_) | Value::Real(_) => Value::Text(v.to_text()),
            _ => v.clone(),
        },
        Affinity::Integer | Affinity::Numeric => match v {
            Value::Real(f) => match real_as_integer(*f) {
                Some(i) => Value::Integer(i),
                None => v.clone(),
            },
            Value::Text(t) => match parse_numeric_text(t) {
                Some(Value::Real(f)) => match real_as_integer(f) {
                    Some(i) => Value::Integer(i),
                    None => Value::Real(f),
                },
                Some(n) => n,
                None => v.clone(),
            },
            _ => v.clone(),
        },
        Affinity::Real => match v {
            Value::Integer(i) => Value::Real(*i as f64),
            Value::Text(t) => match parse_numeric_text(t) {
                Some(Value::Integer(i)) => Value::Real(i as f64),
                Some(n) => n,
                None => v.clone(),
            },
            _ => v.clone(),
        },
    }
}

/// SQLite's text for a REAL ("%!.15g"): 15 significant digits, ".0" appended to integral values.
pub fn real_to_text(f: f64) -> String {
    if f.is_nan() {
        return String::new();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Inf".into() } else { "-Inf".into() };
    }
    if f == 0.0 {
        return "0.0".into();
    }
    let exp = f.abs().log10().floor() as i32;
    if (-5..15).contains(&exp) {
        let decimals = (14 - exp).max(0) as usize;
        let mut s = format!("{:.*}", decimals, f);
        if s.contains('.') {
            while s.ends_with('0') {
                s.pop();
            }
            if s.ends_with('.') {
                s.push('0');
            }
        } else {
            s.push_str(".0");
        }
        s
    } else {
        let s = format!("{:.14e}", f);
        let (mant, e) = s.split_once('e').unwrap();
        let mut mant = mant.to_string();
        if mant.contains('.') {
            while mant.ends_with('0') {
                mant.pop();
            }
            if mant.ends_with('.') {
                mant.push('0');
            }
        }
        let e: i32 = e.parse().unwrap();
        format!("{mant}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
    }
}

fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Integer(_) | Value::Real(_) => 1,
        Value::Text(_) => 2,
        Value::Blob(_) => 3,
    }
}

/// Compares an integer with a real exactly (no precision loss for large integers).
fn cmp_int_real(i: i64, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Greater;
    }
    if f >= 9.223_372_036_854_775_808e18 {
        return Ordering::Less;
    }
    if f < -9.223_372_036_854_775_808e18 {
        return Ordering::Greater;
    }
    let t = f.trunc() as i64;
    match i.cmp(&t) {
        Ordering::Equal => {
            let frac = f - f.trunc();
            if frac > 0.0 {
                Ordering::Less
            } else if frac < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        }
        o => o,
    }
}

/// SQLite's ordering of two values with the BINARY collation.
pub fn compare(a: &Value, b: &Value) -> Ordering {
    let (ra, rb) = (type_rank(a), type_rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Integer(x), Value::Integer(y)) => x.cmp(y),
        (Value::Real(x), Value::Real(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Value::Integer(x), Value::Real(y)) => cmp_int_real(*x, *y),
        (Value::Real(x), Value::Integer(y)) => cmp_int_real(*y, *x).reverse(),
        (Value::Text(x), Value::Text(y)) | (Value::Blob(x), Value::Blob(y)) => x.cmp(y),
        _ => unreachable!("ranks differ"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_rules() {
        assert_eq!(affinity_of("INTEGER"), Affinity::Integer);
        assert_eq!(affinity_of("BIGINT"), Affinity::Integer);
        assert_eq!(affinity_of("VARCHAR(10)"), Affinity::Text);
        assert_eq!(affinity_of(""), Affinity::Blob);
        assert_eq!(affinity_of("DOUBLE PRECISION"), Affinity::Real);
        assert_eq!(affinity_of("FLOAT"), Affinity::Real);
        assert_eq!(affinity_of("DECIMAL(10,5)"), Affinity::Numeric);
        // "POINT" contains INT: SQLite's rule 1 wins.
        assert_eq!(affinity_of("POINT"), Affinity::Integer);
    }

    #[test]
    fn conversions_match_sqlite() {
        let i = Affinity::Integer;
        assert_eq!(apply_affinity(&Value::text("5"), i), Value::Integer(5));
        assert_eq!(apply_affinity(&Value::Real(5.0), i), Value::Integer(5));
        assert_eq!(apply_affinity(&Value::text(" 5 "), i), Value::Integer(5));
        assert_eq!(apply_affinity(&Value::text("5.5"), i), Value::Real(5.5));
        assert_eq!(apply_affinity(&Value::text("1e3"), i), Value::Integer(1000));
        assert_eq!(apply_affinity(&Value::text("abc"), i), Value::text("abc"));
        assert_eq!(apply_affinity(&Value::text("inf"), i), Value::text("inf"));
        assert_eq!(apply_affinity(&Value::Integer(5), Affinity::Text), Value::text("5"));
        assert_eq!(apply_affinity(&Value::Real(5.0), Affinity::Text), Value::text("5.0"));
        assert_eq!(apply_affinity(&Value::Integer(5), Affinity::Real), Value::Real(5.0));
        assert_eq!(apply_affinity(&Value::text("5"), Affinity::Blob), Value::text("5"));
    }

    #[test]
    fn real_text_like_sqlite() {
        assert_eq!(real_to_text(1.5), "1.5");
        assert_eq!(real_to_text(100.0), "100.0");
        assert_eq!(real_to_text(0.1), "0.1");
        assert_eq!(real_to_text(-2.25), "-2.25");
        assert_eq!(real_to_text(1e20), "1.0e+20");
        assert_eq!(real_to_text(1.0 / 3.0), "0.333333333333333");
    }

    #[test]
    fn ordering() {
        use Value::*;
        let t = Value::text;
        let mut v = vec![Blob(vec![1]), t("b"), Real(1.5), Null, Integer(1), Integer(2), t("a")];
        v.sort_by(compare);
        assert_eq!(v, vec![Null, Integer(1), Real(1.5), Integer(2), t("a"), t("b"), Blob(vec![1])]);
        assert_eq!(compare(&Integer(i64::MAX), &Real(9.3e18)), Ordering::Less);
        assert_eq!(compare(&Integer(3), &Real(3.0)), Ordering::Equal);
    }
}
