//! Writing file data and changing file size. New blocks always enter a file
//! by allocate → write → set_blocks: the data reaches the image before any
//! metadata points at it, so no stale data can ever be read, and the handle
//! that maps the blocks is opened only after the data is written.

use crate::disk::inode::{FL_INLINE_DATA, Inode, Timestamp};
use crate::error::{Error, Result};
use crate::fs::Ext4;
use crate::fs::data::io::{DataSource, SliceSource};
use crate::fs::inode::lock::LockMode;
use crate::fs::map::lookup::Mapping;
use crate::journal::transaction::Handle;

/// The current time as an inode timestamp.
pub fn now() -> Timestamp {
    Timestamp::now()
}

/// Sets `i_size` (both halves).
pub fn set_size(inode: &mut Inode, size: u64) {
    inode.raw.size_lo = size as u32;
    inode.raw.size_hi = (size >> 32) as u32;
}

/// Sets mtime and ctime to `t`.
pub fn touch_mtime(inode: &mut Inode, t: Timestamp) {
    let (s, x) = t.encode();
    inode.raw.mtime = s;
    inode.raw.mtime_extra = x;
    inode.raw.ctime = s;
    inode.raw.ctime_extra = x;
}

/// Sets ctime to `t`.
pub fn touch_ctime(inode: &mut Inode, t: Timestamp) {
    let (s, x) = t.encode();
    inode.raw.ctime = s;
    inode.raw.ctime_extra = x;
}

/// Blocks allocated per step of a large write: bounds one handle's size.
const MAX_RUN_BLOCKS: u64 = 2048;

impl Ext4 {
    /// Largest file size the inode's mapping and the features allow (for
    /// extents, like the kernel's `s_maxbytes`: 2^32 - 1 blocks).
    pub fn max_file_size(&self, inode: &Inode) -> u64 {
        let bs = self.block_size() as u64;
        let blocks = self.addressable_blocks(inode);
        let blocks = if inode.has_flag(crate::disk::inode::FL_EXTENTS) { blocks - 1 } else { blocks };
        let by_map = blocks.saturating_mul(bs);
        let large = self.superblock().ro_compat().has(crate::disk::features::RoCompat::LARGE_FILE);
        if large || !inode.is_reg() { by_map } else { by_map.min((1 << 31) - 1) }
    }

    /// Writes `data` at `offset` of regular file `ino`, extending it as
    /// needed, and returns the number of bytes written. Like write(2), an
    /// error that stops it part-way (no space left, say) returns the
    /// completed part as a short count — each completed step is whole and
    /// sized; the failed step leaves nothing behind — and the error repeats
    /// on the next call.
    ///
    /// Holds the inode's I/O lock exclusively throughout: between looking up
    /// a block and writing into it, no truncate, punch or other write of the
    /// same file can change what the block is.
    pub fn write(&self, ino: u32, offset: u64, data: &[u8]) -> Result<usize> {
        self.write_from(ino, offset, &mut SliceSource(data))
    }

    /// [`Ext4::write`] from any [`DataSource`]: each byte moves once, from
    /// the source to the image (only partial blocks and inline data are
    /// assembled in a buffer of at most one block).
    pub fn write_from(&self, ino: u32, offset: u64, src: &mut dyn DataSource) -> Result<usize> {
        let _io = self.lock_inode(ino, LockMode::Exclusive);
        self.write_locked_from(ino, offset, src)
    }

    /// Appends `data` at the end of regular file `ino` (O_APPEND): the size
    /// is read and the data written under the inode's exclusive lock, so no
    /// other write or truncate of the file comes in between. Returns the
    /// offset written at and the count (short as for [`Ext4::write`]).
    pub fn append(&self, ino: u32, data: &[u8]) -> Result<(u64, usize)> {
        self.append_from(ino, &mut SliceSource(data))
    }

    /// [`Ext4::append`] from any [`DataSource`].
    pub fn append_from(&self, ino: u32, src: &mut dyn DataSource) -> Result<(u64, usize)> {
        let _io = self.lock_inode(ino, LockMode::Exclusive);
        let offset = self.read_inode(ino)?.size();
        Ok((offset, self.write_locked_from(ino, offset, src)?))
    }

    /// [`Ext4::write`] for a caller that holds the inode's lock exclusively.
    pub(crate) fn write_locked(&self, ino: u32, offset: u64, data: &[u8]) -> Result<usize> {
        self.write_locked_from(ino, offset, &mut SliceSource(data))
    }

    /// [`Ext4::write_from`] for a caller that holds the inode's lock exclusively.
    fn write_locked_from(&self, ino: u32, offset: u64, src: &mut dyn DataSource) -> Result<usize> {
        if src.is_empty() {
            return Ok(0);
        }
        let end = offset.checked_add(src.len() as u64).ok_or(Error::FileTooBig(ino))?;
        {
            let h = self.begin()?;
            let inode = self.read_inode_in(&h, ino)?;
            if !inode.is_reg() {
                return Err(Error::InvalidArgument(format!("inode {ino} is not a regular file")));
            }
            if end > self.max_file_size(&inode) {
                return Err(Error::FileTooBig(ino));
            }
            let inode = self.maybe_start_inline(h, inode, end)?;
            if inode.has_flag(FL_INLINE_DATA) {
                let fits = end <= self.inline_capacity(&inode)?;
                if fits {
                    // At most the inline capacity (a part of one inode).
                    let mut data = vec![0u8; src.len()];
                    src.copy_to(0, &mut data)?;
                    return self.write_inline(ino, offset, &data);
                }
                self.convert_inline_locked(ino)?;
            }
        }
        // A write past the end: what lies between the old end and the
        // write inside the old last block becomes file data, so it must be
        // zeros (a store through a DAX mapping may have left bytes there).
        let snapshot = self.read_inode(ino)?;
        if offset > snapshot.size() {
            self.zero_eof_tail(&snapshot, offset)?;
        }
        let mut pos = offset;
        match self.write_blocks(ino, offset, src, &mut pos) {
            Ok(()) => Ok(src.len()),
            // Like write(2): what was completed before the error (no space,
            // say) is a short write; each completed step is whole.
            Err(_) if pos > offset => Ok((pos - offset) as usize),
            Err(e) => Err(e),
        }
    }

    /// The first write to a file created by this open decides, as the
    /// kernel's `ext4_try_to_write_inline_data` does while the file may
    /// still be inlined: with inline_data, a first write ending within the
    /// inline capacity of an empty file makes it inline (in `h`, finished
    /// here); otherwise it stays block-mapped for good. Returns the inode as
    /// the write goes on with; the handle is consumed either way.
    fn maybe_start_inline(&self, mut h: Handle<'_>, inode: Inode, end: u64) -> Result<Inode> {
        if !self.may_inline().remove(&inode.ino) {
            return Ok(inode);
        }
        // An empty file without a single block (not even preallocated ones).
        if inode.has_flag(FL_INLINE_DATA) || inode.size() != 0 || inode.raw.blocks_lo != 0 || inode.raw.blocks_hi != 0 {
            return Ok(inode);
        }
        let mut candidate = inode.clone();
        if !self.inline_new_file(&mut h, &mut candidate)? || end > self.inline_capacity(&candidate)? {
            return Ok(inode);
        }
        self.write_inode(&mut h, &mut candidate)?;
        h.finish();
        Ok(candidate)
    }

    /// The block-mapped part of [`Ext4::write`]; advances `pos` as steps complete.
    fn write_blocks(&self, ino: u32, offset: u64, src: &mut dyn DataSource, progress: &mut u64) -> Result<()> {
        let bs = self.block_size() as u64;
        let end = offset + src.len() as u64;
        while *progress < end {
            let pos = *progress;
            let lblk = pos / bs;
            // The mapping as of now; the handle that changes it re-checks.
            let snapshot = self.read_inode(ino)?;
            let blocks_left = (end - 1) / bs + 1 - lblk;
            let (written, mut h, mut inode) = match self.map_block(&snapshot, lblk)? {
                Mapping::Mapped { pblk, len, unwritten: false } => {
                    // Overwrite in place: only times and size change.
                    let run_end = ((lblk + len) * bs).min(end);
                    let n = (run_end - pos) as usize;
                    src.write_to((pos - offset) as usize, n, self.device().as_ref(), pblk * bs + pos % bs)?;
                    let h = self.begin()?;
                    let inode = self.read_inode_in(&h, ino)?;
                    (n, h, inode)
                }
                Mapping::Mapped { pblk, len, unwritten: true } => {
                    // Allocated but unwritten: write the data (zeros around
                    // it), then flip the extent to written in one handle.
                    let blocks = len.min(blocks_left).min(MAX_RUN_BLOCKS);
                    let n = self.fill_blocks(pblk, lblk, blocks, pos, offset, src)?;
                    let mut h = self.begin()?;
                    let mut inode = self.read_inode_in(&h, ino)?;
                    match self.map_block(&inode, lblk)? {
                        Mapping::Mapped { pblk: p, unwritten: true, .. } if p == pblk => {
                            self.mark_written_in(&mut h, &mut inode, lblk, blocks)?
                        }
                        // Someone else changed the mapping meanwhile: retry.
                        _ => continue,
                    }
                    (n, h, inode)
                }
                Mapping::Hole { len } => {
                    // allocate -> write -> set_blocks: the data is on disk
                    // before any metadata points at it, with no handle open.
                    let want = len.min(blocks_left).min(MAX_RUN_BLOCKS);
                    let r = self.allocate(self.goal_for(&snapshot, lblk)?, want)?;
                    let n = self.fill_blocks(r.start(), lblk, r.len(), pos, offset, src)?;
                    let mut h = self.begin()?;
                    let mut inode = self.read_inode_in(&h, ino)?;
                    match self.map_block(&inode, lblk)? {
                        Mapping::Hole { len } if len >= r.len() => {
                            self.set_blocks(&mut h, &mut inode, lblk, r, false)?
                        }
                        _ => continue,
                    }
                    (n, h, inode)
                }
            };
            let new_pos = pos + written as u64;
            if new_pos > inode.size() {
                set_size(&mut inode, new_pos);
            }
            touch_mtime(&mut inode, now());
            self.write_inode(&mut h, &mut inode)?;
            h.finish();
            *progress = new_pos;
        }
        Ok(())
    }

    /// Writes whole blocks `pblk..pblk+blocks` (logical `lblk..`) holding the
    /// part of the source (which starts at file offset `offset`) from `pos`
    /// on, and zeros around it: these blocks were a hole or unwritten, which
    /// read as zeros. Whole blocks of data go straight from the source; a
    /// block only partly covered is assembled in a one-block buffer.
    /// Returns the data bytes consumed.
    fn fill_blocks(
        &self,
        pblk: u64,
        lblk: u64,
        blocks: u64,
        pos: u64,
        offset: u64,
        src: &mut dyn DataSource,
    ) -> Result<usize> {
        let bs = self.block_size() as u64;
        let dev = self.device().as_ref();
        let start = lblk * bs;
        let stop = start + blocks * bs;
        let (from, to) = (pos.max(start), (offset + src.len() as u64).min(stop));
        let mut b = start;
        while b < stop {
            let disk = pblk * bs + (b - start);
            if from <= b && b + bs <= to {
                let whole = (to - b) / bs * bs;
                src.write_to((b - offset) as usize, whole as usize, dev, disk)?;
                b += whole;
                continue;
            }
            let mut block = vec![0u8; bs as usize];
            let (lo, hi) = (from.clamp(b, b + bs), to.clamp(b, b + bs));
            if lo < hi {
                src.copy_to((lo - offset) as usize, &mut block[(lo - b) as usize..(hi - b) as usize])?;
            }
            dev.write_at(&block, disk)?;
            b += bs;
        }
        Ok((to - pos) as usize)
    }

    /// An allocation goal for logical block `lblk`: right after the
    /// physical block of the previous logical block, else the inode's group.
    fn goal_for(&self, inode: &Inode, lblk: u64) -> Result<u64> {
        if lblk > 0 {
            if let Mapping::Mapped { pblk, .. } = self.map_block(inode, lblk - 1)? {
                return Ok(pblk + 1);
            }
        }
        Ok(self.data_goal(inode.ino, inode.is_reg()))
    }

    /// Changes the size of regular file `ino`: shrinking frees the blocks
    /// past the new end and zeroes the tail of the last block; growing makes
    /// a hole.
    pub fn truncate(&self, ino: u32, size: u64) -> Result<()> {
        let _io = self.lock_inode(ino, LockMode::Exclusive);
        self.truncate_locked(ino, size)
    }

    /// [`Ext4::truncate`] for a caller that holds the inode's lock exclusively.
    pub(crate) fn truncate_locked(&self, ino: u32, size: u64) -> Result<()> {
        let mut h = self.begin()?;
        let mut inode = self.read_inode_in(&h, ino)?;
        if !inode.is_reg() {
            return Err(Error::InvalidArgument(format!("inode {ino} is not a regular file")));
        }
        if size > self.max_file_size(&inode) {
            return Err(Error::FileTooBig(ino));
        }
        if inode.has_flag(FL_INLINE_DATA) {
            drop(h);
            return self.truncate_inline(ino, size);
        }
        self.truncate_in(&mut h, &mut inode, size)?;
        touch_mtime(&mut inode, now());
        self.write_inode(&mut h, &mut inode)?;
        h.finish();
        Ok(())
    }

    /// Before `inode`'s size grows to `upto`: zeroes the bytes of its last
    /// block past the current end (up to `upto` or the block's end) on the
    /// image. They read as zeros while past the end, but may hold what a
    /// store through a DAX mapping of that block left there; growing the
    /// file must not make them file data (as the kernel zeroes the old
    /// end's block on extension). Inline files have no such block.
    pub(crate) fn zero_eof_tail(&self, inode: &Inode, upto: u64) -> Result<()> {
        let bs = self.block_size() as u64;
        let size = inode.size();
        if upto <= size || size % bs == 0 || inode.has_flag(FL_INLINE_DATA) {
            return Ok(());
        }
        if let Mapping::Mapped { pblk, unwritten: false, .. } = self.map_block(inode, size / bs)? {
            let end = upto.min(size.div_ceil(bs) * bs);
            self.device().write_at(&vec![0u8; (end - size) as usize], pblk * bs + size % bs)?;
        }
        Ok(())
    }

    /// Truncate of a block-mapped or extent-mapped inode inside a handle.
    pub fn truncate_in(&self, h: &mut Handle<'_>, inode: &mut Inode, size: u64) -> Result<()> {
        let bs = self.block_size() as u64;
        let old = inode.size();
        if size > old {
            self.zero_eof_tail(inode, size)?;
        }
        if size < old {
            let keep = size.div_ceil(bs);
            self.unmap_blocks_in(h, inode, keep, u64::MAX)?;
            // Zero the dead tail of the last kept block, so a later extension
            // reads zeros there (POSIX), not the old bytes.
            if size % bs != 0 {
                if let Mapping::Mapped { pblk, unwritten: false, .. } = self.map_block(inode, size / bs)? {
                    let zeros = vec![0u8; (bs - size % bs) as usize];
                    self.device().write_at(&zeros, pblk * bs + size % bs)?;
                }
            }
        }
        set_size(inode, size);
        Ok(())
    }
}
