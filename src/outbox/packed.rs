//! Packed row images: the compact binary form in which `_shardvt_outbox.after` stores the after
//! image of an insert built from its inserted values (ARCHITECTURE.md §8). Export turns it back
//! into the JSON object (`ImageLayout::image`), so a packed image costs no JSON work on the
//! write path and about half the bytes of its JSON (no column names, small integers in one or
//! two bytes). An outbox row's `after` is TEXT (a JSON object, as ever) or a BLOB in this form;
//! JSON is never stored as a BLOB, so the type tells them apart.
//!
//! FORMAT. Byte 0 is the format version, [`VERSION`] (1). Then one entry per stored column (the
//! table's columns without the INTEGER PRIMARY KEY alias, whose value is the change's `rid`),
//! in table order: a tag byte, 0 NULL, 1 INTEGER followed by its zigzag varint (LEB128, 1–10
//! bytes), 2 REAL followed by its 8 IEEE-754 bytes big-endian, 3 TEXT / 4 BLOB followed by the
//! byte length as a varint and the bytes.
//!
//! `pack_redo` transcodes the redo-image encoding (`txn::encode_row`: 8-byte integers, 4-byte
//! lengths) directly, without building `Value`s.

use crate::error::{Error, Result};
use crate::value::Value;

pub const VERSION: u8 = 1;

pub(crate) fn push_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

pub(crate) fn zigzag(i: i64) -> u64 {
    ((i << 1) ^ (i >> 63)) as u64
}

pub(crate) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

fn corrupt() -> Error {
    Error::catalog("sharded: corrupt packed row image in _shardvt_outbox")
}

/// Packs values (stored-column order).
pub fn pack(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + values.len() * 4);
    out.push(VERSION);
    for v in values {
        match v {
            Value::Null => out.push(0),
            Value::Integer(i) => {
                out.push(1);
                push_varint(&mut out, zigzag(*i));
            }
            Value::Real(f) => {
                out.push(2);
                out.extend_from_slice(&f.to_bits().to_be_bytes());
            }
            Value::Text(t) | Value::Blob(t) => {
                out.push(if matches!(v, Value::Text(_)) { 3 } else { 4 });
                push_varint(&mut out, t.len() as u64);
                out.extend_from_slice(t);
            }
        }
    }
    out
}

/// Packs a row given in the redo-image encoding (`txn::encode_row`); None if it is malformed.
pub fn pack_redo(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    out.push(VERSION);
    while let Some((&tag, rest)) = b.split_first() {
        b = rest;
        out.push(tag);
        match tag {
            0 => {}
            1 | 2 => {
                let (h, t) = (b.get(..8)?, &b[8..]);
                b = t;
                if tag == 1 {
                    push_varint(&mut out, zigzag(i64::from_be_bytes(h.try_into().ok()?)));
                } else {
                    out.extend_from_slice(h);
                }
            }
            3 | 4 => {
                let n = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
                let bytes = b.get(4..4 + n)?;
                push_varint(&mut out, n as u64);
                out.extend_from_slice(bytes);
                b = &b[4 + n..];
            }
            _ => return None,
        }
    }
    Some(out)
}

pub(crate) fn read_varint(b: &mut &[u8]) -> Result<u64> {
    let mut x = 0u64;
    for shift in (0..70).step_by(7) {
        let (&byte, rest) = b.split_first().ok_or_else(corrupt)?;
        *b = rest;
        if shift == 63 && byte > 1 {
            return Err(corrupt());
        }
        x |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(x);
        }
    }
    Err(corrupt())
}

/// The values of a packed image.
pub fn unpack(b: &[u8]) -> Result<Vec<Value>> {
    let (&version, mut b) = b.split_first().ok_or_else(corrupt)?;
    if version != VERSION {
        return Err(Error::catalog(format!(
            "sharded: packed row image of format version {version} in _shardvt_outbox; this libshardvt reads version {VERSION}"
        )));
    }
    let mut out = Vec::new();
    while let Some((&tag, rest)) = b.split_first() {
        b = rest;
        out.push(match tag {
            0 => Value::Null,
            1 => Value::Integer(unzigzag(read_varint(&mut b)?)),
            2 => {
                let h = b.get(..8).ok_or_else(corrupt)?;
                let f = f64::from_bits(u64::from_be_bytes(h.try_into().expect("8 bytes")));
                b = &b[8..];
                Value::Real(f)
            }
            3 | 4 => {
                let n = usize::try_from(read_varint(&mut b)?).map_err(|_| corrupt())?;
                let bytes = b.get(..n).ok_or_else(corrupt)?.to_vec();
                b = &b[n..];
                if tag == 3 {
                    Value::Text(bytes)
                } else {
                    Value::Blob(bytes)
                }
            }
            _ => return Err(corrupt()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::encode_row;

    fn samples() -> Vec<Vec<Value>> {
        vec![
            vec![],
            vec![Value::Null],
            vec![Value::text("user3"), Value::Integer(21), Value::text("payload-000000000003")],
            vec![
                Value::Integer(0),
                Value::Integer(-1),
                Value::Integer(63),
                Value::Integer(-64),
                Value::Integer(64),
                Value::Integer(i64::MAX),
                Value::Integer(i64::MIN),
                Value::Real(-0.0),
                Value::Real(f64::INFINITY),
                Value::Real(1e-300),
                Value::text(""),
                Value::Blob(vec![]),
                Value::Blob((0..=255).collect()),
                Value::text(&"é".repeat(200)),
                Value::Null,
            ],
        ]
    }

    #[test]
    fn round_trips_every_type_and_edge_value() {
        for vals in samples() {
            let p = pack(&vals);
            let back = unpack(&p).unwrap();
            assert_eq!(back.len(), vals.len());
            for (a, b) in vals.iter().zip(&back) {
                match (a, b) {
                    (Value::Real(x), Value::Real(y)) => assert_eq!(x.to_bits(), y.to_bits()),
                    _ => assert_eq!(a, b),
                }
            }
            // the redo encoding transcodes to the same bytes
            assert_eq!(pack_redo(&encode_row(&vals)).unwrap(), p);
        }
    }

    #[test]
    fn is_smaller_than_the_redo_encoding() {
        let vals = &samples()[2];
        assert_eq!(pack(vals).len(), 1 + (2 + 5) + (1 + 1) + (2 + 20));
        assert!(pack(vals).len() < encode_row(vals).len());
    }

    #[test]
    fn rejects_malformed_input() {
        assert!(unpack(&[]).is_err());
        assert!(unpack(&[2]).unwrap_err().to_string().contains("version 2"));
        assert!(unpack(&[VERSION, 9]).is_err());
        assert!(unpack(&[VERSION, 3, 5, b'a']).is_err()); // text shorter than its length
        assert!(unpack(&[VERSION, 2, 0, 0]).is_err()); // short real
        assert!(unpack(&[VERSION, 1, 0x80]).is_err()); // unterminated varint
        assert!(unpack(&[VERSION, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
        assert!(pack_redo(&[1, 0, 0]).is_none());
        assert!(pack_redo(&[3, 0, 0, 0, 9, b'a']).is_none());
        assert!(pack_redo(&[7]).is_none());
    }
}
