//! Inode allocation: choosing a group (Orlov-like spreading for top-level
//! directories, near the parent otherwise), taking its first free inode,
//! and freeing inodes.

use super::bits::{clear_bits, count_clear, find_bit, set_bits, test_bit};
use super::{BitmapKind, GroupDescSet, set_sb_free_blocks};
use crate::disk::group_desc::{BG_BLOCK_UNINIT, BG_INODE_UNINIT, BG_INODE_ZEROED, GroupDesc};
use crate::disk::inode::ROOT_INO;
use crate::error::{Error, Location, Result};
use crate::fs::Ext4;
use crate::journal::transaction::Handle;

/// Counters of a group or flex group that the group choice weighs.
#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    free_inodes: u64,
    free_blocks: u64,
    dirs: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.free_inodes += o.free_inodes;
        self.free_blocks += o.free_blocks;
        self.dirs += o.dirs;
    }
}

impl From<&GroupDesc> for Stats {
    fn from(gd: &GroupDesc) -> Stats {
        Stats {
            free_inodes: gd.free_inodes_count() as u64,
            free_blocks: gd.free_blocks_count() as u64,
            dirs: gd.used_dirs_count() as u64,
        }
    }
}

impl Ext4 {
    /// Allocates an inode for a new file (`is_dir`: a directory) whose
    /// parent directory is `parent`, marking it in use through `h`. Never
    /// returns a reserved inode (below `s_first_ino`). The inode record is
    /// the caller's to write; a record beyond the group's used part of a
    /// never-zeroed inode table is zeroed here, so stale bytes never show.
    /// [`Error::NoInodes`] when every inode is taken.
    pub fn alloc_inode(&self, h: &mut Handle<'_>, parent: u32, is_dir: bool) -> Result<u32> {
        if parent == 0 || parent > self.superblock().inodes_count {
            return Err(Error::InvalidArgument(format!("parent inode {parent} out of range")));
        }
        let n = self.geometry().group_count as u64;
        let start = self.choose_inode_group(h, parent, is_dir)? as u64;
        // The chosen group first, then every other one: descriptor counts
        // can disagree with the bitmaps of a damaged image.
        for i in 0..n {
            if let Some(ino) = self.take_inode_in(h, ((start + i) % n) as u32, is_dir)? {
                self.atimes.forget(ino);
                return Ok(ino);
            }
        }
        Err(Error::NoInodes)
    }

    /// Whether inode `ino` is marked in use, as `h` sees the bitmaps.
    pub fn inode_in_use(&self, h: &Handle<'_>, ino: u32) -> Result<bool> {
        if ino == 0 || ino > self.superblock().inodes_count {
            return Err(Error::InvalidArgument(format!("inode number {ino} out of range")));
        }
        let (g, idx) = self.geometry().inode_location(ino);
        let gd = self.group_desc_in(h, g)?;
        if self.uninit(&gd, BG_INODE_UNINIT) {
            return Ok(false);
        }
        Ok(test_bit(&self.stored_bitmap(h, g, &gd, BitmapKind::Inode)?, idx))
    }

    /// Frees inode `ino` (`was_dir`: it was a directory) through `h`.
    /// Freeing an inode that is not in use is [`Error::Corrupt`].
    pub fn free_inode(&self, h: &mut Handle<'_>, ino: u32, was_dir: bool) -> Result<()> {
        let sb = self.superblock();
        if ino < sb.first_ino() || ino > sb.inodes_count {
            return Err(Error::InvalidArgument(format!("inode {ino} is reserved or out of range")));
        }
        let (g, idx) = self.geometry().inode_location(ino);
        let mut gd = self.group_desc_in(h, g)?;
        if self.uninit(&gd, BG_INODE_UNINIT) {
            return Err(Error::corrupt("inode", Location::Inode(ino), "freeing an inode of a group with none in use"));
        }
        let mut bitmap = self.stored_bitmap(h, g, &gd, BitmapKind::Inode)?;
        if !test_bit(&bitmap, idx) {
            return Err(Error::corrupt("inode bitmap", Location::Inode(ino), "inode freed twice"));
        }
        let free = gd.free_inodes_count().saturating_add(1);
        if free > self.geometry().inodes_per_group {
            return Err(Error::corrupt(
                "group descriptor",
                Location::Group(g),
                "free inode count above the group size",
            ));
        }
        if was_dir {
            let dirs = gd.used_dirs_count().checked_sub(1).ok_or_else(|| {
                Error::corrupt("group descriptor", Location::Group(g), "directory count already zero")
            })?;
            gd.set_used_dirs(dirs);
        }
        clear_bits(&mut bitmap, idx, idx + 1);
        gd.set_free_inodes(free);
        self.put_bitmap(h, &mut gd, BitmapKind::Inode, bitmap);
        self.write_group_desc(h, g, &gd)?;
        let count = sb.inodes_count;
        self.update_superblock(h, |sb| sb.free_inodes_count = sb.free_inodes_count.saturating_add(1).min(count))
    }

    /// Takes the first free inode of group `g`, or `None` if it has none.
    fn take_inode_in(&self, h: &mut Handle<'_>, g: u32, is_dir: bool) -> Result<Option<u32>> {
        let geo = self.geometry();
        let sb = self.superblock();
        let ipg = geo.inodes_per_group;
        let mut gd = self.group_desc_in(h, g)?;
        if gd.free_inodes_count() == 0 {
            return Ok(None);
        }
        let inode_uninit = self.uninit(&gd, BG_INODE_UNINIT);
        let mut bitmap =
            if inode_uninit { self.uninit_inode_bitmap() } else { self.stored_bitmap(h, g, &gd, BitmapKind::Inode)? };
        // Inode number of index i is base + i + 1. Reserved inodes and
        // numbers past s_inodes_count are never handed out.
        let base = g as u64 * ipg as u64;
        let lo = (sb.first_ino() as u64 - 1).saturating_sub(base).min(ipg as u64) as u32;
        let hi = (sb.inodes_count as u64).saturating_sub(base).min(ipg as u64) as u32;
        let Some(idx) = find_bit(&bitmap, lo, hi, false) else {
            return Ok(None);
        };
        set_bits(&mut bitmap, idx, idx + 1);
        gd.set_free_inodes(gd.free_inodes_count() - 1);
        if is_dir {
            let dirs = gd.used_dirs_count().saturating_add(1);
            if dirs > ipg {
                return Err(Error::corrupt(
                    "group descriptor",
                    Location::Group(g),
                    "directory count above the group size",
                ));
            }
            gd.set_used_dirs(dirs);
        }
        let mut block_delta: i128 = 0;
        if self.has_uninit_groups() {
            // Inodes past the used part of the table (ipg - itable_unused)
            // are not even read by e2fsck: move the watermark past this one.
            let used = if inode_uninit { 0 } else { ipg.saturating_sub(gd.itable_unused()) };
            if idx >= used {
                if gd.flags() & BG_INODE_ZEROED == 0 {
                    self.zero_inode_records(h, &gd, used, idx + 1)?;
                }
                gd.set_itable_unused(ipg - idx - 1);
            }
            gd.raw.flags &= !BG_INODE_UNINIT;
            // A group with inodes in use has an initialised block bitmap
            // (as both the kernel and e2fsprogs keep it).
            if gd.flags() & BG_BLOCK_UNINIT != 0 {
                let bb = self.uninit_block_bitmap(h, g)?;
                let free = count_clear(&bb, geo.blocks_in_group(g));
                block_delta = free as i128 - gd.free_blocks_count() as i128;
                gd.set_free_blocks(free);
                gd.raw.flags &= !BG_BLOCK_UNINIT;
                self.put_bitmap(h, &mut gd, BitmapKind::Block, bb);
            }
        }
        self.put_bitmap(h, &mut gd, BitmapKind::Inode, bitmap);
        self.write_group_desc(h, g, &gd)?;
        self.update_superblock(h, |sb| {
            sb.free_inodes_count = sb.free_inodes_count.saturating_sub(1);
            if block_delta != 0 {
                let v = (sb.free_blocks_count() as i128 + block_delta).clamp(0, u64::MAX as i128) as u64;
                set_sb_free_blocks(sb, v);
            }
        })?;
        Ok(Some((base + idx as u64 + 1) as u32))
    }

    /// Zeroes the inode records `from..to` of group `gd`'s inode table.
    fn zero_inode_records(&self, h: &mut Handle<'_>, gd: &GroupDesc, from: u32, to: u32) -> Result<()> {
        let isz = self.geometry().inode_size as u64;
        let bs = self.block_size() as u64;
        let (mut byte, end) = (from as u64 * isz, to as u64 * isz);
        while byte < end {
            let blk = gd.inode_table() + byte / bs;
            let off = (byte % bs) as usize;
            let n = (bs - off as u64).min(end - byte) as usize;
            let mut data = self.meta_block_in(h, blk, "inode table")?.to_vec();
            data[off..off + n].fill(0);
            h.write(blk, data);
            byte += n as u64;
        }
        Ok(())
    }

    /// The group to look in first for a new inode.
    fn choose_inode_group(&self, h: &Handle<'_>, parent: u32, is_dir: bool) -> Result<u32> {
        let geo = self.geometry();
        let n = geo.group_count;
        let parent_group = ((parent - 1) / geo.inodes_per_group).min(n - 1);
        if is_dir {
            return self.orlov(h, parent_group, parent == ROOT_INO);
        }
        let flex = self.superblock().groups_per_flex() as u64;
        if flex > 1 {
            // Files go to the parent's flex group, else to another flex
            // group chosen as for a subdirectory.
            let start = parent_group as u64 & !(flex - 1);
            for g in start..(start + flex).min(n as u64) {
                if self.group_desc_in(h, g as u32)?.free_inodes_count() > 0 {
                    return Ok(g as u32);
                }
            }
            let next = if start + flex >= n as u64 { 0 } else { (start + flex) as u32 };
            return self.orlov(h, next, false);
        }
        let usable = |gd: &GroupDesc| gd.free_inodes_count() > 0 && gd.free_blocks_count() > 0;
        if usable(&self.group_desc_in(h, parent_group)?) {
            return Ok(parent_group);
        }
        // Files of one directory land together, files of different
        // directories sharing a group spread apart: start from a hash of
        // the parent and probe quadratically.
        let n64 = n as u64;
        let mut g = (parent_group as u64 + parent as u64) % n64;
        let mut step = 1u64;
        while step < n64 {
            g = (g + step) % n64;
            if usable(&self.group_desc_in(h, g as u32)?) {
                return Ok(g as u32);
            }
            step <<= 1;
        }
        Ok(parent_group)
    }

    /// Orlov-like choice of a group for a directory. Top-level directories
    /// (`top`) spread out: the (flex) group with the fewest directories among
    /// those with at least average free inodes and blocks. Others stay near
    /// `parent_group` unless its (flex) group is crowded with directories or
    /// short of inodes or blocks.
    fn orlov(&self, h: &Handle<'_>, parent_group: u32, top: bool) -> Result<u32> {
        let geo = self.geometry();
        let n = geo.group_count as u64;
        let flex = (self.superblock().groups_per_flex() as u64).min(n);
        let nflex = n.div_ceil(flex);
        let mut groups = Vec::with_capacity(n as usize);
        for g in 0..n {
            groups.push(Stats::from(&self.group_desc_in(h, g as u32)?));
        }
        let mut flexes = vec![Stats::default(); nflex as usize];
        let mut total = Stats::default();
        for (g, s) in groups.iter().enumerate() {
            flexes[g / flex as usize].add(s);
            total.add(s);
        }
        let ave_inodes = total.free_inodes / nflex;
        let ave_blocks = total.free_blocks / nflex;
        let first_with_inodes = |f: u64| {
            (f * flex..((f + 1) * flex).min(n)).find(|&g| groups[g as usize].free_inodes > 0).map(|g| g as u32)
        };
        if top {
            let mut best: Option<(u64, u64)> = None;
            for (f, s) in flexes.iter().enumerate() {
                if s.free_inodes == 0 || s.free_inodes < ave_inodes || s.free_blocks < ave_blocks {
                    continue;
                }
                if best.is_none_or(|(_, dirs)| s.dirs < dirs) {
                    best = Some((f as u64, s.dirs));
                }
            }
            if let Some(g) = best.and_then(|(f, _)| first_with_inodes(f)) {
                return Ok(g);
            }
        } else {
            let flex_inodes = geo.inodes_per_group as u64 * flex;
            let max_dirs = total.dirs / nflex + flex_inodes / 16;
            let min_inodes = ave_inodes.saturating_sub(flex_inodes / 4).max(1);
            let min_blocks = ave_blocks.saturating_sub(geo.blocks_per_group as u64 * flex / 4);
            let pf = parent_group as u64 / flex;
            for i in 0..nflex {
                let f = (pf + i) % nflex;
                let s = &flexes[f as usize];
                if s.dirs >= max_dirs || s.free_inodes < min_inodes || s.free_blocks < min_blocks {
                    continue;
                }
                if let Some(g) = first_with_inodes(f) {
                    return Ok(g);
                }
            }
        }
        // Fallback: a group with at least average free inodes, else any.
        let ave_group = (total.free_inodes / n).max(1);
        for min in [ave_group, 1] {
            for i in 0..n {
                let g = (parent_group as u64 + i) % n;
                if groups[g as usize].free_inodes >= min {
                    return Ok(g as u32);
                }
            }
        }
        Ok(parent_group)
    }
}
