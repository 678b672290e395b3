//! Mapping updates of one inode inside a handle: the `set_blocks` half of
//! allocate → write → set_blocks (point logical blocks at physical blocks
//! that were allocated separately) and its inverse for truncate and punch.
//! Tree and indirect blocks are allocated and freed through the allocator,
//! journaled through the handle, and counted in `i_blocks`.

use crate::disk::extent::Extent;
use crate::disk::features::RoCompat;
use crate::disk::inode::{FL_EXTENTS, FL_HUGE_FILE, FL_INLINE_DATA, Inode};
use crate::error::{Error, Location, Result};
use crate::fs::Ext4;
use crate::fs::alloc::AllocPool;
use crate::fs::map::store::{MapChange, MapContext, MapStore};
use crate::fs::map::{block_map, extent_tree};
use crate::journal::transaction::Handle;

/// A [`MapStore`] over a journal handle and the file system's allocator.
pub struct HandleStore<'f, 'h, 'a> {
    fs: &'f Ext4,
    h: &'h mut Handle<'a>,
    /// The file's data blocks are journaled metadata (directories): freeing
    /// one must revoke it, so no older logged copy is ever checkpointed or
    /// replayed over what the block holds next.
    journaled_data: bool,
    /// Where tree blocks come from.
    pool: AllocPool,
}

impl<'f, 'h, 'a> HandleStore<'f, 'h, 'a> {
    /// Mapping updates of `fs` staged in `h`, for a file whose data blocks
    /// are journaled (`journaled_data`: directories) or written in place.
    /// Tree blocks are ordinary allocations.
    pub fn new(fs: &'f Ext4, h: &'h mut Handle<'a>, journaled_data: bool) -> Self {
        HandleStore { fs, h, journaled_data, pool: AllocPool::Ordinary }
    }

    /// The same store taking tree blocks from the split reserve: for
    /// updates that split extents without mapping new data (unmapping,
    /// shifting, converting unwritten blocks), which must not fail on a
    /// full file system.
    pub fn splitting(self) -> Self {
        HandleStore { pool: AllocPool::Reserve, ..self }
    }
}

impl MapStore for HandleStore<'_, '_, '_> {
    fn read(&mut self, blk: u64) -> Result<Vec<u8>> {
        Ok(self.fs.meta_block_in(self.h, blk, "mapping block")?.to_vec())
    }
    fn write(&mut self, blk: u64, data: Vec<u8>) -> Result<()> {
        self.h.write(blk, data);
        Ok(())
    }
    fn alloc_meta(&mut self, goal: u64) -> Result<u64> {
        Ok(self.fs.alloc_blocks_from(self.h, goal, 1, self.pool)?.0)
    }
    fn free_meta(&mut self, blk: u64) -> Result<()> {
        self.h.revoke(blk);
        self.fs.free_blocks(self.h, blk, 1)
    }
    fn free_data(&mut self, pblk: u64, len: u64) -> Result<()> {
        if self.journaled_data {
            for blk in pblk..pblk + len {
                self.h.revoke(blk);
            }
        }
        self.fs.free_blocks(self.h, pblk, len)
    }
}

impl Ext4 {
    /// Points logical blocks `lblk..lblk+len` of `inode` at physical blocks
    /// `pblk..pblk+len`, which the caller allocated (and, for written
    /// blocks, filled) beforehand. Updates the extent tree or block map and
    /// `i_blocks`, and stages the inode. The range must be unmapped.
    pub fn map_blocks_in(
        &self,
        h: &mut Handle<'_>,
        inode: &mut Inode,
        lblk: u64,
        pblk: u64,
        len: u64,
        unwritten: bool,
    ) -> Result<()> {
        if inode.has_flag(FL_INLINE_DATA) {
            return Err(Error::InvalidArgument(format!("inode {} holds inline data", inode.ino)));
        }
        let ctx = MapContext::new(self, inode);
        let mut root = inode.raw.block;
        let mut change = MapChange::default();
        {
            let mut store = HandleStore::new(self, h, inode.is_dir());
            if inode.has_flag(FL_EXTENTS) {
                let mut done = 0u64;
                while done < len {
                    let max = if unwritten { 32767 } else { 32768 };
                    let n = (len - done).min(max);
                    let l = u32::try_from(lblk + done).map_err(|_| Error::FileTooBig(inode.ino))?;
                    let ext = Extent { lblk: l, len: n as u32, pblk: pblk + done, unwritten };
                    let c = extent_tree::insert_extent(&ctx, &mut root, &mut store, ext)?;
                    change.meta_allocated += c.meta_allocated;
                    done += n;
                }
            } else if unwritten {
                return Err(Error::InvalidArgument("block-mapped files have no unwritten blocks".into()));
            } else {
                change = block_map::set_blocks_blockmap(&ctx, &mut root, &mut store, lblk, pblk, len)?;
            }
        }
        inode.raw.block = root;
        self.add_inode_blocks(inode, len as i64 + change.blocks_delta())?;
        self.write_inode(h, inode)
    }

    /// Unmaps logical blocks `lblk..lblk+len` (`len == u64::MAX`: to the end)
    /// of `inode`, freeing data and tree blocks; stages the inode.
    pub fn unmap_blocks_in(&self, h: &mut Handle<'_>, inode: &mut Inode, lblk: u64, len: u64) -> Result<()> {
        if inode.has_flag(FL_INLINE_DATA) {
            return Ok(());
        }
        // Blocks a guest has mapped are unmapped first, and never freed while pinned.
        self.unpin_before_free(inode.ino, lblk, len)?;
        let ctx = MapContext::new(self, inode);
        let mut root = inode.raw.block;
        let change = {
            let mut store = HandleStore::new(self, h, inode.is_dir()).splitting();
            if inode.has_flag(FL_EXTENTS) {
                extent_tree::remove_range(&ctx, &mut root, &mut store, lblk, len)?
            } else {
                block_map::remove_range_blockmap(&ctx, &mut root, &mut store, lblk, len)?
            }
        };
        inode.raw.block = root;
        self.add_inode_blocks(inode, change.blocks_delta())?;
        self.write_inode(h, inode)
    }

    /// Cuts the extent of `inode` that straddles logical block `lblk`, so
    /// that a shift can start there (insert-range). May take a tree block
    /// from the split reserve. Stages the inode.
    pub fn split_extent_in(&self, h: &mut Handle<'_>, inode: &mut Inode, lblk: u64) -> Result<()> {
        let ctx = self.shiftable(inode)?;
        let mut root = inode.raw.block;
        let change =
            extent_tree::split_at(&ctx, &mut root, &mut HandleStore::new(self, h, inode.is_dir()).splitting(), lblk)?;
        inode.raw.block = root;
        self.add_inode_blocks(inode, change.blocks_delta())?;
        self.write_inode(h, inode)
    }

    /// Where the leaves holding `inode`'s extents from `from` on begin (see
    /// [`extent_tree::leaf_starts`]): the cuts that split a shift into
    /// handles of bounded size.
    pub fn extent_leaf_starts(&self, h: &mut Handle<'_>, inode: &Inode, from: u64) -> Result<Vec<u64>> {
        let ctx = self.shiftable(inode)?;
        let mut root = inode.raw.block;
        extent_tree::leaf_starts(&ctx, &mut root, &mut HandleStore::new(self, h, inode.is_dir()), from)
    }

    /// Moves the mapping of the extents of `inode` that start in
    /// `from..until` by `delta` blocks (collapse-range and insert-range);
    /// the physical blocks stay where they are. The caller has released
    /// guest mappings of the range ([`Ext4::unpin_before_free`]); see
    /// [`extent_tree::shift_extents`] for what must hold before. Stages the
    /// tree blocks and the inode.
    pub fn shift_blocks_in(
        &self,
        h: &mut Handle<'_>,
        inode: &mut Inode,
        from: u64,
        until: u64,
        delta: i64,
    ) -> Result<()> {
        let ctx = self.shiftable(inode)?;
        let mut root = inode.raw.block;
        extent_tree::shift_extents(
            &ctx,
            &mut root,
            &mut HandleStore::new(self, h, inode.is_dir()),
            from,
            until,
            delta,
        )?;
        inode.raw.block = root;
        self.write_inode(h, inode)
    }

    /// The map context of `inode` if its blocks can be shifted: extent-mapped only.
    fn shiftable(&self, inode: &Inode) -> Result<MapContext> {
        if !inode.has_flag(FL_EXTENTS) || inode.has_flag(FL_INLINE_DATA) {
            return Err(Error::Unsupported(format!("inode {}: only extent trees can shift blocks", inode.ino)));
        }
        Ok(MapContext::new(self, inode))
    }

    /// Converts unwritten blocks in `lblk..lblk+len` to written (after their
    /// data was written); stages the inode.
    pub fn mark_written_in(&self, h: &mut Handle<'_>, inode: &mut Inode, lblk: u64, len: u64) -> Result<()> {
        if !inode.has_flag(FL_EXTENTS) {
            return Ok(());
        }
        let ctx = MapContext::new(self, inode);
        let mut root = inode.raw.block;
        let change = extent_tree::mark_written(
            &ctx,
            &mut root,
            &mut HandleStore::new(self, h, inode.is_dir()).splitting(),
            lblk,
            len,
        )?;
        inode.raw.block = root;
        self.add_inode_blocks(inode, change.blocks_delta())?;
        self.write_inode(h, inode)
    }

    /// Adds `delta` file-system blocks to `i_blocks`, in the unit the inode
    /// uses (512-byte sectors, or blocks under huge_file with the flag).
    pub fn add_inode_blocks(&self, inode: &mut Inode, delta: i64) -> Result<()> {
        let huge = self.superblock().ro_compat().has(RoCompat::HUGE_FILE);
        let bs = self.block_size() as i64;
        let cur = inode.blocks_512(huge, self.block_size()) as i64;
        let new = cur + delta * (bs / 512);
        if new < 0 {
            return Err(Error::corrupt("inode", Location::Inode(inode.ino), "i_blocks would become negative"));
        }
        let new = new as u64;
        if new < 1 << 32 {
            inode.raw.blocks_lo = new as u32;
            inode.raw.blocks_hi = 0;
            inode.raw.flags &= !FL_HUGE_FILE;
        } else if huge && new < 1 << 48 {
            inode.raw.blocks_lo = new as u32;
            inode.raw.blocks_hi = (new >> 32) as u16;
            inode.raw.flags &= !FL_HUGE_FILE;
        } else {
            return Err(Error::FileTooBig(inode.ino));
        }
        Ok(())
    }
}
