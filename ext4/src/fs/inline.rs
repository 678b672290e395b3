//! INTERFACE STUB (owner: helper "xattrs"). Inline data.

use super::Ext4;
use crate::disk::inode::Inode;
use crate::error::Result;

impl Ext4 {
    /// The whole inline contents: the 60 bytes of `i_block` followed by the
    /// value of the `system.data` xattr. Callers clamp to `i_size`.
    pub fn inline_data(&self, inode: &Inode) -> Result<Vec<u8>> {
        let _ = inode;
        todo!("xattr helper")
    }
}
