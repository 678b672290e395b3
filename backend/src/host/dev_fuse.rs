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

impl crate::adapter::Invalidator for DevFuse {
    /// FUSE_NOTIFY_INVAL_INODE with a negative offset: the kernel drops the
    /// node's cached attributes (and bumps its attribute version, so a
    /// reply already on its way with older ones is not cached either),
    /// not its pages. ENOENT (the kernel does not hold the node) and a
    /// session that ended are no failure.
    fn inval_attrs(&self, node: u64) {
        use fuse_abi::linux::{fuse_notify_code, fuse_notify_inval_inode_out, fuse_out_header};
        use zerocopy::IntoBytes;
        let body = fuse_notify_inval_inode_out { ino: node, off: -1, len: 0 };
        let len = std::mem::size_of::<fuse_out_header>() + std::mem::size_of_val(&body);
        let hdr =
            fuse_out_header { len: len as u32, error: fuse_notify_code::FUSE_NOTIFY_INVAL_INODE as i32, unique: 0 };
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(hdr.as_bytes());
        msg.extend_from_slice(body.as_bytes());
        if let Err(e) = Transport::send(self, &msg)
            && !matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENODEV | libc::ECONNABORTED))
        {
            log::warn!("invalidating the attributes of node {node}: {e}");
        }
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
                // The file system was unmounted, or the connection aborted
                // (through /sys/fs/fuse/connections/N/abort): the session
                // is over either way; the daemon finishes and closes the image.
                Some(libc::ENODEV | libc::ECONNABORTED) => return Ok(None),
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
