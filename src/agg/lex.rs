//! A small SQL tokenizer for the restricted SELECT of `sharded_agg` (pure).
//!
//! Produces tokens with byte spans into the source, so clause and expression text can be cut out
//! verbatim (result-column names are source spans, as SQLite names them). Whitespace and
//! comments (`-- …`, `/* … */`) are skipped. Quoted identifiers (`"x"`, `` `x` ``, `[x]`) become
//! [`Tok::Ident`] with `quoted = true` and their unescaped name; `'…'` is a string literal,
//! `x'…'` a blob literal; `?`, `?N`, `:n`, `@n`, `$n` are parameters (refused later).
//!
//! Not a validator: anything odd is left for the host SQLite, which prepares every query.

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// Identifier or keyword. `name` is unescaped; compare case-insensitively.
    Ident { name: String, quoted: bool },
    Str,
    Num,
    Blob,
    Param,
    /// Punctuation and operators: `(`, `)`, `,`, `.`, `;`, `*`, `||`, `<=`, …
    Op(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    /// Byte range in the source.
    pub start: usize,
    pub end: usize,
    /// Source text of the token.
    pub text: String,
}

impl Token {
    /// True for an unquoted identifier/keyword equal (case-insensitively) to `kw`.
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.tok, Tok::Ident { name, quoted: false } if name.eq_ignore_ascii_case(kw))
    }
    pub fn is_op(&self, op: &str) -> bool {
        matches!(&self.tok, Tok::Op(o) if o == op)
    }
    /// The identifier's name (quoted or not).
    pub fn ident(&self) -> Option<&str> {
        match &self.tok {
            Tok::Ident { name, .. } => Some(name),
            _ => None,
        }
    }
    /// Normalised form for comparing expressions: identifiers lower-cased and unquoted,
    /// literals and operators as written.
    pub fn norm(&self) -> String {
        match &self.tok {
            Tok::Ident { name, .. } => name.to_ascii_lowercase(),
            _ => self.text.clone(),
        }
    }
}

fn ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// Splits `src` into tokens.
pub fn tokenize(src: &str) -> Result<Vec<Token>> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let unterminated = |what: &str| Error::config(format!("sharded_agg: unterminated {what} in query"));
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            match src[i + 2..].find("*/") {
                Some(p) => i = i + 2 + p + 2,
                None => i = b.len(),
            }
            continue;
        }
        let start = i;
        let tok = match c {
            b'\'' => {
                i = close_quote(b, i, b'\'').ok_or_else(|| unterminated("string"))?;
                Tok::Str
            }
            b'"' | b'`' => {
                i = close_quote(b, i, c).ok_or_else(|| unterminated("quoted identifier"))?;
                let q = c as char;
                let inner = &src[start + 1..i - 1];
                Tok::Ident { name: inner.replace(&format!("{q}{q}"), &q.to_string()), quoted: true }
            }
            b'[' => {
                let p = src[i..].find(']').ok_or_else(|| unterminated("[identifier]"))?;
                i += p + 1;
                Tok::Ident { name: src[start + 1..i - 1].to_string(), quoted: true }
            }
            b'x' | b'X' if b.get(i + 1) == Some(&b'\'') => {
                i = close_quote(b, i + 1, b'\'').ok_or_else(|| unterminated("blob literal"))?;
                Tok::Blob
            }
            b'0'..=b'9' => {
                i = scan_number(b, i);
                Tok::Num
            }
            b'.' if b.get(i + 1).is_some_and(|d| d.is_ascii_digit()) => {
                i = scan_number(b, i);
                Tok::Num
            }
            b'?' => {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                Tok::Param
            }
            b':' | b'@' | b'$' if b.get(i + 1).is_some_and(|&d| ident_char(d)) => {
                i += 1;
                while i < b.len() && ident_char(b[i]) {
                    i += 1;
                }
                Tok::Param
            }
            _ if ident_char(c) && !c.is_ascii_digit() => {
                while i < b.len() && ident_char(b[i]) {
                    i += 1;
                }
                Tok::Ident { name: src[start..i].to_string(), quoted: false }
            }
            _ => {
                const TWO: [&str; 9] = ["||", "<=", ">=", "==", "!=", "<>", "<<", ">>", "->"];
                let two = src.get(i..i + 2).unwrap_or("");
                if two == "->" && b.get(i + 2) == Some(&b'>') {
                    i += 3;
                } else if TWO.contains(&two) {
                    i += 2;
                } else {
                    // one character (a whole UTF-8 sequence is impossible here: >= 0x80 is ident)
                    i += 1;
                }
                Tok::Op(src[start..i].to_string())
            }
        };
        out.push(Token { tok, start, end: i, text: src[start..i].to_string() });
    }
    Ok(out)
}

/// Index just past the closing quote of the literal opening at `i` (doubled quotes escape).
fn close_quote(b: &[u8], mut i: usize, q: u8) -> Option<usize> {
    i += 1;
    while i < b.len() {
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

fn scan_number(b: &[u8], mut i: usize) -> usize {
    if b[i] == b'0' && matches!(b.get(i + 1), Some(b'x') | Some(b'X')) {
        i += 2;
        while i < b.len() && b[i].is_ascii_hexdigit() {
            i += 1;
        }
        return i;
    }
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.' || b[i] == b'_') {
        i += 1;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            i = j;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    i
}

/// Re-assembles tokens into SQL text (tokens separated by single spaces: always equivalent).
pub fn join(tokens: &[Token]) -> String {
    let mut s = String::new();
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&t.text);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<String> {
        tokenize(s).unwrap().iter().map(|t| t.text.clone()).collect()
    }

    #[test]
    fn tokens_and_spans() {
        assert_eq!(
            kinds("SELECT count(*) AS n, \"a b\" FROM t -- c\nWHERE x>=1.5e3||'it''s' /* z */ AND y = X'0A'"),
            vec![
                "SELECT", "count", "(", "*", ")", "AS", "n", ",", "\"a b\"", "FROM", "t", "WHERE", "x", ">=", "1.5e3", "||",
                "'it''s'", "AND", "y", "=", "X'0A'"
            ]
        );
        let t = tokenize("[my col] `q``x` ?1 :p @q $r ->> .5 0x1F").unwrap();
        assert_eq!(t[0].ident(), Some("my col"));
        assert_eq!(t[1].ident(), Some("q`x"));
        assert!(t[2..6].iter().all(|x| x.tok == Tok::Param));
        assert!(t[6].is_op("->>"));
        assert_eq!(t[7].tok, Tok::Num);
        assert_eq!(t[8].text, "0x1F");
        assert!(tokenize("SELECT 'abc").is_err());
        assert!(t[0].norm() == "my col");
        assert!(tokenize("Count").unwrap()[0].is_kw("COUNT"));
    }
}
