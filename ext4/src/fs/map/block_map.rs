//! Updating ext2/ext3 block maps with blocks allocated separately: the
//! block-map half of "set_blocks". `i_block` holds 12 direct pointers and
//! the single, double and triple indirect blocks; each indirect block is an
//! array of 32-bit block numbers, zero for a hole.
//!
//! [`set_blocks_blockmap`] points a run of logical blocks at a run of
//! physical blocks, allocating (zero-filled) indirect blocks on the way;
//! [`remove_range_blockmap`] unmaps a range, frees its data blocks and the
//! indirect blocks it leaves empty. Indirect blocks are read once per
//! operation, changed in memory, and written back at the end; a failure
//! part way leaves allocations or frees in the [`MapStore`] that the
//! caller must abandon with its transaction.

use crate::disk::codec::Field;
use crate::disk::extent::ROOT_SIZE;
use crate::error::{Error, Location, Result};
use crate::fs::map::store::{MapChange, MapContext, MapStore};
use std::collections::{BTreeMap, HashSet};

/// Direct block pointers at the start of a block map.
pub const DIRECT_BLOCKS: u64 = 12;
/// Slots of `i_block` holding the single, double and triple indirect blocks.
const INDIRECT_SLOTS: [usize; 3] = [12, 13, 14];
/// Size of one block pointer.
const PTR_SIZE: usize = 4;
/// `i_block` as a block map: 15 little-endian block numbers.
type BlockMap = [u32; 15];
/// Logical blocks any file can have (32-bit logical block numbers).
const MAX_LOGICAL_BLOCKS: u64 = 1 << 32;

/// Number of logical blocks a block map with `block_size` blocks
/// addresses: 12 direct, then p, p² and p³ through the indirect blocks
/// (p = pointers per block), capped at 2^32.
pub fn blockmap_addressable(block_size: u32) -> u64 {
    let p = (block_size as u64 / PTR_SIZE as u64).max(1);
    let tind = p.saturating_mul(p).saturating_mul(p);
    (DIRECT_BLOCKS + p + p * p).saturating_add(tind).min(MAX_LOGICAL_BLOCKS)
}

/// Where a logical block's pointer lives: an `i_block` slot, then the
/// index in each of `levels` indirect blocks below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    slot: usize,
    levels: usize,
    offsets: [usize; 3],
}

/// The pointer path of logical block `lblk` with `p` pointers per block,
/// or `None` beyond the triple indirect block.
fn locate(lblk: u64, p: u64) -> Option<Slot> {
    if lblk < DIRECT_BLOCKS {
        return Some(Slot { slot: lblk as usize, levels: 0, offsets: [0; 3] });
    }
    let mut rel = lblk - DIRECT_BLOCKS;
    let mut cover = p;
    for (t, &slot) in INDIRECT_SLOTS.iter().enumerate() {
        if rel < cover {
            let mut offsets = [0; 3];
            for off in offsets.iter_mut().take(t + 1) {
                cover /= p;
                *off = (rel / cover) as usize;
                rel %= cover;
            }
            return Some(Slot { slot, levels: t + 1, offsets });
        }
        rel -= cover;
        cover = cover.saturating_mul(p);
    }
    None
}

/// Maps logical blocks `lblk..lblk+len` to physical blocks `pblk..pblk+len`
/// (allocated by the caller). Every logical block in the range must be a
/// hole. Missing indirect blocks are allocated through
/// [`MapStore::alloc_meta`] near the data and written zero-filled apart
/// from their pointers. Returns the indirect blocks allocated.
pub fn set_blocks_blockmap<S: MapStore + ?Sized>(
    ctx: &MapContext,
    i_block: &mut [u8; ROOT_SIZE],
    store: &mut S,
    lblk: u64,
    pblk: u64,
    len: u64,
) -> Result<MapChange> {
    if len == 0 {
        return Err(Error::InvalidArgument("cannot map an empty run".into()));
    }
    if lblk.checked_add(len).is_none_or(|end| end > blockmap_addressable(ctx.block_size)) {
        return Err(Error::FileTooBig(ctx.ino));
    }
    if !ctx.run_in_range(pblk, len) || pblk + len - 1 > u32::MAX as u64 {
        return Err(Error::InvalidArgument(format!(
            "physical blocks {pblk}..{} cannot be stored in a block map",
            pblk.saturating_add(len)
        )));
    }
    let mut map = Mapper::new(ctx, i_block, store)?;
    for i in 0..len {
        if let Some(found) = map.get(lblk + i)? {
            return Err(Error::InvalidArgument(format!(
                "inode {}: logical block {} is already mapped to {found}",
                ctx.ino,
                lblk + i
            )));
        }
    }
    for i in 0..len {
        map.set(lblk + i, (pblk + i) as u32)?;
    }
    map.finish(i_block)
}

/// Unmaps logical blocks `lblk..lblk+len` (clipped to what the map
/// addresses): frees the mapped data blocks through
/// [`MapStore::free_data`], in physically contiguous runs, and every
/// indirect block left without pointers through [`MapStore::free_meta`].
/// Subtrees that are holes are skipped without being visited.
pub fn remove_range_blockmap<S: MapStore + ?Sized>(
    ctx: &MapContext,
    i_block: &mut [u8; ROOT_SIZE],
    store: &mut S,
    lblk: u64,
    len: u64,
) -> Result<MapChange> {
    let end = lblk.saturating_add(len).min(blockmap_addressable(ctx.block_size));
    let mut map = Mapper::new(ctx, i_block, store)?;
    if lblk >= end {
        return Ok(MapChange::default());
    }
    for i in lblk..end.min(DIRECT_BLOCKS) {
        let ptr = map.root[i as usize];
        if ptr != 0 {
            let loc = Location::Inode(ctx.ino);
            map.free_data_block(ctx.check_block(ptr as u64, "block map", loc)?)?;
            map.root[i as usize] = 0;
        }
    }
    let mut base = DIRECT_BLOCKS;
    let mut cover = map.per_block;
    for slot in INDIRECT_SLOTS {
        let tree_end = base.saturating_add(cover);
        let ptr = map.root[slot];
        if lblk < tree_end && end > base && ptr != 0 {
            let blk = ctx.check_block(ptr as u64, "block map", Location::Inode(ctx.ino))?;
            if map.remove_in(blk, base, cover, lblk, end)? {
                map.free_meta(blk)?;
                map.root[slot] = 0;
            }
        }
        base = tree_end;
        cover = cover.saturating_mul(map.per_block);
    }
    map.finish(i_block)
}

/// One block-map update in progress: the pointers of `i_block` and the
/// indirect blocks read or changed so far.
struct Mapper<'a, S: MapStore + ?Sized> {
    ctx: &'a MapContext,
    store: &'a mut S,
    root: BlockMap,
    per_block: u64,
    /// Indirect blocks read so far, with whether they were changed.
    blocks: BTreeMap<u64, (Vec<u8>, bool)>,
    /// Indirect blocks visited by a removal (each at most once).
    visited: HashSet<u64>,
    /// Data blocks waiting to be freed as one run: (first, count).
    free_run: (u64, u64),
    change: MapChange,
}

impl<'a, S: MapStore + ?Sized> Mapper<'a, S> {
    fn new(ctx: &'a MapContext, i_block: &[u8; ROOT_SIZE], store: &'a mut S) -> Result<Self> {
        let per_block = ctx.block_size as u64 / PTR_SIZE as u64;
        if per_block < 2 {
            return Err(Error::InvalidArgument(format!("block size {} cannot hold a block map", ctx.block_size)));
        }
        Ok(Mapper {
            ctx,
            store,
            root: BlockMap::get(i_block),
            per_block,
            blocks: BTreeMap::new(),
            visited: HashSet::new(),
            free_run: (0, 0),
            change: MapChange::default(),
        })
    }

    /// The contents of indirect block `blk`, read through the store once.
    fn block(&mut self, blk: u64) -> Result<&mut (Vec<u8>, bool)> {
        if !self.blocks.contains_key(&blk) {
            let data = self.ctx.read_block(self.store, blk)?;
            self.blocks.insert(blk, (data, false));
        }
        self.blocks
            .get_mut(&blk)
            .ok_or_else(|| Error::InvalidArgument(format!("indirect block {blk} vanished from the cache")))
    }

    fn pointer(&mut self, blk: u64, idx: usize) -> Result<u32> {
        Ok(u32::get(&self.block(blk)?.0[idx * PTR_SIZE..]))
    }

    fn set_pointer(&mut self, blk: u64, idx: usize, ptr: u32) -> Result<()> {
        let entry = self.block(blk)?;
        ptr.put(&mut entry.0[idx * PTR_SIZE..]);
        entry.1 = true;
        Ok(())
    }

    /// Follows an indirect pointer read from block `from` (or the inode).
    fn follow(&self, ptr: u32, from: Option<u64>) -> Result<u64> {
        let loc = from.map_or(Location::Inode(self.ctx.ino), Location::Block);
        self.ctx.check_block(ptr as u64, "block map", loc)
    }

    /// The physical block `lblk` maps to, if any.
    fn get(&mut self, lblk: u64) -> Result<Option<u32>> {
        let s = locate(lblk, self.per_block).ok_or(Error::FileTooBig(self.ctx.ino))?;
        let mut ptr = self.root[s.slot];
        let mut from = None;
        for &off in &s.offsets[..s.levels] {
            if ptr == 0 {
                return Ok(None);
            }
            let blk = self.follow(ptr, from)?;
            ptr = self.pointer(blk, off)?;
            from = Some(blk);
        }
        Ok((ptr != 0).then_some(ptr))
    }

    /// A new, zero-filled indirect block near `goal`.
    fn new_block(&mut self, goal: u64) -> Result<u32> {
        let blk = self.store.alloc_meta(goal)?;
        self.change.meta_allocated += 1;
        if !self.ctx.run_in_range(blk, 1) || blk > u32::MAX as u64 {
            return Err(Error::InvalidArgument(format!("allocator returned block {blk} unusable in a block map")));
        }
        self.blocks.insert(blk, (vec![0u8; self.ctx.block_size as usize], true));
        Ok(blk as u32)
    }

    /// Points `lblk` (a hole) at `pblk`, creating indirect blocks on the way.
    fn set(&mut self, lblk: u64, pblk: u32) -> Result<()> {
        let s = locate(lblk, self.per_block).ok_or(Error::FileTooBig(self.ctx.ino))?;
        if s.levels == 0 {
            self.root[s.slot] = pblk;
            return Ok(());
        }
        if self.root[s.slot] == 0 {
            self.root[s.slot] = self.new_block(pblk as u64)?;
        }
        let mut blk = self.follow(self.root[s.slot], None)?;
        for (d, &off) in s.offsets[..s.levels].iter().enumerate() {
            if d + 1 == s.levels {
                return self.set_pointer(blk, off, pblk);
            }
            let mut child = self.pointer(blk, off)?;
            if child == 0 {
                child = self.new_block(pblk as u64)?;
                self.set_pointer(blk, off, child)?;
            }
            blk = self.follow(child, Some(blk))?;
        }
        Ok(())
    }

    /// Queues data block `blk` to be freed, coalescing contiguous blocks.
    fn free_data_block(&mut self, blk: u64) -> Result<()> {
        let (start, count) = self.free_run;
        if count > 0 && start + count == blk {
            self.free_run.1 += 1;
            return Ok(());
        }
        self.flush_free_run()?;
        self.free_run = (blk, 1);
        Ok(())
    }

    fn flush_free_run(&mut self) -> Result<()> {
        let (start, count) = std::mem::take(&mut self.free_run);
        if count > 0 {
            self.store.free_data(start, count)?;
            self.change.data_freed += count;
        }
        Ok(())
    }

    fn free_meta(&mut self, blk: u64) -> Result<()> {
        self.blocks.remove(&blk);
        self.store.free_meta(blk)?;
        self.change.meta_freed += 1;
        Ok(())
    }

    /// Unmaps `lo..hi` under indirect block `blk`, which maps `cover`
    /// logical blocks from `base`. Returns whether `blk` is left without
    /// pointers (the caller frees it).
    fn remove_in(&mut self, blk: u64, base: u64, cover: u64, lo: u64, hi: u64) -> Result<bool> {
        if !self.visited.insert(blk) {
            return Err(Error::corrupt(
                "indirect block",
                Location::Block(blk),
                format!("inode {}: referenced twice", self.ctx.ino),
            ));
        }
        let child_cover = cover / self.per_block;
        let first = (lo.max(base) - base) / child_cover;
        let last = (hi.min(base.saturating_add(cover)) - 1 - base) / child_cover;
        for j in first..=last {
            let idx = j as usize;
            let ptr = self.pointer(blk, idx)?;
            if ptr == 0 {
                continue;
            }
            let child = self.follow(ptr, Some(blk))?;
            if child_cover == 1 {
                self.free_data_block(child)?;
            } else if self.remove_in(child, base + j * child_cover, child_cover, lo, hi)? {
                self.free_meta(child)?;
            } else {
                continue;
            }
            self.set_pointer(blk, idx, 0)?;
        }
        Ok(self.block(blk)?.0.iter().all(|&b| b == 0))
    }

    /// Frees the pending data run, writes the changed indirect blocks and
    /// the new `i_block`.
    fn finish(mut self, i_block: &mut [u8; ROOT_SIZE]) -> Result<MapChange> {
        self.flush_free_run()?;
        for (blk, (data, dirty)) in std::mem::take(&mut self.blocks) {
            if dirty {
                self.store.write(blk, data)?;
            }
        }
        self.root.put(i_block);
        Ok(self.change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_paths() {
        let p = 256;
        assert_eq!(locate(11, p), Some(Slot { slot: 11, levels: 0, offsets: [0; 3] }));
        assert_eq!(locate(12, p), Some(Slot { slot: 12, levels: 1, offsets: [0; 3] }));
        assert_eq!(locate(12 + 255, p), Some(Slot { slot: 12, levels: 1, offsets: [255, 0, 0] }));
        assert_eq!(locate(12 + 256, p), Some(Slot { slot: 13, levels: 2, offsets: [0, 0, 0] }));
        assert_eq!(locate(12 + 256 + 256 * 3 + 7, p), Some(Slot { slot: 13, levels: 2, offsets: [3, 7, 0] }));
        let tind = 12 + 256 + 65536;
        assert_eq!(locate(tind, p), Some(Slot { slot: 14, levels: 3, offsets: [0, 0, 0] }));
        assert_eq!(locate(tind + 65536 * 2 + 256 * 5 + 9, p), Some(Slot { slot: 14, levels: 3, offsets: [2, 5, 9] }));
        assert_eq!(locate(tind + 256 * 65536 - 1, p), Some(Slot { slot: 14, levels: 3, offsets: [255, 255, 255] }));
        assert_eq!(locate(tind + 256 * 65536, p), None);
    }

    #[test]
    fn addressable_blocks() {
        assert_eq!(blockmap_addressable(1024), 12 + 256 + 65536 + 16_777_216);
        assert_eq!(blockmap_addressable(4096), 12 + 1024 + 1024 * 1024 + 1024 * 1024 * 1024);
        assert_eq!(blockmap_addressable(65536), 1 << 32);
    }
}
