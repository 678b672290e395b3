//! FITRIM (`fstrim`): giving the free blocks of a range back to the storage
//! under the image, so that a sparse image file shrinks on the host as the
//! guest frees space.
//!
//! Which blocks: those an allocation could take (free in the bitmaps, not
//! metadata, not freed by a transaction that is not durable yet — a crash
//! could still bring them back —, not reserved by an allocate → write →
//! set_blocks in flight). Group by group, they are found and discarded
//! under one journal handle: every allocation needs a handle, so none can
//! take a block between the look at the bitmap and the discard (as the
//! kernel's ext4 keeps the group busy while it discards). A handle is held
//! for one group's discards at most, which for an image file are hole
//! punches. A free block's contents are never read (new metadata is
//! written whole, new data is written or mapped unwritten before anyone
//! reads it), so the cache needs no invalidation.

use crate::error::{Error, Result};
use crate::fs::Ext4;

impl Ext4 {
    /// Discards the free blocks in bytes `start..start + len` that lie in
    /// runs of at least `min_len` bytes, with the kernel ext4's argument
    /// rules (`ext4_trim_fs`): [`Error::InvalidArgument`] when `start` is
    /// past the last block, `len` is shorter than a block, or `min_len`
    /// exceeds a group; the range is clipped to the file system. Returns
    /// the number of bytes discarded (FITRIM's answer in `range.len`).
    /// Blocks freed by the running transaction are included: it is
    /// committed first. Every call discards every free block again (the
    /// kernel skips groups it trimmed since mount and that freed nothing
    /// since, so its second `fstrim -v` answers less).
    pub fn trim(&self, start: u64, len: u64, min_len: u64) -> Result<u64> {
        let tx = self.tx()?;
        let geo = self.geometry();
        let bs = geo.block_size as u64;
        let first = start / bs;
        let min_blocks = (min_len / bs).max(1);
        if first >= geo.blocks_count || len < bs || min_blocks > geo.blocks_per_group as u64 {
            return Err(Error::InvalidArgument(format!(
                "FITRIM of {len} bytes at {start}, runs of {min_len} bytes or more"
            )));
        }
        // Blocks freed by the running transaction become trimmable once it
        // is durable: commit it first, so that `rm; fstrim` gives back what
        // rm freed.
        if tx.has_pending_frees() {
            self.fsync()?;
        }
        let first = first.max(geo.first_data_block as u64);
        let end = first.saturating_add(len / bs).min(geo.blocks_count);
        let mut trimmed = 0;
        let mut blk = first;
        while blk < end {
            let g = geo.group_of_block(blk);
            let group_end = end.min(geo.group_first_block(g) + geo.blocks_in_group(g) as u64);
            trimmed += self.trim_group(tx, g, blk, group_end, min_blocks)?;
            blk = group_end;
        }
        Ok(trimmed * bs)
    }

    /// Discards the available runs of at least `min_blocks` blocks inside
    /// `start..end` of group `g`, under one handle; returns how many blocks.
    fn trim_group(
        &self,
        tx: &crate::journal::transaction::TxManager,
        g: u32,
        start: u64,
        end: u64,
        min_blocks: u64,
    ) -> Result<u64> {
        let h = tx.begin();
        if self.group_desc_in(&h, g)?.free_blocks_count() == 0 {
            return Ok(0);
        }
        let bs = self.block_size() as u64;
        let mut blocks = 0;
        for (s, l) in self.available_runs(&h, g, start, end)? {
            if l >= min_blocks {
                self.dev.discard(s * bs, l * bs)?;
                blocks += l;
            }
        }
        drop(h);
        Ok(blocks)
    }
}
