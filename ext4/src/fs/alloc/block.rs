//! Block allocation: finding free runs near a goal, claiming them in the
//! bitmaps, and freeing them.

use super::bits::{SearchMap, clear_bits, count_clear, find_bit, set_bits, test_bit};
use super::{BitmapKind, GroupDescSet, set_sb_free_blocks};
use crate::disk::group_desc::{BG_BLOCK_UNINIT, GroupDesc};
use crate::error::{Error, Location, Result};
use crate::fs::Ext4;
use crate::journal::transaction::Handle;

/// Flex groups at least this large keep their first group for directories
/// and put regular files' data from the second one on (as the kernel does).
const FLEX_SIZE_DIR_ALLOC_SCHEME: u32 = 4;

/// The first block of `ranges` (as `(start, len)`) inside `start..end`.
fn first_overlap(ranges: &[(u64, u64)], start: u64, end: u64) -> Option<u64> {
    ranges
        .iter()
        .filter_map(|&(s, l)| {
            let (a, b) = (s.max(start), s.saturating_add(l).min(end));
            (a < b).then_some(a)
        })
        .min()
}

/// Which free blocks an allocation may take. The kernel keeps
/// `s_resv_clusters` (see [`Ext4::split_reserve`]) away from ordinary
/// allocations, so that when a file system has been filled, unmapping
/// (punch hole, truncate, collapse-range) and converting unwritten blocks
/// can still split an extent and take the tree block that needs, instead
/// of failing with ENOSPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocPool {
    /// File data, directory and xattr blocks, and tree blocks for mapping
    /// new blocks: everything but the split reserve.
    Ordinary,
    /// Tree blocks needed to split extents while blocks are unmapped,
    /// shifted or converted (the kernel's `EXT4_MB_USE_RESERVED`): any free block.
    Reserve,
}

impl Ext4 {
    /// A block goal for the data of inode `ino`: the start of its group, or
    /// with flex groups of 4 or more, of its flex group's first group
    /// (directories and special files) or second group (regular files).
    pub fn data_goal(&self, ino: u32, regular: bool) -> u64 {
        let geo = self.geometry();
        let mut g = (ino.saturating_sub(1) / geo.inodes_per_group).min(geo.group_count - 1);
        let flex = self.superblock().groups_per_flex();
        if flex >= FLEX_SIZE_DIR_ALLOC_SCHEME {
            g &= !(flex - 1);
            if regular && g + 1 < geo.group_count {
                g += 1;
            }
        }
        geo.group_first_block(g)
    }

    /// Allocates up to `len` physically contiguous blocks near `goal` (0 or
    /// an invalid block: no preference) and marks them in use through `h`.
    /// Returns `(start, count)` with `1 <= count <= len`; see
    /// [`Ext4::find_free_blocks`] for the choice. [`Error::NoSpace`] when
    /// no block is free.
    pub fn alloc_blocks(&self, h: &mut Handle<'_>, goal: u64, len: u64) -> Result<(u64, u64)> {
        self.alloc_blocks_from(h, goal, len, AllocPool::Ordinary)
    }

    /// [`Ext4::alloc_blocks`] from `pool`.
    pub fn alloc_blocks_from(&self, h: &mut Handle<'_>, goal: u64, len: u64, pool: AllocPool) -> Result<(u64, u64)> {
        let (start, count) = self.find_free_blocks_from(h, goal, len, pool)?;
        self.claim_blocks(h, start, count)?;
        Ok((start, count))
    }

    /// Finds up to `len` contiguous free blocks without taking them. Prefers
    /// a run of the full length (at most one group's worth), searched from
    /// `goal` forward through the groups, wrapping; else the longest run of
    /// the goal's group; else the longest run of the first group with any.
    /// Skips blocks in use, group metadata, blocks freed by a transaction
    /// that is not durable yet, and reserved blocks.
    /// An ordinary allocation: it leaves [`Ext4::split_reserve`] blocks
    /// free (see [`AllocPool`]).
    pub fn find_free_blocks(&self, h: &Handle<'_>, goal: u64, len: u64) -> Result<(u64, u64)> {
        self.find_free_blocks_from(h, goal, len, AllocPool::Ordinary)
    }

    /// [`Ext4::find_free_blocks`] from `pool`: an ordinary allocation gets
    /// at most the free blocks beyond the split reserve (and the blocks
    /// reserved in memory by allocations in flight), and [`Error::NoSpace`]
    /// when there are none, as the kernel's `ext4_has_free_clusters`.
    pub fn find_free_blocks_from(&self, h: &Handle<'_>, goal: u64, len: u64, pool: AllocPool) -> Result<(u64, u64)> {
        if len == 0 {
            return Err(Error::InvalidArgument("allocation of zero blocks".into()));
        }
        let len = match pool {
            AllocPool::Reserve => len,
            AllocPool::Ordinary => {
                let free = self.superblock_in(h)?.free_blocks_count();
                let room = free.saturating_sub(self.tx()?.reserved_blocks()).saturating_sub(self.split_reserve());
                if room == 0 {
                    return Err(Error::NoSpace);
                }
                len.min(room)
            }
        };
        let geo = self.geometry();
        let n = geo.group_count;
        let want = len.min(geo.blocks_per_group as u64) as u32;
        let goal = if geo.block_in_range(goal) { goal } else { geo.first_data_block as u64 };
        let g0 = geo.group_of_block(goal);
        let nth = |i: u32| ((g0 as u64 + i as u64) % n as u64) as u32;
        for i in 0..n {
            let g = nth(i);
            let gd = self.group_desc_in(h, g)?;
            if gd.free_blocks_count() < want {
                continue;
            }
            let map = self.search_map(h, g, &gd)?;
            let from = if i == 0 { (goal - geo.group_first_block(g)) as u32 } else { 0 };
            let run = map.find_run(from, want).or_else(|| if from > 0 { map.find_run(0, want) } else { None });
            if let Some((s, l)) = run {
                return Ok((geo.group_first_block(g) + s as u64, l as u64));
            }
        }
        for i in 0..n {
            let g = nth(i);
            let gd = self.group_desc_in(h, g)?;
            if gd.free_blocks_count() == 0 {
                continue;
            }
            if let Some((s, l)) = self.search_map(h, g, &gd)?.longest_run() {
                return Ok((geo.group_first_block(g) + s as u64, l.min(want) as u64));
            }
        }
        Err(Error::NoSpace)
    }

    /// The runs of blocks inside `start..end` (one group's blocks) that an
    /// allocation could take now, as `h` sees the bitmaps: free, not
    /// metadata, not freed by a transaction that is not durable, not
    /// reserved. `(first block, length)` in order.
    pub fn available_runs(&self, h: &Handle<'_>, g: u32, start: u64, end: u64) -> Result<Vec<(u64, u64)>> {
        let gd = self.group_desc_in(h, g)?;
        let first = self.geometry().group_first_block(g);
        let (from, to) = (start.saturating_sub(first) as u32, end.saturating_sub(first) as u32);
        let runs = self.search_map(h, g, &gd)?.free_runs(from, to);
        Ok(runs.into_iter().map(|(s, l)| (first + s as u64, l as u64)).collect())
    }

    /// Group `g`'s blocks as a search map: set where in use (computed for a
    /// `BLOCK_UNINIT` group), where metadata lies, and where blocks are
    /// freed-but-not-durable or reserved.
    fn search_map(&self, h: &Handle<'_>, g: u32, gd: &GroupDesc) -> Result<SearchMap> {
        let geo = self.geometry();
        let first = geo.group_first_block(g);
        let nbits = geo.blocks_in_group(g);
        let bitmap = self.block_bitmap_of(h, g, gd)?;
        let mut map = SearchMap::from_bitmap(&bitmap, nbits);
        let end = first + nbits as u64;
        let mut set = |s: u64, e: u64| {
            let (s, e) = (s.max(first), e.min(end));
            if s < e {
                map.set_range((s - first) as u32, (e - first) as u32);
            }
        };
        for (s, l) in self.meta_ranges(h, g, gd)? {
            set(s, s.saturating_add(l));
        }
        let mut blocked = Vec::new();
        h.unavailable_in(first, end, &mut blocked);
        for (s, e) in blocked {
            set(s, e);
        }
        Ok(map)
    }

    /// Group `g`'s block bitmap as `h` sees it: stored and verified, or
    /// computed for a `BLOCK_UNINIT` group.
    fn block_bitmap_of(&self, h: &Handle<'_>, g: u32, gd: &GroupDesc) -> Result<Vec<u8>> {
        if self.uninit(gd, BG_BLOCK_UNINIT) {
            self.uninit_block_bitmap(h, g)
        } else {
            self.stored_bitmap(h, g, gd, BitmapKind::Block)
        }
    }

    /// Whether block `blk` is marked in use, as `h` sees the bitmaps.
    pub fn block_in_use(&self, h: &Handle<'_>, blk: u64) -> Result<bool> {
        let geo = self.geometry();
        if !geo.block_in_range(blk) {
            return Err(Error::InvalidArgument(format!("block {blk} outside the file system")));
        }
        let g = geo.group_of_block(blk);
        let gd = self.group_desc_in(h, g)?;
        Ok(test_bit(&self.block_bitmap_of(h, g, &gd)?, (blk - geo.group_first_block(g)) as u32))
    }

    /// Checks that `start..start + len` is a non-empty range of blocks of
    /// the file system; returns its end.
    fn check_block_range(&self, start: u64, len: u64) -> Result<u64> {
        let geo = self.geometry();
        match start.checked_add(len) {
            Some(end) if len > 0 && start >= geo.first_data_block as u64 && end <= geo.blocks_count => Ok(end),
            _ => Err(Error::InvalidArgument(format!("blocks {start}+{len} are not a range of the file system"))),
        }
    }

    /// Splits `start..end` at group boundaries: `(group, first, seg_start, seg_end)`.
    fn group_segments(&self, start: u64, end: u64) -> impl Iterator<Item = (u32, u64, u64, u64)> + '_ {
        let geo = self.geometry();
        let mut cur = start;
        std::iter::from_fn(move || {
            if cur >= end {
                return None;
            }
            let g = geo.group_of_block(cur);
            let first = geo.group_first_block(g);
            let seg_end = end.min(first + geo.blocks_in_group(g) as u64);
            let seg = (g, first, cur, seg_end);
            cur = seg_end;
            Some(seg)
        })
    }

    /// Marks blocks `start..start + len` in use through `h` (bitmap,
    /// descriptor, superblock): for blocks found by
    /// [`Ext4::find_free_blocks`] and kept aside with
    /// [`TxManager::reserve`](crate::journal::transaction::TxManager::reserve)
    /// meanwhile. A `BLOCK_UNINIT` group gets its computed bitmap first.
    /// Fails if a block is in use or is metadata, or was freed by a
    /// transaction that is not durable yet.
    pub fn claim_blocks(&self, h: &mut Handle<'_>, start: u64, len: u64) -> Result<()> {
        let end = self.check_block_range(start, len)?;
        if h.is_pending_free(start, len) {
            return Err(Error::InvalidArgument(format!(
                "blocks {start}+{len} were freed by a transaction that is not committed yet"
            )));
        }
        let mut delta: i128 = 0;
        for (g, first, s, e) in self.group_segments(start, end) {
            let mut gd = self.group_desc_in(h, g)?;
            if let Some(b) = first_overlap(&self.meta_ranges(h, g, &gd)?, s, e) {
                return Err(Error::InvalidArgument(format!("block {b} holds file-system metadata")));
            }
            let was_uninit = self.uninit(&gd, BG_BLOCK_UNINIT);
            let mut bitmap = self.block_bitmap_of(h, g, &gd)?;
            let (a, b) = ((s - first) as u32, (e - first) as u32);
            if let Some(i) = find_bit(&bitmap, a, b, true) {
                return Err(Error::corrupt(
                    "block bitmap",
                    Location::Block(first + i as u64),
                    "block to allocate is already in use",
                ));
            }
            let old_free = gd.free_blocks_count();
            let free = if was_uninit { count_clear(&bitmap, self.geometry().blocks_in_group(g)) } else { old_free };
            let new_free = free.checked_sub(b - a).ok_or_else(|| {
                Error::corrupt(
                    "group descriptor",
                    Location::Group(g),
                    "free block count below the bitmap's free blocks",
                )
            })?;
            set_bits(&mut bitmap, a, b);
            gd.set_free_blocks(new_free);
            if was_uninit {
                gd.raw.flags &= !BG_BLOCK_UNINIT;
            }
            self.put_bitmap(h, &mut gd, BitmapKind::Block, bitmap);
            self.write_group_desc(h, g, &gd)?;
            delta += new_free as i128 - old_free as i128;
        }
        self.adjust_free_blocks(h, delta)
    }

    /// Frees blocks `start..start + len` through `h`: clears their bits and
    /// raises the free counts. They become allocatable again only once the
    /// transaction is durable. Freeing a block that is already free, or
    /// group metadata, is [`Error::Corrupt`] (the reference to it was bad).
    /// Metadata blocks being freed also need [`Handle::revoke`] by the caller.
    pub fn free_blocks(&self, h: &mut Handle<'_>, start: u64, len: u64) -> Result<()> {
        let end = self.check_block_range(start, len)?;
        let mut delta: i128 = 0;
        for (g, first, s, e) in self.group_segments(start, end) {
            let mut gd = self.group_desc_in(h, g)?;
            if self.uninit(&gd, BG_BLOCK_UNINIT) {
                return Err(Error::corrupt(
                    "block",
                    Location::Block(s),
                    "freeing a block of a group never allocated from",
                ));
            }
            if let Some(b) = first_overlap(&self.meta_ranges(h, g, &gd)?, s, e) {
                return Err(Error::corrupt("block", Location::Block(b), "freeing file-system metadata"));
            }
            let mut bitmap = self.stored_bitmap(h, g, &gd, BitmapKind::Block)?;
            let (a, b) = ((s - first) as u32, (e - first) as u32);
            if let Some(i) = find_bit(&bitmap, a, b, false) {
                return Err(Error::corrupt("block bitmap", Location::Block(first + i as u64), "block freed twice"));
            }
            let old_free = gd.free_blocks_count();
            let new_free = old_free.saturating_add(b - a);
            if new_free > self.geometry().blocks_in_group(g) {
                return Err(Error::corrupt(
                    "group descriptor",
                    Location::Group(g),
                    "free block count above the group size",
                ));
            }
            clear_bits(&mut bitmap, a, b);
            gd.set_free_blocks(new_free);
            self.put_bitmap(h, &mut gd, BitmapKind::Block, bitmap);
            self.write_group_desc(h, g, &gd)?;
            delta += (b - a) as i128;
        }
        h.note_freed(start, len);
        self.adjust_free_blocks(h, delta)
    }

    /// Adds `delta` to the superblock's free block count (clamped at zero:
    /// the descriptors are authoritative, and the kernel recounts the
    /// superblock's totals from them).
    fn adjust_free_blocks(&self, h: &mut Handle<'_>, delta: i128) -> Result<()> {
        if delta == 0 {
            return Ok(());
        }
        self.update_superblock(h, |sb| {
            let v = (sb.free_blocks_count() as i128 + delta).clamp(0, u64::MAX as i128) as u64;
            set_sb_free_blocks(sb, v);
        })
    }
}
