//! INTERFACE STUB (owner: helper "file data"). Reading file contents.

use super::Ext4;
use crate::disk::inode::Inode;
use crate::error::Result;

impl Ext4 {
    /// Reads up to `buf.len()` bytes at `offset`; returns the count (0 at EOF).
    pub fn read(&self, inode: &Inode, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let _ = (inode, offset, buf);
        todo!("file data helper")
    }
}
