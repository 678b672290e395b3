//! How the daemon asks the frontend to change the window.

use std::io;
use std::os::fd::BorrowedFd;

/// The frontend's side of the shared memory protocol (vhost-user
/// SHMEM_MAP / SHMEM_UNMAP on region 0). Both calls return once the
/// frontend acknowledged the change.
pub trait ShmemChannel: Send + Sync {
    /// Maps `len` bytes of `fd` from `fd_offset` at `shm_offset` in the
    /// window, writable or read-only. Never called for a range that
    /// overlaps a live mapping.
    fn map(&self, shm_offset: u64, len: u64, fd: BorrowedFd<'_>, fd_offset: u64, writable: bool) -> io::Result<()>;
    /// Unmaps exactly a range an earlier [`ShmemChannel::map`] mapped.
    fn unmap(&self, shm_offset: u64, len: u64) -> io::Result<()>;
}
