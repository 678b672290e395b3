//! Symbolic link targets: fast symlinks (target in `i_block`), inline-data
//! symlinks and slow symlinks (target in a data block).

use crate::disk::features::RoCompat;
use crate::disk::inode::{FL_EA_INODE, FL_ENCRYPT, FL_INLINE_DATA, Inode};
use crate::error::{Error, Location, Result};
use crate::fs::Ext4;

/// Capacity of `i_block`; fast symlink targets are shorter than this
/// (the NUL terminator must fit).
const I_BLOCK_LEN: u64 = 60;

impl Ext4 {
    /// The target of a symbolic link (fast, slow or inline).
    pub fn read_link(&self, inode: &Inode) -> Result<Vec<u8>> {
        let ino = inode.ino;
        if !inode.is_symlink() {
            return Err(Error::NotASymlink(ino));
        }
        if inode.has_flag(FL_ENCRYPT) {
            return Err(Error::Unsupported(format!("encrypted symlink (inode {ino})")));
        }
        let corrupt = |reason: String| Error::corrupt("symlink", Location::Inode(ino), reason);
        let size = inode.size();
        if size == 0 {
            return Err(corrupt("empty target".into()));
        }
        let target = if inode.has_flag(FL_INLINE_DATA) {
            let mut data = self.inline_data(inode)?;
            if size > data.len() as u64 {
                return Err(corrupt(format!("i_size {size} exceeds the inline data ({} bytes)", data.len())));
            }
            data.truncate(size as usize);
            data
        } else if self.is_fast_symlink(inode) {
            if size >= I_BLOCK_LEN {
                return Err(corrupt(format!("fast symlink i_size {size} does not fit in i_block")));
            }
            let b = inode.i_block();
            if b[size as usize] != 0 {
                return Err(corrupt("fast symlink target is not NUL-terminated".into()));
            }
            b[..size as usize].to_vec()
        } else {
            if size >= self.geo.block_size as u64 {
                return Err(corrupt(format!("slow symlink i_size {size} is not below the block size")));
            }
            self.read_slow_link(inode, size as usize)?
        };
        if target.contains(&0) {
            return Err(corrupt("target contains NUL".into()));
        }
        Ok(target)
    }

    /// Like the kernel's `ext4_inode_is_fast_symlink`: no inline data and no
    /// allocated blocks besides the xattr block (an ea_inode-flagged inode
    /// has no blocks counted, so only its size decides).
    fn is_fast_symlink(&self, inode: &Inode) -> bool {
        if inode.has_flag(FL_EA_INODE) {
            return inode.size() < I_BLOCK_LEN;
        }
        let ea_sectors = if inode.file_acl() != 0 { self.cluster_bytes() >> 9 } else { 0 };
        let huge = self.sb.ro_compat().has(RoCompat::HUGE_FILE);
        !inode.has_flag(FL_INLINE_DATA) && inode.blocks_512(huge, self.geo.block_size) == ea_sectors
    }

    /// Allocation unit in bytes: the cluster with bigalloc, else the block.
    fn cluster_bytes(&self) -> u64 {
        if self.sb.ro_compat().has(RoCompat::BIGALLOC) {
            1024u64.checked_shl(self.sb.log_cluster_size).unwrap_or(self.geo.block_size as u64)
        } else {
            self.geo.block_size as u64
        }
    }

    /// Reads the `size` bytes of a slow symlink's target from its data.
    fn read_slow_link(&self, inode: &Inode, size: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; size];
        let mut done = 0;
        while done < size {
            let n = self.read(inode, done as u64, &mut buf[done..])?;
            if n == 0 {
                return Err(Error::corrupt(
                    "symlink",
                    Location::Inode(inode.ino),
                    format!("target data ends at {done} of {size} bytes"),
                ));
            }
            done += n;
        }
        Ok(buf)
    }
}
