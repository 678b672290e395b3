//! An ordered map of disjoint, inclusive byte ranges to values, keyed by
//! start offset: finding the ranges that overlap a query and rewriting a
//! range cost O(log n + overlaps), never a walk over every range. The
//! POSIX lock table keeps its segments (and each owner's coverage) in it.

use std::collections::BTreeMap;

/// Disjoint inclusive ranges `start..=end`, each with a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeMap<V> {
    /// start → (end, value).
    ranges: BTreeMap<u64, (u64, V)>,
}

impl<V> Default for RangeMap<V> {
    fn default() -> Self {
        RangeMap { ranges: BTreeMap::new() }
    }
}

/// What [`RangeMap::update`] replaced, to measure the change or undo it.
#[derive(Debug)]
pub struct Undo<V> {
    /// First and last key of the rewritten window.
    from: u64,
    to: u64,
    /// The ranges the window held before.
    pub old: Vec<(u64, u64, V)>,
}

impl<V: Clone + PartialEq> RangeMap<V> {
    /// Whether no range is stored.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges overlapping `start..=end`, in order.
    pub fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, u64, &V)> {
        let before = self.ranges.range(..start).next_back().filter(|(_, (e, _))| *e >= start);
        before.into_iter().chain(self.ranges.range(start..=end)).map(|(&s, (e, v))| (s, *e, v))
    }

    /// The range ending right before `start`, if one does.
    pub fn left_neighbour(&self, start: u64) -> Option<(u64, u64, &V)> {
        let prev = start.checked_sub(1)?;
        self.ranges.range(..start).next_back().filter(|(_, (e, _))| *e == prev).map(|(&s, (e, v))| (s, *e, v))
    }

    /// The range starting right after `end`, if one does.
    pub fn right_neighbour(&self, end: u64) -> Option<(u64, u64, &V)> {
        let next = end.checked_add(1)?;
        self.ranges.get(&next).map(|(e, v)| (next, *e, v))
    }

    /// The ranges of the window an update of `start..=end` rewrites.
    pub fn window(&self, u: &Undo<V>) -> impl Iterator<Item = (u64, u64, &V)> {
        self.ranges.range(u.from..=u.to).map(|(&s, (e, v))| (s, *e, v))
    }

    /// Rewrites `start..=end`: every stored piece inside it gets
    /// `f(Some(value))`, every uncovered gap `f(None)`; `None` leaves the
    /// piece empty. Pieces outside the range keep their values; neighbours
    /// with equal values merge. Returns what the rewritten window held.
    pub fn update(&mut self, start: u64, end: u64, f: impl Fn(Option<&V>) -> Option<V>) -> Undo<V> {
        // The window: from the range touching start - 1 (a merge
        // candidate) through the range starting at end + 1.
        let lo = start.saturating_sub(1);
        let from = match self.ranges.range(..=lo).next_back() {
            Some((&s, (e, _))) if *e >= lo => s,
            _ => lo,
        };
        let to = end.saturating_add(1);
        let keys: Vec<u64> = self.ranges.range(from..=to).map(|(&k, _)| k).collect();
        let old: Vec<(u64, u64, V)> =
            keys.iter().map(|k| self.ranges.remove(k).map(|(e, v)| (*k, e, v)).expect("key just listed")).collect();
        let mut pieces: Vec<(u64, u64, V)> = Vec::with_capacity(old.len() + 2);
        let mut cursor = Some(start);
        for (s, e, v) in &old {
            if *s < start {
                pieces.push((*s, (*e).min(start - 1), v.clone()));
            }
            if *s <= end && *e >= start {
                let (ms, me) = ((*s).max(start), (*e).min(end));
                if let Some(c) = cursor.filter(|&c| c < ms) {
                    pieces.extend(f(None).map(|v| (c, ms - 1, v)));
                }
                pieces.extend(f(Some(v)).map(|v| (ms, me, v)));
                cursor = me.checked_add(1);
            }
            if *e > end {
                pieces.push(((*s).max(end + 1), *e, v.clone()));
            }
        }
        if let Some(c) = cursor.filter(|&c| c <= end) {
            pieces.extend(f(None).map(|v| (c, end, v)));
        }
        pieces.sort_by_key(|p| p.0);
        let mut merged: Vec<(u64, u64, V)> = Vec::with_capacity(pieces.len());
        for p in pieces {
            match merged.last_mut() {
                Some(last) if last.1.checked_add(1) == Some(p.0) && last.2 == p.2 => last.1 = p.1,
                _ => merged.push(p),
            }
        }
        for (s, e, v) in merged {
            self.ranges.insert(s, (e, v));
        }
        Undo { from, to, old }
    }

    /// Puts back what an [`RangeMap::update`] replaced.
    pub fn undo(&mut self, u: Undo<V>) {
        let keys: Vec<u64> = self.ranges.range(u.from..=u.to).map(|(&k, _)| k).collect();
        for k in keys {
            self.ranges.remove(&k);
        }
        for (s, e, v) in u.old {
            self.ranges.insert(s, (e, v));
        }
    }

    /// Every range, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64, &V)> {
        self.ranges.iter().map(|(&s, (e, v))| (s, *e, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(m: &RangeMap<u8>) -> Vec<(u64, u64, u8)> {
        m.iter().map(|(s, e, v)| (s, e, *v)).collect()
    }

    #[test]
    fn set_split_merge_and_undo() {
        let mut m = RangeMap::default();
        m.update(10, 19, |_| Some(1));
        m.update(30, u64::MAX, |_| Some(1));
        assert_eq!(all(&m), vec![(10, 19, 1), (30, u64::MAX, 1)]);
        m.update(20, 29, |_| Some(1));
        assert_eq!(all(&m), vec![(10, u64::MAX, 1)], "adjacent equal ranges merge");
        let u = m.update(15, 40, |v| v.map(|_| 2));
        assert_eq!(all(&m), vec![(10, 14, 1), (15, 40, 2), (41, u64::MAX, 1)]);
        assert_eq!(u.old, vec![(10, u64::MAX, 1)]);
        m.undo(u);
        assert_eq!(all(&m), vec![(10, u64::MAX, 1)]);
        m.update(0, 100, |_| None);
        assert_eq!(all(&m), vec![(101, u64::MAX, 1)]);
        assert_eq!(m.overlapping(0, 100).count(), 0);
        assert_eq!(m.overlapping(50, 101).map(|r| r.0).collect::<Vec<_>>(), vec![101]);
        m.update(0, u64::MAX, |_| None);
        assert!(m.is_empty());
    }

    #[test]
    fn gaps_and_pieces_get_their_own_values() {
        let mut m = RangeMap::default();
        m.update(5, 9, |_| Some(1));
        m.update(0, 20, |v| Some(v.map_or(7, |x| x + 1)));
        assert_eq!(all(&m), vec![(0, 4, 7), (5, 9, 2), (10, 20, 7)]);
        assert_eq!(m.left_neighbour(5).map(|r| r.0), Some(0));
        assert_eq!(m.right_neighbour(9).map(|r| r.0), Some(10));
        assert_eq!(m.overlapping(3, 6).map(|r| r.0).collect::<Vec<_>>(), vec![0, 5]);
    }
}
