//! The outbox rows of a multi-shard transaction's redo record, one compact batch per shard
//! (txlog.db `redo_side`, table name [`BATCH_TABLE`]; ARCHITECTURE.md §6 and §8). A logged
//! insert-heavy commit writes its outbox rows twice, into the shards and into this record, so
//! the record's size is a large part of the outbox's cost: the batch states the transaction's
//! csn and txid once, numbers as varints, and an insert whose after image equals its row's data
//! image in the same record as a flag (recovery rebuilds that image from the data image).
//!
//! FORMAT (version 1). Byte 0 is [`MAGIC`]; then the csn (8 bytes, big-endian) and the txid (8
//! bytes); then one entry per outbox row, in seq order, until the end:
//! - seq and tn: zigzag varints of the difference from the previous row's (the first from 0);
//! - op: one byte, `c`, `u` or `d`;
//! - rid: zigzag varint;
//! - ts: 8 bytes, IEEE-754 big-endian;
//! - flags: bit 0 a before image follows; bits 1–2 the after image: 0 NULL, 1 TEXT (JSON),
//!   2 BLOB (packed, `packed`), 3 the row's data image in the same record;
//! - before (if flagged), then after (forms 1 and 2): varint byte length, then the bytes.
//!
//! Varints are unsigned LEB128 as in `packed`.

use crate::error::{Error, Result};

use super::packed::{push_varint, read_varint, unzigzag, zigzag};

pub const MAGIC: u8 = 0xB1;
/// `redo_side.tbl` of a batch (rows of older records use `_shardvt_outbox`, one per row).
pub const BATCH_TABLE: &str = "_shardvt_outbox:batch";

/// An outbox row's after image in a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum After {
    Null,
    Json(String),
    Packed(Vec<u8>),
    /// the packed form of the row's data image in the same redo record
    FromFinal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub seq: i64,
    pub tn: i64,
    pub op: u8,
    pub rid: i64,
    pub ts: f64,
    pub before: Option<String>,
    pub after: After,
}

fn corrupt() -> Error {
    Error::catalog("sharded: corrupt outbox batch in txlog.db")
}

pub fn encode(csn: i64, txid: u64, rows: &[Row]) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + rows.len() * 24);
    out.push(MAGIC);
    out.extend_from_slice(&csn.to_be_bytes());
    out.extend_from_slice(&txid.to_be_bytes());
    let (mut seq, mut tn) = (0i64, 0i64);
    let bytes = |out: &mut Vec<u8>, b: &[u8]| {
        push_varint(out, b.len() as u64);
        out.extend_from_slice(b);
    };
    for r in rows {
        push_varint(&mut out, zigzag(r.seq.wrapping_sub(seq)));
        push_varint(&mut out, zigzag(r.tn.wrapping_sub(tn)));
        (seq, tn) = (r.seq, r.tn);
        out.push(r.op);
        push_varint(&mut out, zigzag(r.rid));
        out.extend_from_slice(&r.ts.to_bits().to_be_bytes());
        let form = match r.after {
            After::Null => 0,
            After::Json(_) => 1,
            After::Packed(_) => 2,
            After::FromFinal => 3,
        };
        out.push(u8::from(r.before.is_some()) | form << 1);
        if let Some(b) = &r.before {
            bytes(&mut out, b.as_bytes());
        }
        match &r.after {
            After::Json(j) => bytes(&mut out, j.as_bytes()),
            After::Packed(p) => bytes(&mut out, p),
            After::Null | After::FromFinal => {}
        }
    }
    out
}

/// (csn, txid, rows) of a batch.
pub fn decode(b: &[u8]) -> Result<(i64, u64, Vec<Row>)> {
    let (&magic, mut b) = b.split_first().ok_or_else(corrupt)?;
    if magic != MAGIC || b.len() < 16 {
        return Err(corrupt());
    }
    let csn = i64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
    let txid = u64::from_be_bytes(b[8..16].try_into().expect("8 bytes"));
    b = &b[16..];
    let take = |b: &mut &[u8], n: usize| -> Result<Vec<u8>> {
        let h = b.get(..n).ok_or_else(corrupt)?.to_vec();
        *b = &b[n..];
        Ok(h)
    };
    let text = |b: &mut &[u8]| -> Result<String> {
        let n = usize::try_from(read_varint(b).map_err(|_| corrupt())?).map_err(|_| corrupt())?;
        String::from_utf8(take(b, n)?).map_err(|_| corrupt())
    };
    let (mut seq, mut tn) = (0i64, 0i64);
    let mut rows = Vec::new();
    while !b.is_empty() {
        seq = seq.wrapping_add(unzigzag(read_varint(&mut b).map_err(|_| corrupt())?));
        tn = tn.wrapping_add(unzigzag(read_varint(&mut b).map_err(|_| corrupt())?));
        let op = take(&mut b, 1)?[0];
        if !matches!(op, b'c' | b'u' | b'd') {
            return Err(corrupt());
        }
        let rid = unzigzag(read_varint(&mut b).map_err(|_| corrupt())?);
        let ts = f64::from_bits(u64::from_be_bytes(take(&mut b, 8)?.try_into().expect("8 bytes")));
        let flags = take(&mut b, 1)?[0];
        if flags > 7 {
            return Err(corrupt());
        }
        let before = if flags & 1 == 1 { Some(text(&mut b)?) } else { None };
        let after = match flags >> 1 {
            0 => After::Null,
            1 => After::Json(text(&mut b)?),
            2 => {
                let n = usize::try_from(read_varint(&mut b).map_err(|_| corrupt())?).map_err(|_| corrupt())?;
                After::Packed(take(&mut b, n)?)
            }
            _ => After::FromFinal,
        };
        rows.push(Row { seq, tn, op, rid, ts, before, after });
    }
    Ok((csn, txid, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        vec![
            Row { seq: 41, tn: 1, op: b'c', rid: 7, ts: 1.5, before: None, after: After::FromFinal },
            Row { seq: 42, tn: 3, op: b'c', rid: -9, ts: 1.25, before: None, after: After::Packed(vec![1, 0, 3, 1, b'x']) },
            Row { seq: 43, tn: 4, op: b'u', rid: i64::MAX, ts: 2.0, before: Some("{\"a\":1}".into()), after: After::Json("{\"a\":\"é\"}".into()) },
            Row { seq: 44, tn: 6, op: b'd', rid: i64::MIN, ts: -0.0, before: Some(String::new()), after: After::Null },
        ]
    }

    #[test]
    fn round_trips() {
        let b = encode(1_795_340_667_797_747, 0xdb55_3191_dbfe_c049, &rows());
        let (csn, txid, back) = decode(&b).unwrap();
        assert_eq!((csn, txid), (1_795_340_667_797_747, 0xdb55_3191_dbfe_c049));
        assert_eq!(back, rows());
        assert_eq!(back[3].ts.to_bits(), (-0.0f64).to_bits());
        let (_, _, none) = decode(&encode(1, 2, &[])).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn an_insert_from_its_data_image_takes_fifteen_bytes() {
        let one = encode(5, 6, &rows()[..1]);
        assert_eq!(one.len(), 17 + 1 + 1 + 1 + 1 + 8 + 1); // seq, tn, op, rid 7, ts, flags
    }

    #[test]
    fn rejects_corrupt_batches() {
        let good = encode(1, 2, &rows());
        assert!(decode(&[]).is_err());
        assert!(decode(&good[..10]).is_err());
        let mut bad_magic = good.clone();
        bad_magic[0] = 0;
        assert!(decode(&bad_magic).is_err());
        for cut in 18..good.len() {
            // every truncation inside a row is refused, never misread
            if let Ok((_, _, r)) = decode(&good[..cut]) {
                assert!(r.len() < rows().len() && encode(1, 2, &r).len() == cut, "cut {cut}");
            }
        }
        let mut bad_op = encode(1, 2, &rows()[..1]);
        bad_op[19] = b'x';
        assert!(decode(&bad_op).is_err());
    }
}
