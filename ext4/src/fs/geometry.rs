//! Where things are: group boundaries, backup superblock placement
//! (sparse_super, sparse_super2) and group descriptor block locations
//! (classic and meta_bg).

use crate::disk::features::{Compat, Incompat, RoCompat};
use crate::disk::superblock::Superblock;

/// Layout facts derived from a validated superblock.
#[derive(Debug, Clone)]
pub struct Geometry {
    /// Block size in bytes.
    pub block_size: u32,
    /// Number of block groups.
    pub group_count: u32,
    /// Blocks per group.
    pub blocks_per_group: u32,
    /// Inodes per group.
    pub inodes_per_group: u32,
    /// On-disk inode record size.
    pub inode_size: u16,
    /// Group descriptor size.
    pub desc_size: u16,
    /// First data block (1 for 1 KiB blocks, else 0).
    pub first_data_block: u32,
    /// Total blocks.
    pub blocks_count: u64,
    sparse_super: bool,
    sparse_super2: Option<[u32; 2]>,
    meta_bg: Option<u32>,
}

impl Geometry {
    /// Derives the geometry of a superblock that passed [`Superblock::parse`].
    pub fn new(sb: &Superblock) -> Self {
        Geometry {
            block_size: sb.block_size(),
            group_count: sb.group_count(),
            blocks_per_group: sb.blocks_per_group,
            inodes_per_group: sb.inodes_per_group,
            inode_size: sb.inode_size(),
            desc_size: sb.desc_size(),
            first_data_block: sb.first_data_block,
            blocks_count: sb.blocks_count(),
            sparse_super: sb.ro_compat().has(RoCompat::SPARSE_SUPER),
            sparse_super2: sb.compat().has(Compat::SPARSE_SUPER2).then_some(sb.backup_bgs),
            meta_bg: sb.incompat().has(Incompat::META_BG).then_some(sb.first_meta_bg),
        }
    }

    /// Group descriptors per block.
    pub fn descs_per_block(&self) -> u32 {
        self.block_size / self.desc_size as u32
    }

    /// Number of blocks of the group descriptor table.
    pub fn gdt_blocks(&self) -> u32 {
        self.group_count.div_ceil(self.descs_per_block())
    }

    /// First block of group `g`.
    pub fn group_first_block(&self, g: u32) -> u64 {
        self.first_data_block as u64 + g as u64 * self.blocks_per_group as u64
    }

    /// Number of blocks in group `g` (the last group may be short).
    pub fn blocks_in_group(&self, g: u32) -> u32 {
        let start = self.group_first_block(g);
        (self.blocks_count - start).min(self.blocks_per_group as u64) as u32
    }

    /// Group holding physical block `blk`.
    pub fn group_of_block(&self, blk: u64) -> u32 {
        ((blk - self.first_data_block as u64) / self.blocks_per_group as u64) as u32
    }

    /// Whether group `g` holds a superblock (primary or backup).
    pub fn has_super(&self, g: u32) -> bool {
        if g == 0 {
            return true;
        }
        if let Some(b) = self.sparse_super2 {
            return g == b[0] || g == b[1];
        }
        if g <= 1 || !self.sparse_super {
            return true;
        }
        if g & 1 == 0 {
            return false;
        }
        is_power_of(g, 3) || is_power_of(g, 5) || is_power_of(g, 7)
    }

    /// Physical block of the `i`-th block of the primary group descriptor table.
    pub fn descriptor_block(&self, i: u32) -> u64 {
        let base = self.first_data_block as u64;
        match self.meta_bg {
            Some(first_meta) if i >= first_meta => {
                let bg = self.descs_per_block() * i;
                self.group_first_block(bg) + self.has_super(bg) as u64
            }
            _ => base + 1 + i as u64,
        }
    }

    /// Group and index within the group of inode `ino` (1-based).
    pub fn inode_location(&self, ino: u32) -> (u32, u32) {
        ((ino - 1) / self.inodes_per_group, (ino - 1) % self.inodes_per_group)
    }

    /// Whether `blk` is a valid block number of this file system.
    pub fn block_in_range(&self, blk: u64) -> bool {
        blk >= self.first_data_block as u64 && blk < self.blocks_count
    }
}

fn is_power_of(mut n: u32, base: u32) -> bool {
    while n % base == 0 {
        n /= base;
    }
    n == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_super_groups() {
        let sb = Superblock {
            blocks_count_lo: 8192 * 100,
            blocks_per_group: 8192,
            inodes_per_group: 8,
            inodes_count: 800,
            feature_ro_compat: RoCompat::SPARSE_SUPER,
            ..Default::default()
        };
        let g = Geometry::new(&sb);
        let with: Vec<u32> = (0..100).filter(|&i| g.has_super(i)).collect();
        assert_eq!(with, vec![0, 1, 3, 5, 7, 9, 25, 27, 49, 81]);
    }
}
