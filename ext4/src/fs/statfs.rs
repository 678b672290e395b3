//! File system statistics (statfs): sizes from the superblock, free counts
//! summed over the group descriptors (see [`crate::fs::alloc::counts`]).

use super::Ext4;

/// What `statfs` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    /// Block size.
    pub block_size: u32,
    /// Total blocks less the metadata overhead ([`Ext4::overhead_blocks`]),
    /// as the kernel's ext4 reports them.
    pub blocks: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Free blocks available to unprivileged users: the free blocks less
    /// the root reserve (`s_r_blocks_count`) and the split reserve
    /// ([`Ext4::split_reserve`]).
    pub avail_blocks: u64,
    /// Total inodes.
    pub inodes: u64,
    /// Free inodes.
    pub free_inodes: u64,
    /// Longest file name.
    pub name_max: u32,
}

impl Ext4 {
    /// Current statistics (the free counts as the latest changes left them,
    /// whatever totals the superblock on disk records).
    pub fn statfs(&self) -> crate::error::Result<StatFs> {
        let sb = self.current_superblock()?;
        let totals = self.free_totals()?;
        let free = totals.blocks;
        Ok(StatFs {
            block_size: self.block_size(),
            blocks: sb.blocks_count() - self.overhead_blocks()?,
            free_blocks: free,
            // As ext4_statfs: neither the root reserve nor the split reserve is available.
            avail_blocks: free.saturating_sub(sb.r_blocks_count() + self.split_reserve()),
            inodes: sb.inodes_count as u64,
            free_inodes: totals.inodes,
            name_max: 255,
        })
    }
}
