//! What the mapping-update code ([`crate::fs::map::extent_tree`],
//! [`crate::fs::map::block_map`]) needs from the layers above it: a place to
//! read and write metadata blocks and to get and release tree blocks
//! ([`MapStore`], implemented on journal handles), the facts about the inode
//! and the file system it works on ([`MapContext`]), and what it reports
//! back for `i_blocks` accounting ([`MapChange`]).
//!
//! Splitting "allocate blocks" from "record where they are" (the kernel's
//! `ext4_map_blocks()` does both) lets a caller allocate and fill data
//! blocks first and then, in one short transaction, only update the map.

use crate::disk::inode::Inode;
use crate::error::{Error, Location, Result};
use crate::fs::Ext4;

/// Where mapping updates read and write metadata blocks and get/free tree blocks.
pub trait MapStore {
    /// Current contents of metadata block `blk` (latest version, including uncommitted changes).
    fn read(&mut self, blk: u64) -> Result<Vec<u8>>;
    /// New contents for metadata block `blk` (journaled by the implementation).
    fn write(&mut self, blk: u64, data: Vec<u8>) -> Result<()>;
    /// Allocates one block for a tree/indirect node near `goal` (must be zero-filled by the caller before use: you write it fully).
    fn alloc_meta(&mut self, goal: u64) -> Result<u64>;
    /// Frees a tree/indirect node block.
    fn free_meta(&mut self, blk: u64) -> Result<()>;
    /// Frees data blocks `pblk..pblk+len` (used by range removal).
    fn free_data(&mut self, pblk: u64, len: u64) -> Result<()>;
}

/// The inode and file-system facts a mapping update needs: tree blocks
/// carry checksums seeded with the inode's number and generation, and
/// every block number read from the image is checked against the file
/// system before it is followed or freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapContext {
    /// Inode number.
    pub ino: u32,
    /// The inode's `i_generation` (part of the extent block checksum).
    pub generation: u32,
    /// The metadata_csum seed; `None` writes no tree block checksums.
    pub csum_seed: Option<u32>,
    /// File-system block size in bytes.
    pub block_size: u32,
    /// First block that may belong to a file (`s_first_data_block`).
    pub first_data_block: u32,
    /// Blocks in the file system: every block number lies below it.
    pub blocks_count: u64,
}

impl MapContext {
    /// The context for updating `inode`'s map on `fs`.
    pub fn new(fs: &Ext4, inode: &Inode) -> MapContext {
        let geo = fs.geometry();
        MapContext {
            ino: inode.ino,
            generation: inode.generation(),
            csum_seed: fs.csum_seed(),
            block_size: geo.block_size,
            first_data_block: geo.first_data_block,
            blocks_count: geo.blocks_count,
        }
    }

    /// Whether blocks `pblk..pblk+len` all lie inside the file system.
    pub fn run_in_range(&self, pblk: u64, len: u64) -> bool {
        pblk >= self.first_data_block.max(1) as u64 && pblk.checked_add(len).is_some_and(|end| end <= self.blocks_count)
    }

    /// Checks a block number read from `what` at `loc` before following or freeing it.
    pub(crate) fn check_block(&self, blk: u64, what: &'static str, loc: Location) -> Result<u64> {
        if !self.run_in_range(blk, 1) {
            return Err(Error::corrupt(
                what,
                loc,
                format!("inode {}: block {blk} lies outside the file system", self.ino),
            ));
        }
        Ok(blk)
    }

    /// Reads metadata block `blk`, checking that the store returned one whole block.
    pub(crate) fn read_block<S: MapStore + ?Sized>(&self, store: &mut S, blk: u64) -> Result<Vec<u8>> {
        let data = store.read(blk)?;
        if data.len() != self.block_size as usize {
            return Err(Error::InvalidArgument(format!(
                "map store returned {} bytes for block {blk}, not one {}-byte block",
                data.len(),
                self.block_size
            )));
        }
        Ok(data)
    }
}

/// Tree, indirect and data blocks a mapping update allocated or released,
/// for the caller's `i_blocks` accounting. Data blocks the caller mapped
/// (allocated separately) are not counted here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapChange {
    /// Tree or indirect blocks allocated through [`MapStore::alloc_meta`].
    pub meta_allocated: u64,
    /// Tree or indirect blocks released through [`MapStore::free_meta`].
    pub meta_freed: u64,
    /// Data blocks released through [`MapStore::free_data`].
    pub data_freed: u64,
}

impl MapChange {
    /// Net change, in file-system blocks, of the blocks the inode owns
    /// (`i_blocks` counts them in 512-byte units or blocks under huge_file).
    pub fn blocks_delta(&self) -> i64 {
        self.meta_allocated as i64 - self.meta_freed as i64 - self.data_freed as i64
    }
}
