//! fallocate(2): preallocation of unwritten extents (default and
//! keep-size), hole punching, range zeroing, and collapsing or inserting
//! whole blocks (which moves the extents after them, see
//! [`Ext4::shift_blocks_in`]). New blocks enter the file the one way they
//! always do — reserve with `allocate`, then `set_blocks` in one handle —
//! but as *unwritten* extents, which read as zeros, so no data has to be
//! written first. Each step is one handle and leaves a consistent file: a
//! full disk part-way keeps what was done.

use crate::disk::extent::MAX_LOGICAL_BLOCKS;
use crate::disk::inode::{FL_EXTENTS, FL_INLINE_DATA, Inode};
use crate::error::{Error, Result};
use crate::fs::Ext4;
use crate::fs::data::write::{now, set_size, touch_ctime, touch_mtime};
use crate::fs::inode::lock::LockMode;
use crate::fs::map::lookup::Mapping;

/// Blocks allocated per handle: bounds one handle's size.
const MAX_RUN_BLOCKS: u64 = 2048;

/// Share of a handle's block budget per extent leaf a shift rewrites: the
/// leaf, its index blocks, and room for the inode and the first handle's
/// split or unmapping.
const SHIFT_BLOCKS_PER_LEAF: usize = 4;

/// What [`Ext4::fallocate`] does to the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallocMode {
    /// Allocate unwritten blocks for the holes and extend `i_size` to the
    /// end of the range (mode 0).
    Default,
    /// Allocate like [`FallocMode::Default`] but leave `i_size` alone
    /// (FALLOC_FL_KEEP_SIZE).
    KeepSize,
    /// Free the whole blocks of the range and zero its partial edge blocks;
    /// `i_size` is unchanged (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE).
    PunchHole,
    /// Make the range read as zeros, leaving it allocated (unwritten);
    /// extends `i_size` unless `keep_size` (FALLOC_FL_ZERO_RANGE).
    ZeroRange {
        /// Leave `i_size` alone (FALLOC_FL_KEEP_SIZE).
        keep_size: bool,
    },
    /// Remove the range and move the rest of the file down over it; `i_size`
    /// shrinks by the length (FALLOC_FL_COLLAPSE_RANGE). Offset and length
    /// must be block multiples and the range must end before `i_size`.
    CollapseRange,
    /// Move the file from the offset up by the length and leave a hole
    /// there; `i_size` grows by the length (FALLOC_FL_INSERT_RANGE). Offset
    /// and length must be block multiples, the offset below `i_size`.
    InsertRange,
}

impl Ext4 {
    /// fallocate(2) on regular file `ino` for bytes `offset..offset+len`.
    /// Directories fail with [`Error::IsADirectory`], ranges past the
    /// largest file size with [`Error::FileTooBig`], and every mode but
    /// punching on a block-mapped (ext2/3) file with [`Error::Unsupported`]
    /// (EOPNOTSUPP, like the kernel: block maps cannot hold unwritten blocks).
    /// Inline-data files are converted first. Holds the inode's I/O lock
    /// exclusively: no read or write of the file runs meanwhile.
    pub fn fallocate(&self, ino: u32, mode: FallocMode, offset: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Err(Error::InvalidArgument("fallocate of an empty range".into()));
        }
        let end = offset.checked_add(len).ok_or(Error::FileTooBig(ino))?;
        let _io = self.lock_inode(ino, LockMode::Exclusive);
        let inode = self.read_inode(ino)?;
        if inode.is_dir() {
            return Err(Error::IsADirectory(ino));
        }
        if !inode.is_reg() {
            return Err(Error::InvalidArgument(format!("inode {ino} is not a regular file")));
        }
        let max = self.max_file_size(&inode);
        let end = match mode {
            // Punching past the largest size frees nothing more: clip.
            FallocMode::PunchHole => end.min(max),
            _ if end > max => return Err(Error::FileTooBig(ino)),
            _ => end,
        };
        if offset >= end {
            return Ok(());
        }
        if inode.has_flag(FL_INLINE_DATA) {
            self.convert_inline_locked(ino)?;
        }
        let extents = self.read_inode(ino)?.has_flag(FL_EXTENTS);
        if !extents && mode != FallocMode::PunchHole {
            return Err(Error::Unsupported(format!("inode {ino}: fallocate needs an extent-mapped file")));
        }
        let bs = self.block_size() as u64;
        let (first, last) = (offset / bs, end.div_ceil(bs));
        if matches!(mode, FallocMode::Default | FallocMode::ZeroRange { keep_size: false }) {
            // The size may grow past the old last block's tail.
            let inode = self.read_inode(ino)?;
            self.zero_eof_tail(&inode, end)?;
        }
        match mode {
            FallocMode::Default => self.alloc_unwritten(ino, first, last, Some(end)),
            FallocMode::KeepSize => self.alloc_unwritten(ino, first, last, None),
            FallocMode::PunchHole => self.punch(ino, offset, end),
            FallocMode::ZeroRange { keep_size } => {
                self.punch(ino, offset, end)?;
                self.alloc_unwritten(ino, first, last, (!keep_size).then_some(end))
            }
            FallocMode::CollapseRange => self.shift_range(ino, false, offset, len),
            FallocMode::InsertRange => self.shift_range(ino, true, offset, len),
        }
    }

    /// Collapse-range (`insert == false`) or insert-range of bytes
    /// `offset..offset+len`, with the checks and order of the kernel's
    /// `ext4_collapse_range` / `ext4_insert_range` (inline data was converted
    /// by the caller): block-mapped files fail with [`Error::Unsupported`], an
    /// offset or length that is not a block multiple with
    /// [`Error::InvalidArgument`], an insert past the largest file size with
    /// [`Error::FileTooBig`], a collapse reaching `i_size` or an insert at
    /// or past it with [`Error::InvalidArgument`]. The collapsed blocks are
    /// freed, every later extent moves, and `i_size` follows: in one handle
    /// (the kernel's one transaction) when the extents to move fit in
    /// `max_handle_blocks / SHIFT_BLOCKS_PER_LEAF` leaves, else in one
    /// handle per that many leaves (the kernel restarts its handle as its
    /// credits run out). The caller holds the inode's I/O lock exclusively.
    fn shift_range(&self, ino: u32, insert: bool, offset: u64, len: u64) -> Result<()> {
        let inode = self.read_inode(ino)?;
        let what = if insert { "insert-range" } else { "collapse-range" };
        if !inode.has_flag(FL_EXTENTS) {
            return Err(Error::Unsupported(format!("inode {ino}: {what} needs an extent-mapped file")));
        }
        let bs = self.block_size() as u64;
        if offset % bs != 0 || len % bs != 0 {
            return Err(Error::InvalidArgument(format!("{what} of {len} bytes at {offset}: not whole blocks")));
        }
        let size = inode.size();
        if insert && len > self.max_file_size(&inode).saturating_sub(size) {
            return Err(Error::FileTooBig(ino));
        }
        if insert && offset >= size {
            return Err(Error::InvalidArgument(format!("{what} at {offset}: not below the size {size}")));
        }
        // checked_add succeeded in the caller.
        if !insert && offset + len >= size {
            return Err(Error::InvalidArgument(format!("{what} to {}: not below the size {size}", offset + len)));
        }
        let (first, count) = (offset / bs, len / bs);
        let delta = i64::try_from(count).map_err(|_| Error::FileTooBig(ino))?;
        // Every block from the offset on changes its logical address (or is
        // freed): guest mappings of any of them go first.
        self.unpin_before_free(ino, first, u64::MAX)?;
        let leaves_per_handle = (self.tx()?.max_handle_blocks() / SHIFT_BLOCKS_PER_LEAF).max(1);
        let mut h = self.begin()?;
        let mut inode = self.read_inode_in(&h, ino)?;
        let from = if insert {
            self.split_extent_in(&mut h, &mut inode, first)?;
            // As the kernel: i_size grows first, so that no moved extent
            // ever lies past it, whichever handle is the last to commit.
            set_size(&mut inode, size + len);
            first
        } else {
            self.unmap_blocks_in(&mut h, &mut inode, first, count)?;
            first + count
        };
        // The extents from `from` on move in pieces of whole leaves, one
        // handle each (the first also holds the split or the unmapping, the
        // last the new size): a crash between two leaves a consistent file
        // partly shifted, as the kernel's restarted handles do. Left shifts
        // go from the left, right shifts from the right, so each piece lands
        // on blocks that are already free.
        let mut cuts: Vec<u64> =
            self.extent_leaf_starts(&mut h, &inode, from)?.into_iter().step_by(leaves_per_handle).collect();
        cuts.push(MAX_LOGICAL_BLOCKS);
        let mut pieces: Vec<(u64, u64)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
        if insert {
            pieces.reverse();
        }
        for (i, (a, b)) in pieces.into_iter().enumerate() {
            if i > 0 {
                h.finish();
                h = self.begin()?;
                inode = self.read_inode_in(&h, ino)?;
            }
            self.shift_blocks_in(&mut h, &mut inode, a, b, if insert { delta } else { -delta })?;
        }
        if !insert {
            set_size(&mut inode, size - len);
        }
        touch_mtime(&mut inode, now());
        self.write_inode(&mut h, &mut inode)?;
        h.finish();
        Ok(())
    }

    /// Fills the holes of logical blocks `first..last` with unwritten
    /// blocks, one handle per run. With `new_size`, `i_size` grows with
    /// each step (never past `new_size`), so a full disk part-way leaves a
    /// size that covers what was allocated, as the kernel does.
    fn alloc_unwritten(&self, ino: u32, first: u64, last: u64, new_size: Option<u64>) -> Result<()> {
        let bs = self.block_size() as u64;
        let mut lblk = first;
        while lblk < last {
            let snapshot = self.read_inode(ino)?;
            let want = match self.map_block(&snapshot, lblk)? {
                Mapping::Mapped { len, .. } => {
                    lblk += len.max(1);
                    continue;
                }
                Mapping::Hole { len } => len.max(1).min(last - lblk).min(MAX_RUN_BLOCKS),
            };
            let r = self.allocate(self.falloc_goal(&snapshot, lblk)?, want)?;
            let n = r.len();
            let mut h = self.begin()?;
            let mut inode = self.read_inode_in(&h, ino)?;
            match self.map_block(&inode, lblk)? {
                Mapping::Hole { len } if len >= n => self.set_blocks(&mut h, &mut inode, lblk, r, true)?,
                // The mapping changed meanwhile: look again.
                _ => continue,
            }
            self.grow_size(&mut inode, new_size.map(|s| s.min((lblk + n) * bs)));
            self.write_inode(&mut h, &mut inode)?;
            h.finish();
            lblk += n;
        }
        if let Some(size) = new_size {
            if self.read_inode(ino)?.size() < size {
                let mut h = self.begin()?;
                let mut inode = self.read_inode_in(&h, ino)?;
                self.grow_size(&mut inode, Some(size));
                self.write_inode(&mut h, &mut inode)?;
                h.finish();
            }
        }
        Ok(())
    }

    /// Raises `i_size` to `size` (if given and larger) and sets the times.
    fn grow_size(&self, inode: &mut Inode, size: Option<u64>) {
        match size {
            Some(s) if s > inode.size() => {
                set_size(inode, s);
                touch_mtime(inode, now());
            }
            _ => touch_ctime(inode, now()),
        }
    }

    /// An allocation goal for `lblk`: after the previous logical block's
    /// physical block, else the inode's group.
    fn falloc_goal(&self, inode: &Inode, lblk: u64) -> Result<u64> {
        if lblk > 0 {
            if let Mapping::Mapped { pblk, .. } = self.map_block(inode, lblk - 1)? {
                return Ok(pblk + 1);
            }
        }
        Ok(self.data_goal(inode.ino, true))
    }

    /// Frees the whole blocks of bytes `offset..end` and zeros the partial
    /// blocks at its edges in place (where mapped and written: holes and
    /// unwritten blocks read as zeros already), in one handle.
    fn punch(&self, ino: u32, offset: u64, end: u64) -> Result<()> {
        let bs = self.block_size() as u64;
        let mut h = self.begin()?;
        let mut inode = self.read_inode_in(&h, ino)?;
        let (full_first, full_last) = (offset.div_ceil(bs), end / bs);
        // The partial edges: the head block and the tail block (the same
        // block when the range lies inside one).
        let mut edges = Vec::with_capacity(2);
        if offset % bs != 0 {
            edges.push((offset, end.min((offset / bs + 1) * bs)));
        }
        if end % bs != 0 && (offset % bs == 0 || end / bs != offset / bs) {
            edges.push(((end / bs * bs).max(offset), end));
        }
        for (from, to) in edges {
            if let Mapping::Mapped { pblk, unwritten: false, .. } = self.map_block_in(&h, &inode, from / bs)? {
                let zeros = vec![0u8; (to - from) as usize];
                self.device().write_at(&zeros, pblk * bs + from % bs)?;
            }
        }
        if full_last > full_first {
            self.unmap_blocks_in(&mut h, &mut inode, full_first, full_last - full_first)?;
        }
        touch_mtime(&mut inode, now());
        self.write_inode(&mut h, &mut inode)?;
        h.finish();
        Ok(())
    }
}
