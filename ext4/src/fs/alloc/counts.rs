//! The file system's free totals. The group descriptors' counts are the one
//! source of truth: like the kernel, which sums them into its counters at
//! mount and never trusts the superblock's totals, every total here is
//! their sum. The superblock's copies (`s_free_blocks_count`,
//! `s_free_inodes_count`) follow every allocation in the same handle, are
//! set to the sums when a writable open finds them stale (an image copied
//! while the kernel had it mounted, say), and again at a clean close.

use super::set_sb_free_blocks;
use crate::disk::features::{Compat, Incompat};
use crate::error::Result;
use crate::fs::Ext4;
use crate::journal::transaction::Handle;

/// Free blocks and inodes, summed over the group descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeTotals {
    /// Free blocks.
    pub blocks: u64,
    /// Free inodes.
    pub inodes: u64,
}

impl Ext4 {
    /// The free totals as readers see them now (published changes).
    pub fn free_totals(&self) -> Result<FreeTotals> {
        self.sum_groups(|g| self.group_desc(g))
    }

    /// The free totals as handle `h` sees them.
    pub fn free_totals_in(&self, h: &Handle<'_>) -> Result<FreeTotals> {
        self.sum_groups(|g| self.group_desc_in(h, g))
    }

    fn sum_groups(&self, desc: impl Fn(u32) -> Result<crate::disk::group_desc::GroupDesc>) -> Result<FreeTotals> {
        let mut t = FreeTotals { blocks: 0, inodes: 0 };
        for g in 0..self.geometry().group_count {
            let gd = desc(g)?;
            t.blocks += gd.free_blocks_count() as u64;
            t.inodes += gd.free_inodes_count() as u64;
        }
        // A damaged descriptor cannot make the totals exceed the file
        // system (the kernel's counters are clamped the same way on use).
        let sb = self.superblock();
        t.blocks = t.blocks.min(sb.blocks_count());
        t.inodes = t.inodes.min(sb.inodes_count as u64);
        Ok(t)
    }

    /// Blocks kept free for extent splits, as the kernel's
    /// `ext4_calculate_resv_clusters`: 2% of the file system or 4096 blocks,
    /// whichever is smaller, and none without the extents feature (block
    /// maps never need a block to unmap). Ordinary allocations leave them
    /// alone ([`super::AllocPool`]) and `statfs` does not count them available.
    pub fn split_reserve(&self) -> u64 {
        let sb = self.superblock();
        if !sb.incompat().has(Incompat::EXTENTS) {
            return 0;
        }
        (sb.blocks_count() / 50).min(4096)
    }

    /// Blocks holding file-system metadata, which `statfs` leaves out of
    /// the total as the kernel's `ext4_calculate_overhead` does (and `df`
    /// shows): the blocks before the first group; each group's superblock
    /// copy, descriptor and reserved GDT blocks, two bitmaps and inode
    /// table; and an internal journal. Computed from the geometry each time
    /// (no I/O but the journal inode), like the kernel without bigalloc.
    pub fn overhead_blocks(&self) -> Result<u64> {
        let geo = self.geometry();
        let sb = self.superblock();
        let tables = self.itable_blocks() + 2;
        let mut n = geo.first_data_block as u64;
        for g in 0..geo.group_count {
            n += self.base_meta_ranges(g).iter().map(|r| r.1).sum::<u64>() + tables;
        }
        if sb.compat().has(Compat::HAS_JOURNAL) && sb.journal_inum != 0 {
            n += self.read_inode(sb.journal_inum)?.size() / geo.block_size as u64;
        }
        Ok(n.min(sb.blocks_count()))
    }

    /// Sets the superblock's free counts to the descriptor sums when they
    /// differ, in one handle of its own; returns whether they did. Nothing
    /// is logged when they agree (the usual case: allocations keep them
    /// equal).
    pub fn reconcile_free_counts(&self) -> Result<bool> {
        let mut h = self.begin()?;
        let t = self.free_totals_in(&h)?;
        let sb = self.superblock_in(&h)?;
        if sb.free_blocks_count() == t.blocks && sb.free_inodes_count as u64 == t.inodes {
            return Ok(false);
        }
        self.update_superblock(&mut h, |sb| {
            set_sb_free_blocks(sb, t.blocks);
            sb.free_inodes_count = t.inodes as u32;
        })?;
        h.finish();
        Ok(true)
    }
}
