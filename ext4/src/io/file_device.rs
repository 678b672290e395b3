//! An image file accessed with pread/pwrite.

use super::device::{BlockDevice, eof_error};
use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// An ext4 image in a host file.
#[derive(Debug)]
pub struct FileDevice {
    file: File,
    len: u64,
}

impl FileDevice {
    /// Opens the image at `path`, for writing too unless `read_only`, and
    /// locks it for as long as the device lives ([`super::image_lock`]):
    /// exclusively for writing, shared for reading;
    /// [`Error::ImageLocked`] when another open holds a conflicting lock.
    pub fn open(path: &Path, read_only: bool) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|source| Error::Io { offset: 0, source })?;
        super::image_lock::lock(&file, path, !read_only)?;
        Self::from_file(file)
    }

    /// Wraps an already open file (unlocked: locking it is the caller's business).
    pub fn from_file(file: File) -> Result<Self> {
        let len = file.metadata().map_err(|source| Error::Io { offset: 0, source })?.len();
        Ok(FileDevice { file, len })
    }
}

impl BlockDevice for FileDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        if offset.checked_add(buf.len() as u64).is_none_or(|end| end > self.len) {
            return Err(eof_error(offset));
        }
        self.file.read_exact_at(buf, offset).map_err(|source| Error::Io { offset, source })
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.file.write_all_at(buf, offset).map_err(|source| Error::Io { offset, source })
    }

    fn flush(&self) -> Result<()> {
        self.file.sync_data().map_err(|source| Error::Io { offset: 0, source })
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.file.as_raw_fd())
    }

    /// Punches a hole (the image keeps its size): the host file system
    /// frees the space and the range reads as zeros.
    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
            return Err(Error::InvalidArgument(format!("discard of {len} bytes at {offset}")));
        };
        // SAFETY: fallocate on a file descriptor this device owns; no memory
        // is passed.
        let r = unsafe {
            libc::fallocate(self.file.as_raw_fd(), libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, off, n)
        };
        if r != 0 {
            let source = std::io::Error::last_os_error();
            return Err(match source.raw_os_error() {
                Some(libc::EOPNOTSUPP) => Error::Unsupported("punching holes in the image file".into()),
                _ => Error::Io { offset, source },
            });
        }
        Ok(())
    }
}
