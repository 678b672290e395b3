//! A device that records every write and flush, for crash tests: it can
//! rebuild the image as the disk could hold it if power failed at any
//! point of the recorded history.
//!
//! The model of the disk: a flush makes every write issued before it
//! durable; between two flushes a volatile cache may have written any
//! subset of the pending writes, in any order, each piece of `unit` bytes
//! (a sector or block) independently. A piece written several times since
//! the last flush holds one of its versions in issue order (or its old
//! contents): whatever the cache had pushed out when the power failed.

use super::device::BlockDevice;
use crate::error::Result;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One recorded device operation.
#[derive(Debug, Clone)]
pub enum Op {
    /// `data` written at byte `offset`.
    Write {
        /// Byte offset on the device.
        offset: u64,
        /// The bytes written.
        data: Arc<[u8]>,
    },
    /// A flush: every write before it is durable.
    Flush,
}

/// Where in the recorded history the power fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Right after flush number `n` (counting from 1) completed; 0 means
    /// before the first flush with nothing pending durable. Exactly the
    /// writes issued before that flush are on disk.
    AfterFlush(usize),
    /// Between flush `after_flush` (0: the start) and the next one (or the
    /// end of the history): the writes before it are durable and, of those
    /// issued since, each `unit`-byte piece holds a version chosen by
    /// `seed` (none, or the contents after one of its writes, in order).
    Torn {
        /// The last completed flush (0: none).
        after_flush: usize,
        /// Size of the independently persisted pieces, e.g. 512 or a block.
        unit: u64,
        /// Seed of the deterministic choice.
        seed: u64,
    },
}

/// Wraps a device, passing every operation through and recording it.
/// Operations are serialised (the log order is the device order).
pub struct RecordingDevice {
    inner: Arc<dyn BlockDevice>,
    ops: Mutex<Vec<Op>>,
}

impl RecordingDevice {
    /// Records the operations on `inner` from now on.
    pub fn new(inner: Arc<dyn BlockDevice>) -> Self {
        RecordingDevice { inner, ops: Mutex::new(Vec::new()) }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Vec<Op>> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The operations recorded so far, in order.
    pub fn ops(&self) -> Vec<Op> {
        self.log().clone()
    }

    /// Number of flushes recorded so far.
    pub fn flushes(&self) -> usize {
        self.log().iter().filter(|o| matches!(o, Op::Flush)).count()
    }

    /// Number of writes issued after flush `n` (0: the start) and before
    /// the next flush or the end of the history.
    pub fn writes_after_flush(&self, n: usize) -> usize {
        let ops = self.log();
        epoch(&ops, n).iter().filter(|o| matches!(o, Op::Write { .. })).count()
    }

    /// The image at `point`, given `base`, the device contents when the
    /// recording started. Writes past the end of `base` extend it.
    pub fn image_at(&self, base: &[u8], point: CrashPoint) -> Vec<u8> {
        let mut image = base.to_vec();
        materialize(&self.log(), &mut image, point);
        image
    }
}

/// The operations before flush `n` (excluded) and the ones after it up to
/// the next flush, as (durable, pending) slices.
fn split(ops: &[Op], n: usize) -> (&[Op], &[Op]) {
    let mut seen = 0;
    let mut cut = if n == 0 { 0 } else { ops.len() };
    for (i, op) in ops.iter().enumerate() {
        if n > 0 && matches!(op, Op::Flush) {
            seen += 1;
            if seen == n {
                cut = i + 1;
                break;
            }
        }
    }
    let rest = &ops[cut..];
    let end = rest.iter().position(|o| matches!(o, Op::Flush)).unwrap_or(rest.len());
    (&ops[..cut], &rest[..end])
}

fn epoch(ops: &[Op], n: usize) -> &[Op] {
    split(ops, n).1
}

fn apply(image: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    let end = start + data.len();
    if end > image.len() {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(data);
}

/// Applies to `image` what the disk holds at `point` of the history `ops`.
pub fn materialize(ops: &[Op], image: &mut Vec<u8>, point: CrashPoint) {
    let n = match point {
        CrashPoint::AfterFlush(n) => n,
        CrashPoint::Torn { after_flush, .. } => after_flush,
    };
    let (durable, pending) = split(ops, n);
    for op in durable {
        if let Op::Write { offset, data } = op {
            apply(image, *offset, data);
        }
    }
    let CrashPoint::Torn { unit, seed, .. } = point else { return };
    let unit = unit.max(1);
    // Every piece written since the flush, with the writes touching it in
    // issue order: (write's offset, write's data).
    let mut pieces: BTreeMap<u64, Vec<(u64, &[u8])>> = BTreeMap::new();
    for op in pending {
        let Op::Write { offset, data } = op else { continue };
        let end = offset + data.len() as u64;
        let mut u = offset / unit;
        while u * unit < end {
            pieces.entry(u).or_default().push((*offset, data));
            u += 1;
        }
    }
    let mut rng = SplitMix(seed);
    for (u, writes) in pieces {
        let versions = rng.below(writes.len() as u64 + 1) as usize;
        let (lo, hi) = (u * unit, (u + 1) * unit);
        for &(offset, data) in &writes[..versions] {
            let from = lo.max(offset);
            let to = hi.min(offset + data.len() as u64);
            apply(image, from, &data[(from - offset) as usize..(to - offset) as usize]);
        }
    }
}

/// A small deterministic generator (SplitMix64).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

impl BlockDevice for RecordingDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        let mut ops = self.log();
        self.inner.write_at(buf, offset)?;
        ops.push(Op::Write { offset, data: buf.into() });
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        let mut ops = self.log();
        self.inner.flush()?;
        ops.push(Op::Flush);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemDevice;

    fn recorded() -> (Vec<u8>, RecordingDevice) {
        let base = vec![0u8; 64];
        let dev = RecordingDevice::new(Arc::new(MemDevice::new(base.clone())));
        dev.write_at(&[1; 16], 0).unwrap();
        dev.flush().unwrap();
        dev.write_at(&[2; 16], 16).unwrap();
        dev.write_at(&[3; 8], 20).unwrap();
        dev.write_at(&[4; 16], 48).unwrap();
        dev.flush().unwrap();
        dev.write_at(&[5; 4], 60).unwrap();
        (base, dev)
    }

    #[test]
    fn flush_points_hold_exactly_the_writes_before() {
        let (base, dev) = recorded();
        assert_eq!(dev.flushes(), 2);
        assert_eq!(dev.writes_after_flush(0), 1);
        assert_eq!(dev.writes_after_flush(1), 3);
        assert_eq!(dev.writes_after_flush(2), 1);
        assert_eq!(dev.image_at(&base, CrashPoint::AfterFlush(0)), base);
        let one = dev.image_at(&base, CrashPoint::AfterFlush(1));
        assert_eq!(&one[..16], &[1; 16]);
        assert!(one[16..].iter().all(|&b| b == 0));
        let two = dev.image_at(&base, CrashPoint::AfterFlush(2));
        assert_eq!(&two[16..20], &[2; 4]);
        assert_eq!(&two[20..28], &[3; 8]);
        assert_eq!(&two[28..32], &[2; 4]);
        assert_eq!(&two[48..64], &[4; 16]);
        // The device itself holds everything, flushed or not.
        let mut all = vec![0u8; 64];
        dev.read_at(&mut all, 0).unwrap();
        assert_eq!(&all[60..], &[5; 4]);
        assert_eq!(&two[60..], &[4; 4]);
    }

    #[test]
    fn torn_points_keep_each_unit_at_one_of_its_versions() {
        let (base, dev) = recorded();
        let mut seen = std::collections::HashSet::new();
        for seed in 0..64 {
            let img = dev.image_at(&base, CrashPoint::Torn { after_flush: 1, unit: 8, seed });
            assert_eq!(&img[..16], &[1; 16], "durable writes are always there");
            // Unit 16..24: nothing, [2;8], or [2,2,2,2,3,3,3,3].
            let u = &img[16..24];
            assert!(u == [0; 8] || u == [2; 8] || u == [2, 2, 2, 2, 3, 3, 3, 3], "{u:?}");
            // Unit 24..32: nothing, the first write, or both in issue order.
            let v = &img[24..32];
            assert!(v == [0; 8] || v == [2; 8] || v == [3, 3, 3, 3, 2, 2, 2, 2], "{v:?}");
            for u in img[48..].chunks(8) {
                assert!(u == [0; 8] || u == [4; 8], "pieces of one write persist independently: {u:?}");
            }
            seen.insert(img);
        }
        assert!(seen.len() > 8, "the seed varies the outcome");
        let same = |s| dev.image_at(&base, CrashPoint::Torn { after_flush: 2, unit: 8, seed: s });
        assert_eq!(same(3), same(3), "deterministic");
    }
}
