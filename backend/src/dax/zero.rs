//! Memfds the window maps where the image has no block to show (zeros for
//! holes, unwritten extents and past EOF) or must not be mapped (private
//! copies of a read-only image's files).
//!
//! They are sealed against growing and shrinking, not against writes:
//! QEMU 11 maps every SHMEM_MAP piece with PROT_WRITE in its own address
//! space whatever the flags say (the guest's read-only mapping is enforced
//! by the guest kernel's page tables), and mmap(PROT_WRITE, MAP_SHARED) of
//! a write-sealed memfd fails. Each memfd belongs to one session's window,
//! so a guest kernel that stores through a range it mapped read-only
//! changes only what that same guest sees there, never the image.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd};
use std::os::unix::fs::FileExt;

/// Bytes copied into a memfd per step.
const CHUNK: usize = 1 << 20;

/// A memory file of fixed size.
#[derive(Debug)]
pub struct SealedMemfd {
    file: File,
    len: u64,
}

impl SealedMemfd {
    /// `len` bytes of zeros (sparse: no memory is used until read).
    pub fn zeros(len: u64) -> io::Result<SealedMemfd> {
        Self::filled("ext4-virtiofsd-zeros", len, |_, _| Ok(0))
    }

    /// `len` bytes, filled chunk by chunk: `fill(offset, buf)` puts the
    /// bytes from `offset` into `buf` and returns how many; fewer than asked
    /// ends the copy (the rest reads as zeros).
    pub fn filled(
        name: &str,
        len: u64,
        mut fill: impl FnMut(u64, &mut [u8]) -> io::Result<usize>,
    ) -> io::Result<SealedMemfd> {
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
        let mut buf = vec![0u8; CHUNK.min(len as usize)];
        let mut at = 0u64;
        while at < len {
            let want = (len - at).min(CHUNK as u64) as usize;
            let n = fill(at, &mut buf[..want])?.min(want);
            file.write_all_at(&buf[..n], at)?;
            if n < want {
                break;
            }
            at += n as u64;
        }
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
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
    fn a_filled_memfd_reads_its_bytes_and_keeps_its_size() {
        let src: Vec<u8> = (0..3 * CHUNK + 100).map(|i| (i % 251) as u8).collect();
        let m = SealedMemfd::filled("t", 4 * CHUNK as u64, |off, buf| {
            let rest = src.get(off as usize..).unwrap_or(&[]);
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            Ok(n)
        })
        .unwrap();
        let mut got = vec![1u8; 4 * CHUNK];
        m.file.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(&got[..src.len()], &src[..]);
        assert!(got[src.len()..].iter().all(|b| *b == 0), "past the copy: zeros");
        assert!(m.file.set_len(1).is_err(), "a sealed memfd shrank");
        assert!(m.file.set_len(8 * CHUNK as u64).is_err(), "a sealed memfd grew");
        assert_eq!(m.len(), 4 * CHUNK as u64);
        let z = SealedMemfd::zeros(8192).unwrap();
        let mut b = [1u8; 8192];
        z.file.read_exact_at(&mut b, 0).unwrap();
        assert!(b.iter().all(|x| *x == 0));
    }
}
