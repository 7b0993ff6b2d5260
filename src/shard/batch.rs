//! Packed row batches: how a scan worker hands rows to the host thread without an allocation
//! per row or per value.
//!
//! HOW IT WORKS. A batch is two buffers that are reused for the whole scan:
//!
//! ```text
//! data: | tag | payload | tag | payload | ...      one cell per (row, column), row-major
//! offs: | start of cell 0 | start of cell 1 | ...  u32 index into data, one per cell
//! ```
//!
//! A cell is one tag byte (`T_NULL`, `T_INT`, `T_REAL`, `T_TEXT`, `T_BLOB`) and its payload:
//! nothing, 8 bytes little-endian (i64 / f64 bits), or the raw bytes. A cell ends where the next
//! one starts (the last one at the end of `data`), so text and blobs carry no length. Reading a
//! cell is an index and a match; text and blobs are borrowed slices of `data`.
//!
//! Before, a worker built a `Vec<Value>` per row and a `Vec<u8>` per text value, which the host
//! then freed: malloc and a cross-thread free per value were most of a parallel scan's cost.
//! Now the host gives each batch back to its worker (`shard::scan`) once it has handed the rows
//! to SQLite, and the worker refills it: in steady state a scan allocates nothing.
//!
//! This format never leaves the process; it is not written to disk.

use crate::value::Value;

const T_NULL: u8 = 0;
const T_INT: u8 = 1;
const T_REAL: u8 = 2;
const T_TEXT: u8 = 3;
const T_BLOB: u8 = 4;

/// One value of a batch, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a [u8]),
    Blob(&'a [u8]),
}

impl Cell<'_> {
    pub fn to_value(self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Int(i) => Value::Integer(i),
            Cell::Real(f) => Value::Real(f),
            Cell::Text(t) => Value::Text(t.to_vec()),
            Cell::Blob(b) => Value::Blob(b.to_vec()),
        }
    }
}

/// Rows of `ncols` cells each.
#[derive(Debug)]
pub struct Batch {
    ncols: usize,
    data: Vec<u8>,
    /// u32 is enough: a batch is sent once it holds BATCH_BYTES (64 KB) and a row is at most
    /// SQLITE_MAX_LENGTH (< 2^31) bytes, so no offset reaches 2^32.
    offs: Vec<u32>,
}

impl Default for Batch {
    fn default() -> Batch {
        Batch::new(1)
    }
}

impl Batch {
    pub fn new(ncols: usize) -> Batch {
        Batch { ncols: ncols.max(1), data: Vec::new(), offs: Vec::new() }
    }

    /// Empties the batch for rows of `ncols` cells, keeping its buffers.
    pub fn reset(&mut self, ncols: usize) {
        self.ncols = ncols.max(1);
        self.clear();
    }

    /// Empties the batch, keeping its buffers.
    pub fn clear(&mut self) {
        self.data.clear();
        self.offs.clear();
    }

    /// Complete rows held.
    pub fn rows(&self) -> usize {
        self.offs.len() / self.ncols
    }

    /// Bytes of cell data held (the worker's batch-size limit).
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Appends the next cell (rows are filled column by column, left to right).
    pub fn push(&mut self, c: Cell<'_>) {
        self.offs.push(self.data.len() as u32);
        match c {
            Cell::Null => self.data.push(T_NULL),
            Cell::Int(i) => {
                self.data.push(T_INT);
                self.data.extend_from_slice(&i.to_le_bytes());
            }
            Cell::Real(f) => {
                self.data.push(T_REAL);
                self.data.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Cell::Text(t) => {
                self.data.push(T_TEXT);
                self.data.extend_from_slice(t);
            }
            Cell::Blob(b) => {
                self.data.push(T_BLOB);
                self.data.extend_from_slice(b);
            }
        }
    }

    /// Cell `col` of row `row`. Panics when out of range (a caller bug).
    pub fn cell(&self, row: usize, col: usize) -> Cell<'_> {
        let i = row * self.ncols + col;
        let start = self.offs[i] as usize;
        let end = self.offs.get(i + 1).map(|&o| o as usize).unwrap_or(self.data.len());
        let payload = &self.data[start + 1..end];
        match self.data[start] {
            T_INT => Cell::Int(i64::from_le_bytes(payload.try_into().unwrap_or([0; 8]))),
            T_REAL => Cell::Real(f64::from_bits(u64::from_le_bytes(payload.try_into().unwrap_or([0; 8])))),
            T_TEXT => Cell::Text(payload),
            T_BLOB => Cell::Blob(payload),
            _ => Cell::Null,
        }
    }

    /// Cell `col` of row `row` as an integer (the rowid column); 0 when it is not one.
    pub fn int(&self, row: usize, col: usize) -> i64 {
        match self.cell(row, col) {
            Cell::Int(i) => i,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_read_back_as_written() {
        let mut b = Batch::new(3);
        let rows: Vec<[Cell; 3]> = vec![
            [Cell::Int(1), Cell::Text(b"abc"), Cell::Null],
            [Cell::Int(-7), Cell::Text(b""), Cell::Real(2.5)],
            [Cell::Int(i64::MIN), Cell::Blob(&[0, 1, 2, 255]), Cell::Blob(&[])],
            [Cell::Int(i64::MAX), Cell::Real(f64::NAN), Cell::Text("é\0x".as_bytes())],
        ];
        for r in &rows {
            for c in r {
                b.push(*c);
            }
        }
        assert_eq!(b.rows(), 4);
        for (i, r) in rows.iter().enumerate() {
            for (j, c) in r.iter().enumerate() {
                match (b.cell(i, j), c) {
                    (Cell::Real(x), Cell::Real(y)) => assert_eq!(x.to_bits(), y.to_bits()),
                    (got, want) => assert_eq!(got, *want, "row {i} col {j}"),
                }
            }
            assert_eq!(b.int(i, 0), match r[0] { Cell::Int(x) => x, _ => unreachable!() });
        }
        assert_eq!(b.int(0, 1), 0, "not an integer");
        assert_eq!(b.cell(0, 1).to_value(), Value::text("abc"));
    }

    #[test]
    fn a_cleared_batch_keeps_its_buffers_and_forgets_its_rows() {
        let mut b = Batch::new(2);
        for i in 0..100 {
            b.push(Cell::Int(i));
            b.push(Cell::Text(b"some text of a row"));
        }
        let cap = b.data.capacity();
        b.clear();
        assert_eq!((b.rows(), b.bytes()), (0, 0));
        b.push(Cell::Null);
        b.push(Cell::Int(9));
        assert_eq!(b.rows(), 1);
        assert_eq!((b.cell(0, 0), b.cell(0, 1)), (Cell::Null, Cell::Int(9)));
        assert_eq!(b.data.capacity(), cap);
        b.reset(3);
        for c in [Cell::Int(1), Cell::Int(2), Cell::Int(3)] {
            b.push(c);
        }
        assert_eq!((b.rows(), b.cell(0, 2)), (1, Cell::Int(3)));
    }

    #[test]
    fn an_empty_batch_has_no_rows() {
        assert_eq!(Batch::default().rows(), 0);
        assert_eq!(Batch::new(0).rows(), 0);
    }

    #[test]
    fn a_partial_row_is_not_counted() {
        let mut b = Batch::new(2);
        b.push(Cell::Int(1));
        assert_eq!(b.rows(), 0);
        b.push(Cell::Int(2));
        assert_eq!(b.rows(), 1);
    }
}
