//! Inline data: small files, directories and symlinks stored inside the
//! inode, in the 60 bytes of `i_block` followed by the value of the
//! `system.data` xattr.

use super::Ext4;
use crate::disk::inode::{FL_INLINE_DATA, Inode};
use crate::disk::xattr::INDEX_SYSTEM;
use crate::error::{Error, Result};

/// Name suffix of the `system.data` xattr that continues the inline data.
const INLINE_DATA_XATTR: &[u8] = b"data";

impl Ext4 {
    /// The whole inline contents: the 60 bytes of `i_block` followed by the
    /// value of the `system.data` xattr. Callers clamp to `i_size`.
    pub fn inline_data(&self, inode: &Inode) -> Result<Vec<u8>> {
        if !inode.has_flag(FL_INLINE_DATA) {
            return Err(Error::InvalidArgument(format!("inode {} has no inline data", inode.ino)));
        }
        let mut data = inode.i_block().to_vec();
        if let Some(rest) = self.find_raw_xattr(inode, INDEX_SYSTEM, INLINE_DATA_XATTR)? {
            data.extend_from_slice(&rest);
        }
        Ok(data)
    }
}
