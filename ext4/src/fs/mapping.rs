//! INTERFACE STUB (owner: helper "file data"). Logical-to-physical block
//! mapping of files: extent trees and ext2/3 block maps.

use super::Ext4;
use crate::disk::inode::Inode;
use crate::error::Result;

/// The mapping of a run of logical blocks starting at a given block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// `len` logical blocks with no physical block (read as zeros).
    Hole {
        /// Length of the hole in blocks (up to the next mapped block or a cap).
        len: u64,
    },
    /// `len` logical blocks backed by physical blocks `pblk..pblk+len`.
    Mapped {
        /// First physical block.
        pblk: u64,
        /// Length in blocks.
        len: u64,
        /// Allocated but not yet written (reads as zeros).
        unwritten: bool,
    },
}

/// One physically contiguous extent of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileExtent {
    /// First logical block.
    pub lblk: u64,
    /// First physical block.
    pub pblk: u64,
    /// Length in blocks.
    pub len: u64,
    /// Unwritten (preallocated) extent.
    pub unwritten: bool,
}

impl Ext4 {
    /// Maps logical block `lblk` of `inode`.
    pub fn map_block(&self, inode: &Inode, lblk: u64) -> Result<Mapping> {
        let _ = (inode, lblk);
        todo!("file data helper")
    }

    /// Every mapped extent of the file, in logical order.
    pub fn file_extents(&self, inode: &Inode) -> Result<Vec<FileExtent>> {
        let _ = inode;
        todo!("file data helper")
    }
}
