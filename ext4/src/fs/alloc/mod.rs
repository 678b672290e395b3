//! Block and inode allocation.
//!
//! Every change goes through a [`Handle`] and touches, together: the bitmap
//! block; the group descriptor (free counts, flags, bitmap checksum and its
//! own checksum) inside its group descriptor table block, which is the one
//! source of truth for descriptors; and the free counts of the superblock.
//! The write-back helpers for descriptors and the superblock live here, for
//! every module that changes them.
//!
//! Blocks freed by a transaction that is not durable yet and blocks reserved
//! in memory are never handed out (see
//! [`TxManager`](crate::journal::transaction::TxManager)).
//!
//! - `block`: finding, claiming and freeing blocks, with a reserve that
//!   only extent splits may take ([`AllocPool`], [`Ext4::split_reserve`]);
//! - `inode`: choosing a group (Orlov-like) and taking or freeing inodes;
//! - `uninit`: where group metadata lies, and the bitmaps of groups that
//!   mke2fs left uninitialised (`BLOCK_UNINIT`, `INODE_UNINIT`);
//! - `counts`: the free totals (sums of the descriptors) and the
//!   superblock's copy of them.

pub mod bitmap;
mod bits;
mod block;
pub use block::AllocPool;
pub mod counts;
mod inode;
mod uninit;

use crate::disk::group_desc::{GroupDesc, bitmap_checksum};
use crate::disk::superblock::{SUPERBLOCK_OFFSET, Superblock};
use crate::error::{Error, Location, Result};
use crate::fs::Ext4;
use crate::journal::transaction::Handle;

/// Setters for the descriptor counters that are split into low and high
/// halves on disk (the high halves are dropped by 32-byte descriptors).
trait GroupDescSet {
    fn set_free_blocks(&mut self, v: u32);
    fn set_free_inodes(&mut self, v: u32);
    fn set_used_dirs(&mut self, v: u32);
    fn set_itable_unused(&mut self, v: u32);
    fn set_block_bitmap_csum(&mut self, v: u32);
    fn set_inode_bitmap_csum(&mut self, v: u32);
}

impl GroupDescSet for GroupDesc {
    fn set_free_blocks(&mut self, v: u32) {
        (self.raw.free_blocks_count_lo, self.raw.free_blocks_count_hi) = (v as u16, (v >> 16) as u16);
    }
    fn set_free_inodes(&mut self, v: u32) {
        (self.raw.free_inodes_count_lo, self.raw.free_inodes_count_hi) = (v as u16, (v >> 16) as u16);
    }
    fn set_used_dirs(&mut self, v: u32) {
        (self.raw.used_dirs_count_lo, self.raw.used_dirs_count_hi) = (v as u16, (v >> 16) as u16);
    }
    fn set_itable_unused(&mut self, v: u32) {
        (self.raw.itable_unused_lo, self.raw.itable_unused_hi) = (v as u16, (v >> 16) as u16);
    }
    fn set_block_bitmap_csum(&mut self, v: u32) {
        self.raw.block_bitmap_csum_lo = v as u16;
        if self.has_bitmap_csum_hi() {
            self.raw.block_bitmap_csum_hi = (v >> 16) as u16;
        }
    }
    fn set_inode_bitmap_csum(&mut self, v: u32) {
        self.raw.inode_bitmap_csum_lo = v as u16;
        if self.has_bitmap_csum_hi() {
            self.raw.inode_bitmap_csum_hi = (v >> 16) as u16;
        }
    }
}

/// Sets the superblock's free block count (both halves with 64bit).
fn set_sb_free_blocks(sb: &mut Superblock, v: u64) {
    sb.free_blocks_count_lo = v as u32;
    if sb.is_64bit() {
        sb.free_blocks_hi = (v >> 32) as u32;
    }
}

/// Which bitmap of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BitmapKind {
    Block,
    Inode,
}

impl Ext4 {
    /// Block holding the primary superblock and the superblock's offset in it.
    fn superblock_location(&self) -> (u64, usize) {
        let bs = self.block_size() as u64;
        (SUPERBLOCK_OFFSET / bs, (SUPERBLOCK_OFFSET % bs) as usize)
    }

    fn decode_superblock(&self, block: &[u8], off: usize) -> Result<Superblock> {
        let raw = block
            .get(off..off + Superblock::SIZE)
            .ok_or(Error::OutOfBounds { what: "superblock", location: Location::Superblock })?;
        Ok(Superblock::decode(raw))
    }

    /// The superblock as handle `h` sees it: with the free counts of every
    /// change published or staged so far (unlike [`Ext4::superblock`],
    /// which is the copy loaded at open).
    pub fn superblock_in(&self, h: &Handle<'_>) -> Result<Superblock> {
        let (blk, off) = self.superblock_location();
        self.decode_superblock(&self.meta_block_in(h, blk, "superblock")?, off)
    }

    /// The superblock as readers see it now (published changes included).
    pub fn current_superblock(&self) -> Result<Superblock> {
        let (blk, off) = self.superblock_location();
        self.decode_superblock(&self.read_meta_block(blk, "superblock")?, off)
    }

    /// Applies `f` to the superblock as `h` sees it and stages the result,
    /// with a fresh checksum, into the block that holds it.
    pub fn update_superblock(&self, h: &mut Handle<'_>, f: impl FnOnce(&mut Superblock)) -> Result<()> {
        let (blk, off) = self.superblock_location();
        let mut data = self.meta_block_in(h, blk, "superblock")?.to_vec();
        let mut sb = self.decode_superblock(&data, off)?;
        f(&mut sb);
        sb.encode_with_checksum(&mut data[off..off + Superblock::SIZE]);
        h.write(blk, data);
        Ok(())
    }

    /// Table block, byte offset and size of group `g`'s descriptor.
    fn desc_location(&self, g: u32) -> Result<(u64, usize, usize)> {
        let geo = self.geometry();
        if g >= geo.group_count {
            return Err(Error::InvalidArgument(format!("group {g} out of range")));
        }
        let ds = geo.desc_size as usize;
        let per_block = geo.descs_per_block();
        Ok((geo.descriptor_block(g / per_block), (g % per_block) as usize * ds, ds))
    }

    /// The checksum group `g`'s raw descriptor bytes must carry: crc32c with
    /// metadata_csum, crc16 with uninit_bg (gdt_csum), none otherwise.
    fn desc_checksum(&self, g: u32, raw: &[u8]) -> Option<u16> {
        let sb = self.superblock();
        if let Some(seed) = self.csum_seed() {
            Some(GroupDesc::checksum_crc32c(seed, g, raw))
        } else if sb.has_gdt_csum() {
            Some(GroupDesc::checksum_crc16(&sb.uuid, g, raw, sb.is_64bit()))
        } else {
            None
        }
    }

    /// The descriptor of group `g` as handle `h` sees it, checksum verified.
    pub fn group_desc_in(&self, h: &Handle<'_>, g: u32) -> Result<GroupDesc> {
        let (blk, off, ds) = self.desc_location(g)?;
        let data = self.meta_block_in(h, blk, "group descriptor table")?;
        let raw = data
            .get(off..off + ds)
            .ok_or(Error::OutOfBounds { what: "group descriptor", location: Location::Group(g) })?;
        let gd = GroupDesc::decode(raw, ds);
        if self.desc_checksum(g, raw).is_some_and(|c| c != gd.raw.checksum) {
            return Err(Error::Checksum { what: "group descriptor", location: Location::Group(g) });
        }
        Ok(gd)
    }

    /// Stages `gd` as the descriptor of group `g`, with a fresh checksum,
    /// into its group descriptor table block.
    pub fn write_group_desc(&self, h: &mut Handle<'_>, g: u32, gd: &GroupDesc) -> Result<()> {
        let (blk, off, ds) = self.desc_location(g)?;
        let mut data = self.meta_block_in(h, blk, "group descriptor table")?.to_vec();
        let mut gd = GroupDesc { size: ds, ..*gd };
        let raw = data
            .get_mut(off..off + ds)
            .ok_or(Error::OutOfBounds { what: "group descriptor", location: Location::Group(g) })?;
        gd.encode(raw);
        if let Some(c) = self.desc_checksum(g, raw) {
            gd.raw.checksum = c;
            gd.encode(raw);
        }
        h.write(blk, data);
        Ok(())
    }

    /// Whether `flag` (`BG_*_UNINIT`) is set on `gd` and meaningful here.
    fn uninit(&self, gd: &GroupDesc, flag: u16) -> bool {
        self.has_uninit_groups() && gd.flags() & flag != 0
    }

    /// Bytes of a bitmap covered by its checksum.
    fn bitmap_csum_len(&self, kind: BitmapKind) -> usize {
        let bits = match kind {
            BitmapKind::Block => self.superblock().clusters_per_group,
            BitmapKind::Inode => self.geometry().inodes_per_group,
        };
        (bits / 8) as usize
    }

    /// The stored bitmap of group `g` as handle `h` sees it, with its
    /// checksum verified against the descriptor `gd`.
    fn stored_bitmap(&self, h: &Handle<'_>, g: u32, gd: &GroupDesc, kind: BitmapKind) -> Result<Vec<u8>> {
        let (blk, what, stored) = match kind {
            BitmapKind::Block => (gd.block_bitmap(), "block bitmap", gd.block_bitmap_csum()),
            BitmapKind::Inode => (gd.inode_bitmap(), "inode bitmap", gd.inode_bitmap_csum()),
        };
        let data = self.meta_block_in(h, blk, what)?;
        if let Some(seed) = self.csum_seed() {
            let len = self.bitmap_csum_len(kind).min(data.len());
            if bitmap_checksum(seed, &data[..len], gd.has_bitmap_csum_hi()) != stored {
                return Err(Error::Checksum { what, location: Location::Group(g) });
            }
        }
        Ok(data.to_vec())
    }

    /// Stages `bitmap` as group `gd`'s bitmap of `kind` and records its
    /// checksum in `gd` (which the caller then writes back).
    fn put_bitmap(&self, h: &mut Handle<'_>, gd: &mut GroupDesc, kind: BitmapKind, bitmap: Vec<u8>) {
        if let Some(seed) = self.csum_seed() {
            let len = self.bitmap_csum_len(kind).min(bitmap.len());
            let c = bitmap_checksum(seed, &bitmap[..len], gd.has_bitmap_csum_hi());
            match kind {
                BitmapKind::Block => gd.set_block_bitmap_csum(c),
                BitmapKind::Inode => gd.set_inode_bitmap_csum(c),
            }
        }
        let blk = match kind {
            BitmapKind::Block => gd.block_bitmap(),
            BitmapKind::Inode => gd.inode_bitmap(),
        };
        h.write(blk, bitmap);
    }
}
