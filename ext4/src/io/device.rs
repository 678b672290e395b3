//! The block device abstraction: positional, thread-safe reads and writes
//! of the image.

use crate::error::{Error, Result};
use std::os::fd::RawFd;

/// Storage that holds an ext4 image. Implementations are positional
/// (no shared file offset), so any number of threads may use one at once.
pub trait BlockDevice: Send + Sync {
    /// Fills `buf` from byte `offset`; a read past the end is an error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;
    /// Writes `buf` at byte `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()>;
    /// Makes all completed writes durable.
    fn flush(&self) -> Result<()>;
    /// Size of the device in bytes.
    fn len(&self) -> u64;
    /// Whether the device is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The file descriptor backing the device, where one exists (for DAX
    /// mappings of image ranges).
    fn raw_fd(&self) -> Option<RawFd> {
        None
    }
    /// Gives bytes `offset..offset + len` back to the storage (FITRIM of
    /// free blocks): afterwards they read as zeros. This default writes
    /// the zeros; devices over files punch a hole instead.
    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        const CHUNK: u64 = 1 << 20;
        let zeros = vec![0u8; CHUNK.min(len) as usize];
        let mut done = 0;
        while done < len {
            let n = CHUNK.min(len - done);
            self.write_at(&zeros[..n as usize], offset + done)?;
            done += n;
        }
        Ok(())
    }
}

/// Error for a read that runs past the end of the device.
pub(crate) fn eof_error(offset: u64) -> Error {
    Error::Io { offset, source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof) }
}
