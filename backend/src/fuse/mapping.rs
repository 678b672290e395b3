//! FUSE_SETUPMAPPING and FUSE_REMOVEMAPPING (virtio-fs DAX), and the
//! refresh of a file's mappings after requests that change its blocks: the
//! wire side of [`crate::dax::DaxWindow`], and the one place its errors
//! become errno values.

use super::server::Server;
use super::wire::ArgReader;
use crate::adapter::errno::{Errno, FsResult};
use crate::dax::{DaxError, DaxWindow};
use fuse_abi::linux::{
    FUSE_SETUPMAPPING_FLAG_WRITE, fuse_removemapping_in, fuse_removemapping_one, fuse_setupmapping_in,
};
use std::sync::Arc;

impl From<DaxError> for Errno {
    fn from(e: DaxError) -> Errno {
        match e {
            DaxError::Invalid(_) | DaxError::NotMapped(..) => Errno::EINVAL,
            DaxError::ReadOnly => Errno::EROFS,
            DaxError::NotWritable(_) => Errno::EPERM,
            DaxError::NoChannel => Errno::EOPNOTSUPP,
            DaxError::Memory(e) => {
                log::error!("dax: {e}");
                Errno(libc::ENOMEM)
            }
            DaxError::Frontend(e) => {
                log::error!("dax: the frontend failed a mapping: {e}");
                Errno::EIO
            }
            DaxError::Core(e) => Errno::from(e),
        }
    }
}

impl Server {
    fn window(&self) -> FsResult<&Arc<DaxWindow>> {
        self.dax_window().ok_or(Errno::ENOSYS)
    }

    /// FUSE_SETUPMAPPING: `fh` may be -1 (Linux maps without a handle).
    pub(super) fn setup_mapping(&self, node: u64, a: &mut ArgReader<'_>) -> FsResult<()> {
        let w = self.window()?;
        let m: fuse_setupmapping_in = a.read("setupmapping_in")?;
        let ino = self.fs().inode_of_node(node)?;
        let writable = m.flags & FUSE_SETUPMAPPING_FLAG_WRITE as u64 != 0;
        w.setup(ino, m.foffset, m.len, m.moffset, writable).map_err(|e| {
            log::debug!("SETUPMAPPING of inode {ino}: {e}");
            Errno::from(e)
        })
    }

    /// FUSE_REMOVEMAPPING: `count` ranges follow; the request must hold
    /// them all. A refused request removes nothing.
    pub(super) fn remove_mapping(&self, a: &mut ArgReader<'_>) -> FsResult<()> {
        let w = self.window()?;
        let r: fuse_removemapping_in = a.read("removemapping_in")?;
        let one = std::mem::size_of::<fuse_removemapping_one>();
        if r.count == 0 || (r.count as usize).checked_mul(one).is_none_or(|n| n > a.rest().len()) {
            log::warn!("REMOVEMAPPING of {} ranges carries {} bytes", r.count, a.rest().len());
            return Err(Errno::EINVAL);
        }
        let mut ranges = Vec::with_capacity(r.count as usize);
        for _ in 0..r.count {
            let e: fuse_removemapping_one = a.read("removemapping_one")?;
            ranges.push((e.moffset, e.len));
        }
        w.remove(&ranges).map_err(|e| {
            log::debug!("REMOVEMAPPING: {e}");
            Errno::from(e)
        })
    }

    /// After a request that may have changed node `node`'s blocks or size
    /// succeeded: its mappings show the new blocks before the reply.
    pub(super) fn refresh_mapped(&self, node: u64) {
        if let (Some(w), Ok(ino)) = (self.dax_window(), self.fs().inode_of_node(node)) {
            w.refresh(ino);
        }
    }
}
