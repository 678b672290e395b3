//! Bit operations on ext4 bitmaps (bit `i` is bit `i % 8` of byte `i / 8`)
//! and a word-based search map for finding free runs quickly.

/// Whether bit `i` of `bytes` is set.
pub(super) fn test_bit(bytes: &[u8], i: u32) -> bool {
    bytes[(i / 8) as usize] & (1 << (i % 8)) != 0
}

/// Sets bits `from..to` of `bytes`.
pub(super) fn set_bits(bytes: &mut [u8], from: u32, to: u32) {
    for i in from..to {
        bytes[(i / 8) as usize] |= 1 << (i % 8);
    }
}

/// Clears bits `from..to` of `bytes`.
pub(super) fn clear_bits(bytes: &mut [u8], from: u32, to: u32) {
    for i in from..to {
        bytes[(i / 8) as usize] &= !(1 << (i % 8));
    }
}

/// The first bit in `from..to` of `bytes` whose value is `set`.
pub(super) fn find_bit(bytes: &[u8], from: u32, to: u32, set: bool) -> Option<u32> {
    (from..to).find(|&i| test_bit(bytes, i) == set)
}

/// Number of clear bits among the first `n` bits of `bytes`.
pub(super) fn count_clear(bytes: &[u8], n: u32) -> u32 {
    let full = (n / 8) as usize;
    let whole: u32 = bytes[..full].iter().map(|b| b.count_zeros()).sum();
    whole + (full as u32 * 8..n).filter(|&i| !test_bit(bytes, i)).count() as u32
}

/// A group's allocation state for searching: bit set = unavailable. Bits
/// past `nbits` read as set, so no search ever returns them.
#[derive(Debug, Clone)]
pub(super) struct SearchMap {
    words: Vec<u64>,
    nbits: u32,
}

impl SearchMap {
    /// The first `nbits` bits of the on-disk bitmap `bytes` (which holds at
    /// least `nbits` bits).
    pub(super) fn from_bitmap(bytes: &[u8], nbits: u32) -> SearchMap {
        let nwords = nbits.div_ceil(64) as usize;
        let mut words = vec![0u64; nwords];
        let nbytes = (nbits.div_ceil(8) as usize).min(bytes.len());
        for (i, chunk) in bytes[..nbytes].chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            words[i] = u64::from_le_bytes(w);
        }
        if nbits % 64 != 0 {
            if let Some(last) = words.last_mut() {
                *last |= !0u64 << (nbits % 64);
            }
        }
        SearchMap { words, nbits }
    }

    /// Marks bits `from..to` (clipped to the map) unavailable.
    pub(super) fn set_range(&mut self, from: u32, to: u32) {
        let to = to.min(self.nbits);
        let mut i = from;
        while i < to {
            let (w, b) = ((i / 64) as usize, i % 64);
            let n = (64 - b).min(to - i);
            let mask = if n == 64 { !0 } else { ((1u64 << n) - 1) << b };
            self.words[w] |= mask;
            i += n;
        }
    }

    /// The first bit at or after `from` with value `set`, if any below `nbits`.
    fn next(&self, from: u32, set: bool) -> Option<u32> {
        if from >= self.nbits {
            return None;
        }
        let mut w = (from / 64) as usize;
        let mut word = if set { self.words[w] } else { !self.words[w] };
        word &= !0u64 << (from % 64);
        loop {
            if word != 0 {
                let bit = w as u32 * 64 + word.trailing_zeros();
                return (bit < self.nbits).then_some(bit);
            }
            w += 1;
            if w >= self.words.len() {
                return None;
            }
            word = if set { self.words[w] } else { !self.words[w] };
        }
    }

    /// The first free run starting at or after `from` that is at least
    /// `want` bits long, as `(start, want)`.
    pub(super) fn find_run(&self, from: u32, want: u32) -> Option<(u32, u32)> {
        let mut pos = from;
        while let Some(start) = self.next(pos, false) {
            let end = self.next(start, true).unwrap_or(self.nbits);
            if end - start >= want {
                return Some((start, want));
            }
            pos = end;
        }
        None
    }

    /// The free runs inside `from..to`, as `(start, length)`, in order.
    pub(super) fn free_runs(&self, from: u32, to: u32) -> Vec<(u32, u32)> {
        let to = to.min(self.nbits);
        let mut runs = Vec::new();
        let mut pos = from;
        while let Some(start) = self.next(pos, false).filter(|&s| s < to) {
            let end = self.next(start, true).unwrap_or(self.nbits).min(to);
            runs.push((start, end - start));
            pos = end;
        }
        runs
    }

    /// The longest free run, as `(start, length)`; the first one on ties.
    pub(super) fn longest_run(&self) -> Option<(u32, u32)> {
        let mut best: Option<(u32, u32)> = None;
        let mut pos = 0;
        while let Some(start) = self.next(pos, false) {
            let end = self.next(start, true).unwrap_or(self.nbits);
            if best.is_none_or(|(_, l)| end - start > l) {
                best = Some((start, end - start));
            }
            pos = end;
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_runs_are_clipped_to_the_range() {
        let mut bytes = [0u8; 16];
        set_bits(&mut bytes, 10, 20);
        set_bits(&mut bytes, 70, 71);
        let map = SearchMap::from_bitmap(&bytes, 100);
        assert_eq!(map.free_runs(0, 128), vec![(0, 10), (20, 50), (71, 29)]);
        assert_eq!(map.free_runs(5, 75), vec![(5, 5), (20, 50), (71, 4)]);
        assert_eq!(map.free_runs(12, 18), vec![]);
        assert_eq!(map.free_runs(100, 128), vec![]);
    }

    #[test]
    fn byte_bits_are_little_endian() {
        let mut b = [0u8; 4];
        set_bits(&mut b, 3, 10);
        assert_eq!(b, [0xF8, 0x03, 0, 0]);
        assert!(test_bit(&b, 9) && !test_bit(&b, 10));
        clear_bits(&mut b, 4, 9);
        assert_eq!(b, [0x08, 0x02, 0, 0]);
        assert_eq!(find_bit(&b, 0, 32, true), Some(3));
        assert_eq!(find_bit(&b, 4, 32, true), Some(9));
        assert_eq!(find_bit(&b, 0, 32, false), Some(0));
        assert_eq!(find_bit(&[0xFF], 0, 8, false), None);
        assert_eq!(count_clear(&b, 32), 30);
        assert_eq!(count_clear(&b, 10), 8);
    }

    #[test]
    fn runs_and_padding() {
        // 130 bits: used 0..5, 70..71; everything else free.
        let mut b = [0u8; 17];
        set_bits(&mut b, 0, 5);
        set_bits(&mut b, 70, 71);
        let mut m = SearchMap::from_bitmap(&b, 130);
        assert_eq!(m.find_run(0, 10), Some((5, 10)));
        assert_eq!(m.find_run(6, 65), None, "6..70 is only 64 long");
        assert_eq!(m.find_run(12, 59), Some((71, 59)));
        assert_eq!(m.find_run(72, 59), None, "bits past the end never count");
        assert_eq!(m.longest_run(), Some((5, 65)));
        m.set_range(60, 128);
        assert_eq!(m.longest_run(), Some((5, 55)));
        assert_eq!(m.find_run(100, 1), Some((128, 1)));
        m.set_range(0, 1000);
        assert_eq!(m.longest_run(), None);
        assert_eq!(m.find_run(0, 1), None);
    }

    #[test]
    fn full_words() {
        let b = [0u8; 16];
        let mut m = SearchMap::from_bitmap(&b, 128);
        assert_eq!(m.longest_run(), Some((0, 128)));
        m.set_range(64, 128);
        assert_eq!(m.find_run(10, 54), Some((10, 54)));
        assert_eq!(m.find_run(11, 54), None);
    }
}
