//! INTERFACE STUB (owner: helper "directories"). Directory reading and lookup.

use super::Ext4;
use crate::disk::inode::Inode;
use crate::error::Result;

/// A directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number.
    pub ino: u32,
    /// Name bytes.
    pub name: Vec<u8>,
    /// File type code from the entry (`EXT4_FT_*`; 0 when unknown).
    pub file_type: u8,
}

impl Ext4 {
    /// Finds `name` in directory `dir`.
    pub fn lookup(&self, dir: &Inode, name: &[u8]) -> Result<Option<DirEntry>> {
        let _ = (dir, name);
        todo!("dir helper")
    }

    /// Calls `f(entry, next_offset)` for each entry from cookie `offset`
    /// (0 = start) until `f` returns false or the directory ends.
    pub fn read_dir(&self, dir: &Inode, offset: u64, f: &mut dyn FnMut(&DirEntry, u64) -> bool) -> Result<()> {
        let _ = (dir, offset, f);
        todo!("dir helper")
    }
}
