//! Reading block and inode bitmaps with their checksums verified.

use super::Ext4;
use crate::disk::group_desc::{BG_BLOCK_UNINIT, BG_INODE_UNINIT, bitmap_checksum};
use crate::error::{Error, Location, Result};
use std::sync::Arc;

impl Ext4 {
    /// The block bitmap of group `g`, or `None` for a BLOCK_UNINIT group
    /// (whose bitmap is computed, not stored).
    pub fn read_block_bitmap(&self, g: u32) -> Result<Option<Arc<[u8]>>> {
        let gd = self.group_desc(g)?;
        if self.has_uninit_groups() && gd.flags() & BG_BLOCK_UNINIT != 0 {
            return Ok(None);
        }
        let data = self.read_meta_block(gd.block_bitmap(), "block bitmap")?;
        if let Some(seed) = self.csum_seed {
            let len = (self.superblock().clusters_per_group / 8) as usize;
            let want = bitmap_checksum(seed, &data[..len.min(data.len())], gd.has_bitmap_csum_hi());
            if want != gd.block_bitmap_csum() {
                return Err(Error::Checksum { what: "block bitmap", location: Location::Group(g) });
            }
        }
        Ok(Some(data))
    }

    /// The inode bitmap of group `g`, or `None` for an INODE_UNINIT group.
    pub fn read_inode_bitmap(&self, g: u32) -> Result<Option<Arc<[u8]>>> {
        let gd = self.group_desc(g)?;
        if self.has_uninit_groups() && gd.flags() & BG_INODE_UNINIT != 0 {
            return Ok(None);
        }
        let data = self.read_meta_block(gd.inode_bitmap(), "inode bitmap")?;
        if let Some(seed) = self.csum_seed {
            let len = (self.geometry().inodes_per_group / 8) as usize;
            let want = bitmap_checksum(seed, &data[..len.min(data.len())], gd.has_bitmap_csum_hi());
            if want != gd.inode_bitmap_csum() {
                return Err(Error::Checksum { what: "inode bitmap", location: Location::Group(g) });
            }
        }
        Ok(Some(data))
    }

    /// Whether group descriptors may carry UNINIT flags (uninit_bg or metadata_csum).
    pub fn has_uninit_groups(&self) -> bool {
        self.csum_seed().is_some() || self.superblock().has_gdt_csum()
    }
}
