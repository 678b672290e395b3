//! A block device that counts what is read through it: how tests show the
//! cost of an operation in device reads (open touching only the superblock
//! and descriptors, a seek walking only the mapping blocks it needs, an
//! orphan release reading a bounded number of blocks), never in time.

use super::BlockDevice;
use crate::error::Result;
use std::sync::atomic::{AtomicU64, Ordering};

/// Wraps a device and counts the reads (and the bytes read) through it.
#[derive(Debug)]
pub struct CountingDevice<D> {
    inner: D,
    reads: AtomicU64,
    bytes: AtomicU64,
}

impl<D: BlockDevice> CountingDevice<D> {
    /// Counts the reads through `inner`, from zero.
    pub fn new(inner: D) -> Self {
        CountingDevice { inner, reads: AtomicU64::new(0), bytes: AtomicU64::new(0) }
    }

    /// Reads so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }
}

impl<D: BlockDevice> BlockDevice for CountingDevice<D> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.bytes.fetch_add(buf.len() as u64, Ordering::SeqCst);
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.inner.raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::MemDevice;

    #[test]
    fn counts_reads_and_bytes_not_writes() {
        let d = CountingDevice::new(MemDevice::new(vec![0u8; 8192]));
        let mut buf = [0u8; 100];
        d.read_at(&mut buf, 0).unwrap();
        d.read_at(&mut buf[..10], 4096).unwrap();
        d.write_at(&buf, 0).unwrap();
        assert_eq!((d.reads(), d.bytes_read()), (2, 110));
    }
}
