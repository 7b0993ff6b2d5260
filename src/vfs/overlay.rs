//! The unsynced bytes of one file under the power-loss model (pure): an in-memory overlay of
//! byte ranges that the file's writes went to instead of the real file.
//!
//! HOW IT WORKS. The overlay is a set of disjoint, non-adjacent extents `start -> bytes`
//! (a `BTreeMap` ordered by start). A write merges its range with every extent it overlaps or
//! touches into one extent (the new bytes win), so a sequential writer such as a WAL appender
//! keeps a single extent that grows in place (amortised O(bytes written)).
//!
//! ```text
//!   real file   |rrrrrrrrrrrrrrrrrrrrrrrr|              (what reached the disk)
//!   overlay           |oooo|      |oooooooooooo|        (written, never synced)
//!   logical     |rrrrr|oooo|rrrrrr|oooooooooooo|        = what every read and xFileSize see
//! ```
//!
//! - read: the caller reads the real file into the buffer (bytes past the real end are zeros,
//!   as a short read leaves them), then [`Overlay::patch`] copies the overlapping extents on top
//!   and says whether the logical file covered the whole range (else: a short read).
//! - size: `max(real size, end of the last extent)`.
//! - truncate: applied to the real file at once by the caller (a truncate is metadata that a
//!   file system may persist at any time) and here: extents past the new size are dropped or
//!   cut. Hence the logical size is always `max(real, last extent end)`.
//! - sync: [`Overlay::take`] hands every extent to the caller, which writes them to the real
//!   file and then syncs it; [`Overlay::restore`] puts back the ones a failed write left.
//!
//! Invariants: extents are non-empty, disjoint and separated by at least one byte; no state
//! other than the extents. Not supported: partial loss of a write (a real disk may keep some
//! sectors of an unsynced write and not others); here a write is lost or kept as a whole file
//! state, which is one of the outcomes a power failure can produce.

use std::collections::BTreeMap;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Overlay {
    extents: BTreeMap<u64, Vec<u8>>,
}

impl Overlay {
    pub fn is_empty(&self) -> bool {
        self.extents.is_empty()
    }

    /// Bytes held (for tests and statistics).
    pub fn bytes(&self) -> u64 {
        self.extents.values().map(|v| v.len() as u64).sum()
    }

    /// The extents as (start, length), in order.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.extents.iter().map(|(s, v)| (*s, v.len() as u64)).collect()
    }

    fn end(&self) -> u64 {
        self.extents.iter().next_back().map(|(s, v)| s + v.len() as u64).unwrap_or(0)
    }

    /// Records a write of `data` at `off`.
    pub fn write(&mut self, off: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = off + data.len() as u64;
        // Extents that overlap or touch [off, end], from the highest start down. They are
        // disjoint and ordered, so once one ends before `off` every earlier one does too.
        let touching: Vec<u64> = self
            .extents
            .range(..=end)
            .rev()
            .take_while(|(s, v)| *s + v.len() as u64 >= off)
            .map(|(s, _)| *s)
            .collect();
        let (start, mut buf) = match touching.last() {
            Some(&first) if first <= off => (first, self.extents.remove(&first).unwrap_or_default()),
            _ => (off, Vec::new()),
        };
        for k in touching.iter().rev().copied().filter(|&k| k != start) {
            if let Some(v) = self.extents.remove(&k) {
                let at = (k - start) as usize;
                if buf.len() < at + v.len() {
                    buf.resize(at + v.len(), 0);
                }
                buf[at..at + v.len()].copy_from_slice(&v);
            }
        }
        let at = (off - start) as usize;
        if buf.len() < at + data.len() {
            buf.resize(at + data.len(), 0);
        }
        buf[at..at + data.len()].copy_from_slice(data);
        self.extents.insert(start, buf);
    }

    /// Drops every byte at or past `size`.
    pub fn truncate(&mut self, size: u64) {
        let cut: Vec<u64> = self.extents.range(size..).map(|(s, _)| *s).collect();
        for k in cut {
            self.extents.remove(&k);
        }
        if let Some((s, v)) = self.extents.iter_mut().next_back() {
            if s + v.len() as u64 > size {
                v.truncate((size - s) as usize);
            }
        }
    }

    /// The logical file size, given the real file's.
    pub fn size(&self, real_size: u64) -> u64 {
        real_size.max(self.end())
    }

    /// Completes a read of `buf.len()` bytes at `off` whose real-file part is already in `buf`:
    /// zeros past the real end, then the overlay's bytes on top. Returns true when the logical
    /// file holds the whole range (false: a short read, the rest of `buf` is zeros).
    pub fn patch(&self, off: u64, buf: &mut [u8], real_size: u64) -> bool {
        let end = off + buf.len() as u64;
        if real_size < end {
            let from = real_size.saturating_sub(off) as usize;
            buf[from..].fill(0);
        }
        // The extent starting before `off` (it may reach into the range), then those inside.
        let before = self.extents.range(..off).next_back();
        for (s, v) in before.into_iter().chain(self.extents.range(off..end)) {
            let (s, e) = (*s, s + v.len() as u64);
            let (lo, hi) = (s.max(off), e.min(end));
            if lo < hi {
                buf[(lo - off) as usize..(hi - off) as usize].copy_from_slice(&v[(lo - s) as usize..(hi - s) as usize]);
            }
        }
        end <= self.size(real_size)
    }

    /// Removes and returns every extent, in file order, to be written to the real file.
    pub fn take(&mut self) -> Vec<(u64, Vec<u8>)> {
        std::mem::take(&mut self.extents).into_iter().collect()
    }

    /// Puts back extents that could not be written (after a failed flush).
    pub fn restore(&mut self, extents: Vec<(u64, Vec<u8>)>) {
        for (off, data) in extents {
            self.write(off, &data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model file: the real bytes plus an overlay, checked against a plain Vec.
    fn logical(real: &[u8], ov: &Overlay) -> Vec<u8> {
        let n = ov.size(real.len() as u64) as usize;
        let mut buf = vec![0xAA; n];
        buf[..real.len()].copy_from_slice(real);
        assert!(ov.patch(0, &mut buf, real.len() as u64));
        buf
    }

    fn apply(model: &mut Vec<u8>, off: usize, data: &[u8]) {
        if model.len() < off + data.len() {
            model.resize(off + data.len(), 0);
        }
        model[off..off + data.len()].copy_from_slice(data);
    }

    #[test]
    fn writes_merge_into_disjoint_extents() {
        let mut o = Overlay::default();
        o.write(10, b"abc");
        o.write(20, b"xy");
        assert_eq!(o.ranges(), vec![(10, 3), (20, 2)]);
        o.write(13, b"de"); // touches the first extent's end
        assert_eq!(o.ranges(), vec![(10, 5), (20, 2)]);
        o.write(8, b"0123456789ABCD"); // covers both and more
        assert_eq!(o.ranges(), vec![(8, 14)]);
        o.write(0, b"");
        assert_eq!(o.ranges(), vec![(8, 14)]);
        o.write(30, b"q");
        o.write(22, b"ZZZZZZZZ"); // 22..30 joins [8,22) and [30,31)
        assert_eq!(o.ranges(), vec![(8, 23)]);
        assert_eq!(o.bytes(), 23);
    }

    #[test]
    fn sequential_appends_grow_one_extent() {
        let mut o = Overlay::default();
        for i in 0..100u64 {
            o.write(32 + i * 24, &[i as u8; 24]);
        }
        assert_eq!(o.ranges(), vec![(32, 2400)]);
    }

    #[test]
    fn reads_see_the_overlay_on_top_of_the_real_file() {
        let real = b"0123456789".to_vec();
        let mut o = Overlay::default();
        o.write(2, b"ab");
        o.write(8, b"WXYZ"); // extends past the real end
        assert_eq!(o.size(10), 12);
        assert_eq!(logical(&real, &o), b"01ab4567WXYZ");
        // A read straddling an extent start and the real end.
        let mut buf = *b"5678....";
        assert!(o.patch(5, &mut buf[..7], 10));
        assert_eq!(&buf[..7], b"567WXYZ");
        // A read past the logical end is short and zero-filled.
        let mut buf = [b'?'; 6];
        assert!(!o.patch(10, &mut buf, 10));
        assert_eq!(&buf, b"YZ\0\0\0\0");
        // Garbage the caller left past the real end is zeroed.
        let mut buf = [b'?'; 4];
        assert!(!Overlay::default().patch(8, &mut buf, 10));
        assert_eq!(&buf, b"??\0\0");
    }

    #[test]
    fn truncate_cuts_and_drops_extents() {
        let mut o = Overlay::default();
        o.write(0, b"aaaa");
        o.write(10, b"bbbb");
        o.write(20, b"cccc");
        o.truncate(12);
        assert_eq!(o.ranges(), vec![(0, 4), (10, 2)]);
        assert_eq!(o.size(0), 12);
        o.truncate(10);
        assert_eq!(o.ranges(), vec![(0, 4)]);
        o.truncate(0);
        assert!(o.is_empty());
    }

    #[test]
    fn take_and_restore() {
        let mut o = Overlay::default();
        o.write(5, b"xx");
        o.write(0, b"yy");
        let t = o.take();
        assert_eq!(t, vec![(0, b"yy".to_vec()), (5, b"xx".to_vec())]);
        assert!(o.is_empty());
        o.restore(t[1..].to_vec());
        assert_eq!(o.ranges(), vec![(5, 2)]);
    }

    /// Random writes, truncates and flushes against a plain Vec model of the logical file.
    #[test]
    fn random_operations_match_a_model() {
        let mut seed = 0x2545F4914F6CDD1Du64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..300 {
            let mut real: Vec<u8> = (0..rnd(64)).map(|i| i as u8).collect();
            let mut model = real.clone();
            let mut o = Overlay::default();
            for step in 0..40 {
                match rnd(10) {
                    0 => {
                        // truncate: the caller cuts (or zero-extends) the real file too
                        let n = rnd(90) as usize;
                        model.resize(n, 0);
                        real.resize(n, 0);
                        o.truncate(n as u64);
                    }
                    1 => {
                        // sync: the extents go to the real file
                        for (off, d) in o.take() {
                            apply(&mut real, off as usize, &d);
                        }
                        assert_eq!(real, model, "round {round} step {step}: flushed file");
                    }
                    _ => {
                        let off = rnd(70) as usize;
                        let len = 1 + rnd(20) as usize;
                        let data: Vec<u8> = (0..len).map(|_| 100 + rnd(100) as u8).collect();
                        apply(&mut model, off, &data);
                        o.write(off as u64, &data);
                    }
                }
                assert_eq!(logical(&real, &o), model, "round {round} step {step}");
                // A window read anywhere agrees with the model too.
                let off = rnd(100) as usize;
                let len = 1 + rnd(30) as usize;
                let mut buf = vec![0xEE; len];
                let have = real.len().saturating_sub(off).min(len);
                if have > 0 {
                    buf[..have].copy_from_slice(&real[off..off + have]);
                }
                let full = o.patch(off as u64, &mut buf, real.len() as u64);
                assert_eq!(full, off + len <= model.len(), "round {round} step {step}");
                for (i, b) in buf.iter().enumerate() {
                    assert_eq!(*b, model.get(off + i).copied().unwrap_or(0), "round {round} step {step} byte {i}");
                }
                let ranges = o.ranges();
                for w in ranges.windows(2) {
                    assert!(w[0].0 + w[0].1 < w[1].0, "extents must be disjoint and apart: {ranges:?}");
                }
            }
        }
    }
}
