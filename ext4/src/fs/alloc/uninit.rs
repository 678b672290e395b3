//! Where a group's metadata lies, and the bitmaps that groups flagged
//! `BLOCK_UNINIT` / `INODE_UNINIT` have implicitly (mke2fs does not write
//! them; they are computed when the group is first allocated from).

use super::bits::set_bits;
use crate::disk::features::Incompat;
use crate::disk::group_desc::GroupDesc;
use crate::error::Result;
use crate::fs::Ext4;
use crate::journal::transaction::Handle;

impl Ext4 {
    /// Blocks of one group's inode table.
    pub(super) fn itable_blocks(&self) -> u64 {
        let geo = self.geometry();
        (geo.inodes_per_group as u64 * geo.inode_size as u64).div_ceil(geo.block_size as u64)
    }

    /// The superblock copy and group descriptor blocks (with the reserved
    /// GDT blocks) that group `g` holds, as `(start, len)` ranges: the
    /// layout `mke2fs` and e2fsck agree on (classic table after a superblock
    /// copy, or one meta_bg descriptor block in the first, second and last
    /// group of each meta group).
    pub(super) fn base_meta_ranges(&self, g: u32) -> Vec<(u64, u64)> {
        let geo = self.geometry();
        let sb = self.superblock();
        let first = geo.group_first_block(g);
        let has_super = geo.has_super(g);
        let mut v = Vec::with_capacity(2);
        if has_super {
            v.push((first, 1));
        }
        let meta_bg = sb.incompat().has(Incompat::META_BG);
        let per_block = geo.descs_per_block();
        if !meta_bg || g / per_block < sb.first_meta_bg {
            if has_super {
                let table = if meta_bg {
                    sb.first_meta_bg as u64
                } else {
                    geo.gdt_blocks() as u64 + sb.reserved_gdt_blocks as u64
                };
                v.push((first + 1, table));
            }
        } else {
            let i = g % per_block;
            if i == 0 || i == 1 || i == per_block - 1 {
                v.push((first + has_super as u64, 1));
            }
        }
        v
    }

    /// Group `gd`'s own bitmaps and inode table, as `(start, len)` ranges
    /// (with flex_bg they usually lie in another group).
    pub(super) fn group_tables(&self, gd: &GroupDesc) -> [(u64, u64); 3] {
        [(gd.block_bitmap(), 1), (gd.inode_bitmap(), 1), (gd.inode_table(), self.itable_blocks())]
    }

    /// Metadata that may lie in group `g`, found without scanning every
    /// group: its superblock copy and descriptor blocks, its own tables, and
    /// with flex_bg the tables of the groups of its flex group (which
    /// mke2fs packs into the flex group's first group). Masked off in every
    /// search and refused by claim and free, so that even a damaged bitmap
    /// never hands them out or releases them.
    pub(super) fn meta_ranges(&self, h: &Handle<'_>, g: u32, gd: &GroupDesc) -> Result<Vec<(u64, u64)>> {
        let mut v = self.base_meta_ranges(g);
        v.extend(self.group_tables(gd));
        if self.superblock().incompat().has(Incompat::FLEX_BG) {
            let n = self.geometry().group_count as u64;
            let flex = self.superblock().groups_per_flex() as u64;
            let start = g as u64 & !(flex - 1);
            for j in start..(start + flex).min(n) {
                if j != g as u64 {
                    v.extend(self.group_tables(&self.group_desc_in(h, j as u32)?));
                }
            }
        }
        Ok(v)
    }

    /// Sets, in `bitmap` of group `g`, the bits of blocks `start..start+len`
    /// that lie inside the group.
    fn mark_in_group(&self, bitmap: &mut [u8], g: u32, start: u64, len: u64) {
        let geo = self.geometry();
        let first = geo.group_first_block(g);
        let end = first + geo.blocks_in_group(g) as u64;
        let (s, e) = (start.max(first), start.saturating_add(len).min(end));
        if s < e {
            set_bits(bitmap, (s - first) as u32, (e - first) as u32);
        }
    }

    /// The block bitmap a `BLOCK_UNINIT` group has implicitly: its superblock
    /// copy and descriptor blocks, the bitmaps and inode tables of every
    /// group that lie inside it (flex_bg packs other groups' tables into one
    /// group), and the padding bits past the group's last block.
    ///
    /// Reads every group descriptor with flex_bg (bounded by the group
    /// count); only the group's own otherwise, since without flex_bg mke2fs
    /// keeps each group's tables inside it.
    pub(super) fn uninit_block_bitmap(&self, h: &Handle<'_>, g: u32) -> Result<Vec<u8>> {
        let geo = self.geometry();
        let bs = geo.block_size as usize;
        let mut bitmap = vec![0u8; bs];
        for (s, l) in self.base_meta_ranges(g) {
            self.mark_in_group(&mut bitmap, g, s, l);
        }
        let others = if self.superblock().incompat().has(Incompat::FLEX_BG) { 0..geo.group_count } else { g..g + 1 };
        for j in others {
            let gd = self.group_desc_in(h, j)?;
            for (s, l) in self.group_tables(&gd) {
                self.mark_in_group(&mut bitmap, g, s, l);
            }
        }
        set_bits(&mut bitmap, geo.blocks_in_group(g), bs as u32 * 8);
        Ok(bitmap)
    }

    /// The inode bitmap an `INODE_UNINIT` group has implicitly: no inode in
    /// use, and the padding bits past `inodes_per_group` set (as the kernel
    /// initialises it).
    pub(super) fn uninit_inode_bitmap(&self) -> Vec<u8> {
        let geo = self.geometry();
        let mut bitmap = vec![0u8; geo.block_size as usize];
        set_bits(&mut bitmap, geo.inodes_per_group, geo.block_size * 8);
        bitmap
    }
}
