//! The DAX window's channel over vhost-user: SHMEM_MAP / SHMEM_UNMAP on
//! shared memory region 0 (virtio-fs's cache window), sent through the
//! backend request channel the frontend gave with SET_BACKEND_REQ_FD.

use crate::dax::ShmemChannel;
use std::io;
use std::os::fd::BorrowedFd;
use vhost::vhost_user::message::{VhostUserMMap, VhostUserMMapFlags};
use vhost::vhost_user::{Backend, VhostUserFrontendReqHandler};

/// virtio-fs's DAX window is shared memory region 0 (VIRTIO_FS_SHMCAP_ID_CACHE).
pub const CACHE_SHMID: u8 = 0;

/// [`ShmemChannel`] over a vhost-user backend request channel. Each call
/// waits for the frontend's acknowledgement (REPLY_ACK).
pub struct VhostShmem(pub Backend);

impl VhostShmem {
    fn request(shm_offset: u64, len: u64, fd_offset: u64, writable: bool) -> VhostUserMMap {
        let flags = if writable { VhostUserMMapFlags::WRITABLE } else { VhostUserMMapFlags::default() };
        VhostUserMMap { shmid: CACHE_SHMID, padding: [0; 7], fd_offset, shm_offset, len, flags: flags.bits() }
    }
}

impl ShmemChannel for VhostShmem {
    fn map(&self, shm_offset: u64, len: u64, fd: BorrowedFd<'_>, fd_offset: u64, writable: bool) -> io::Result<()> {
        self.0.shmem_map(&Self::request(shm_offset, len, fd_offset, writable), &fd).map(drop)
    }

    fn unmap(&self, shm_offset: u64, len: u64) -> io::Result<()> {
        self.0.shmem_unmap(&Self::request(shm_offset, len, 0, false)).map(drop)
    }
}
