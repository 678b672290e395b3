//! Where file data goes to and comes from. Reads and writes of file data
//! move bytes between the image and the caller's memory exactly once: into
//! or out of a plain buffer, or — for a virtio-fs request — straight between
//! the image file and guest memory, which the daemon reaches only through
//! I/O vectors and must never view as a Rust slice (the guest can change it
//! at any time). The core speaks to both through these two traits.

use crate::error::Result;
use crate::io::BlockDevice;

/// The destination of file data read from the image ([`crate::fs::Ext4::read_to`]).
/// Calls arrive in file order and together cover the bytes read.
pub trait DataSink {
    /// Appends `len` bytes read from `dev` at byte `offset`.
    fn read_from(&mut self, dev: &dyn BlockDevice, offset: u64, len: usize) -> Result<()>;
    /// Appends `len` zero bytes (a hole, an unwritten extent).
    fn zeros(&mut self, len: usize) -> Result<()>;
    /// Appends `data` (inline data held in the inode).
    fn bytes(&mut self, data: &[u8]) -> Result<()>;
}

/// The origin of file data written to the image ([`crate::fs::Ext4::write_from`]).
/// Random access: a write step that must be retried reads its part again.
pub trait DataSource {
    /// Number of bytes to write.
    fn len(&self) -> usize;
    /// Whether there is nothing to write.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Writes bytes `at..at + len` of the source to `dev` at byte `offset`.
    fn write_to(&mut self, at: usize, len: usize, dev: &dyn BlockDevice, offset: u64) -> Result<()>;
    /// Copies bytes `at..at + buf.len()` of the source into `buf` (partial
    /// blocks and inline data, which the core assembles itself).
    fn copy_to(&mut self, at: usize, buf: &mut [u8]) -> Result<()>;
}

/// A [`DataSink`] over a caller's buffer.
#[derive(Debug)]
pub struct SliceSink<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> SliceSink<'a> {
    /// A sink filling `buf` from its start.
    pub fn new(buf: &'a mut [u8]) -> Self {
        SliceSink { buf, pos: 0 }
    }

    fn take(&mut self, len: usize) -> &mut [u8] {
        let chunk = &mut self.buf[self.pos..self.pos + len];
        self.pos += len;
        chunk
    }
}

impl DataSink for SliceSink<'_> {
    fn read_from(&mut self, dev: &dyn BlockDevice, offset: u64, len: usize) -> Result<()> {
        dev.read_at(self.take(len), offset)
    }
    fn zeros(&mut self, len: usize) -> Result<()> {
        self.take(len).fill(0);
        Ok(())
    }
    fn bytes(&mut self, data: &[u8]) -> Result<()> {
        self.take(data.len()).copy_from_slice(data);
        Ok(())
    }
}

/// A [`DataSource`] over a caller's buffer.
#[derive(Debug, Clone, Copy)]
pub struct SliceSource<'a>(pub &'a [u8]);

impl DataSource for SliceSource<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn write_to(&mut self, at: usize, len: usize, dev: &dyn BlockDevice, offset: u64) -> Result<()> {
        dev.write_at(&self.0[at..at + len], offset)
    }
    fn copy_to(&mut self, at: usize, buf: &mut [u8]) -> Result<()> {
        buf.copy_from_slice(&self.0[at..at + buf.len()]);
        Ok(())
    }
}
