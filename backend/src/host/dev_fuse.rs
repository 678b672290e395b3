//! The host kernel's FUSE device as a transport: each worker reads whole
//! requests from /dev/fuse into its own buffer and writes replies back
//! with one write(2) each.

use crate::fuse::dispatch::Transport;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// An open /dev/fuse connection.
pub struct DevFuse {
    file: File,
}

impl DevFuse {
    /// Opens /dev/fuse.
    pub fn open() -> io::Result<DevFuse> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse")?;
        Ok(DevFuse { file })
    }

    /// The descriptor, for the `fd=` mount option.
    pub fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }
}

impl Transport for DevFuse {
    fn receive(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            // SAFETY: reads into a buffer we own exclusively, of the length given.
            let n = unsafe { libc::read(self.raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(Some(n as usize));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                // Interrupted, or the request was withdrawn before we read it.
                Some(libc::EINTR | libc::EAGAIN | libc::ENOENT) => continue,
                // The file system was unmounted or the connection aborted.
                Some(libc::ENODEV) => return Ok(None),
                _ => return Err(err),
            }
        }
    }

    fn send(&self, reply: &[u8]) -> io::Result<()> {
        // SAFETY: writes from a buffer we own, of the length given.
        let n = unsafe { libc::write(self.raw_fd(), reply.as_ptr().cast(), reply.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
