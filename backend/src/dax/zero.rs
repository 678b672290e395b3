//! Sealed memfds the window maps where the image has no block to show:
//! zeros (holes, unwritten extents, past EOF) and private copies of inline
//! files on a read-only image.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd};
use std::os::unix::fs::FileExt;

/// A read-only, sealed memory file: nobody (not the daemon, not the VMM)
/// can change its bytes or its size once made.
#[derive(Debug)]
pub struct SealedMemfd {
    file: File,
    len: u64,
}

impl SealedMemfd {
    /// `len` bytes of zeros (sparse: no memory is used until read).
    pub fn zeros(len: u64) -> io::Result<SealedMemfd> {
        Self::with_bytes("ext4-virtiofsd-zeros", len, &[])
    }

    /// `len` bytes starting with `bytes`, zeros after them.
    pub fn with_bytes(name: &str, len: u64, bytes: &[u8]) -> io::Result<SealedMemfd> {
        let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
        // SAFETY: memfd_create with a NUL-terminated name; the result is
        // checked and owned by the File below.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(len)?;
        file.write_all_at(bytes, 0)?;
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on a descriptor we own.
        if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(SealedMemfd { file, len })
    }

    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The descriptor to send to the frontend.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_memfd_reads_its_bytes_and_refuses_writes() {
        let m = SealedMemfd::with_bytes("t", 8192, b"inline").unwrap();
        let mut buf = [1u8; 16];
        m.file.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf[..6], b"inline");
        assert_eq!(&buf[6..], &[0u8; 10]);
        assert!(m.file.write_at(b"x", 0).is_err(), "a sealed memfd took a write");
        assert!(m.file.set_len(1).is_err(), "a sealed memfd shrank");
        assert_eq!(m.len(), 8192);
    }
}
