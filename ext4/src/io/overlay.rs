//! A copy-on-write overlay device: writes stay in memory over a read-only
//! base and reads see them merged. Journal recovery of an image opened
//! read-only replays into one, so the image file is never modified.

use super::device::{BlockDevice, eof_error};
use crate::error::Result;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Granularity of the in-memory copies. Writes of any size and alignment
/// are accepted; a page is copied from the base on its first write.
const PAGE: u64 = 4096;

/// A device whose writes stay in memory over a read-only base.
///
/// Memory grows with the number of distinct pages written, never with the
/// size of the base. It has no file descriptor of its own ([`raw_fd`] is
/// `None`): mapping the base file would bypass the overlaid writes.
///
/// [`raw_fd`]: BlockDevice::raw_fd
pub struct OverlayDevice {
    base: Arc<dyn BlockDevice>,
    state: RwLock<Overlay>,
}

/// The overlaid pages and the device end they extend to.
#[derive(Default)]
struct Overlay {
    pages: HashMap<u64, Box<[u8]>>,
    /// One past the last byte ever written (0 if none).
    end: u64,
}

impl OverlayDevice {
    /// An overlay over `base`.
    pub fn new(base: Arc<dyn BlockDevice>) -> Self {
        OverlayDevice { base, state: RwLock::new(Overlay::default()) }
    }

    /// Fills `buf` with the base's bytes from `offset`, zeros past its end.
    fn read_base(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let base_len = self.base.len();
        let avail = base_len.saturating_sub(offset).min(buf.len() as u64) as usize;
        let (head, tail) = buf.split_at_mut(avail);
        if !head.is_empty() {
            self.base.read_at(head, offset)?;
        }
        tail.fill(0);
        Ok(())
    }

    /// Calls `f(page start, range in page, range in buffer)` for each page
    /// overlapping `len` bytes at `offset` (which must not overflow).
    fn for_pages(offset: u64, len: usize, mut f: impl FnMut(u64, std::ops::Range<usize>, std::ops::Range<usize>)) {
        let end = offset + len as u64;
        let mut pos = offset;
        while pos < end {
            let page = pos - pos % PAGE;
            let stop = end.min(page + PAGE);
            let in_page = (pos - page) as usize..(stop - page) as usize;
            let in_buf = (pos - offset) as usize..(stop - offset) as usize;
            f(page, in_page, in_buf);
            pos = stop;
        }
    }
}

impl BlockDevice for OverlayDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let end = offset.checked_add(buf.len() as u64).ok_or_else(|| eof_error(offset))?;
        if end > self.base.len().max(state.end) {
            return Err(eof_error(offset));
        }
        self.read_base(buf, offset)?;
        if !state.pages.is_empty() {
            Self::for_pages(offset, buf.len(), |page, in_page, in_buf| {
                if let Some(p) = state.pages.get(&page) {
                    buf[in_buf].copy_from_slice(&p[in_page]);
                }
            });
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let end = offset.checked_add(buf.len() as u64).ok_or_else(|| eof_error(offset))?;
        // Copy in every missing page first, so that a failed base read
        // leaves the overlay unchanged.
        let mut missing = Vec::new();
        Self::for_pages(offset, buf.len(), |page, _, _| {
            if !state.pages.contains_key(&page) {
                missing.push(page);
            }
        });
        for page in missing {
            let mut data = vec![0u8; PAGE as usize].into_boxed_slice();
            self.read_base(&mut data, page)?;
            state.pages.insert(page, data);
        }
        Self::for_pages(offset, buf.len(), |page, in_page, in_buf| {
            if let Some(p) = state.pages.get_mut(&page) {
                p[in_page].copy_from_slice(&buf[in_buf]);
            }
        });
        state.end = state.end.max(end);
        Ok(())
    }

    /// Nothing to make durable: the overlay lives in memory only.
    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn len(&self) -> u64 {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        self.base.len().max(state.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemDevice;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + 3) as u8).collect()
    }

    #[test]
    fn writes_stay_in_memory_and_merge_with_reads() {
        let base = Arc::new(MemDevice::new(pattern(3 * PAGE as usize)));
        let ov = OverlayDevice::new(base.clone());
        let mut model = pattern(3 * PAGE as usize);
        // Unaligned writes of odd sizes, within one page and across pages.
        for (off, len, byte) in [(5usize, 3usize, 0xA1u8), (4090, 20, 0xB2), (100, 4096 + 50, 0xC3), (8191, 1, 0xD4)] {
            ov.write_at(&vec![byte; len], off as u64).unwrap();
            model[off..off + len].fill(byte);
        }
        assert_eq!(base.contents(), pattern(3 * PAGE as usize), "base untouched");
        let mut all = vec![0u8; model.len()];
        ov.read_at(&mut all, 0).unwrap();
        assert_eq!(all, model);
        for (off, len) in [(0usize, 1usize), (3, 9), (4000, 300), (8190, 3), (12287, 1)] {
            let mut b = vec![0u8; len];
            ov.read_at(&mut b, off as u64).unwrap();
            assert_eq!(b, model[off..off + len], "read {off}+{len}");
        }
    }

    #[test]
    fn writes_past_the_end_extend_the_device() {
        let base = Arc::new(MemDevice::new(pattern(100)));
        let ov = OverlayDevice::new(base);
        assert_eq!(ov.len(), 100);
        let mut b = [0u8; 4];
        assert!(ov.read_at(&mut b, 98).is_err());
        ov.write_at(&[9, 9], 102).unwrap();
        assert_eq!(ov.len(), 104);
        ov.read_at(&mut b, 98).unwrap();
        assert_eq!(b, [pattern(100)[98], pattern(100)[99], 0, 0]);
        let mut b = [0u8; 6];
        ov.read_at(&mut b, 98).unwrap();
        assert_eq!(&b[4..], &[9, 9]);
        assert!(ov.read_at(&mut b, 99).is_err());
        assert!(ov.read_at(&mut b, u64::MAX - 2).is_err());
        assert!(ov.write_at(&b, u64::MAX - 2).is_err());
        ov.flush().unwrap();
        assert!(ov.raw_fd().is_none());
    }
}
