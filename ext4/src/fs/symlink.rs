//! INTERFACE STUB (owner: helper "xattrs"). Symbolic link targets.

use super::Ext4;
use crate::disk::inode::Inode;
use crate::error::Result;

impl Ext4 {
    /// The target of a symbolic link (fast, slow or inline).
    pub fn read_link(&self, inode: &Inode) -> Result<Vec<u8>> {
        let _ = inode;
        todo!("xattr helper")
    }
}
