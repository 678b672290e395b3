//! Inline data: small files, directories and symlinks stored inside the
//! inode, in the 60 bytes of `i_block` followed by the value of the
//! `system.data` xattr. Reading it; writes and truncates that stay inline while the data
//! fits in the inode (`i_block` plus the `system.data` xattr), and the
//! conversion to a block-mapped file by allocate → write → set_blocks when
//! it no longer fits — or when a DAX mapping needs a real block.

use crate::disk::features::Incompat;
use crate::disk::inode::{FL_DAX, FL_EXTENTS, FL_INLINE_DATA, Inode};
use crate::disk::xattr::INDEX_SYSTEM;
use crate::error::{Error, Result};
use crate::fs::Ext4;
use crate::fs::data::write::{now, set_size, touch_mtime};
use crate::fs::inode::lock::LockMode;
use crate::fs::map::extent_tree::init_root;
use crate::journal::transaction::Handle;

/// Bytes of inline data held by `i_block`.
pub const I_BLOCK_BYTES: usize = 60;
/// Conversions retried when the inline contents change under a conversion.
const CONVERT_RETRIES: usize = 8;

impl Ext4 {
    /// The inline contents of `inode`: the bytes stored inline, cut at
    /// `i_size`. The kernel may leave `i_size` past them (a file truncated
    /// up before its first write, then written inline); the rest of such a
    /// file reads as zeros, and is never materialised here.
    fn inline_contents(&self, inode: &Inode) -> Result<Vec<u8>> {
        let mut content = self.inline_data(inode)?;
        content.truncate(content.len().min(usize::try_from(inode.size()).unwrap_or(usize::MAX)));
        Ok(content)
    }

    /// Stores `content` as the inline data of `inode`: the first 60 bytes in
    /// `i_block`, the rest in `system.data` (in the inode only). Fails with
    /// [`Error::NoSpace`] when it does not fit; the handle is then unusable
    /// for this inode and must be dropped.
    fn store_inline(&self, h: &mut Handle<'_>, inode: &mut Inode, content: &[u8]) -> Result<()> {
        let head = content.len().min(I_BLOCK_BYTES);
        let mut block = [0u8; I_BLOCK_BYTES];
        block[..head].copy_from_slice(&content[..head]);
        inode.raw.block = block;
        self.set_system_data(h, inode, &content[head..])?;
        set_size(inode, content.len() as u64);
        Ok(())
    }

    /// Records that regular file `inode` was just created: its first write
    /// may store it inline (see [`Ext4::write`]).
    pub(crate) fn note_new_file(&self, inode: &Inode) {
        if inode.is_reg() && self.superblock().incompat().has(Incompat::INLINE_DATA) {
            self.may_inline().insert(inode.ino);
        }
    }

    /// Makes the fresh, empty regular file `inode` an inline-data file (the
    /// inline flag, no extents root, an empty `system.data`), staged through
    /// `h`, when the file system has inline_data and the inode has room for
    /// it: as the kernel's files, whose first write goes inline when it
    /// fits ([`Ext4::write_inline`]) and converts otherwise. Inodes without
    /// extra space (`i_extra_isize` 0, which the kernel never inlines) or
    /// without room for the entry stay as they are. Returns whether it did.
    pub(crate) fn inline_new_file(&self, h: &mut Handle<'_>, inode: &mut Inode) -> Result<bool> {
        if !self.superblock().incompat().has(Incompat::INLINE_DATA)
            || !inode.is_reg()
            || inode.raw.extra_isize == 0
            || inode.size() != 0
            || inode.flags() & (FL_INLINE_DATA | FL_DAX) != 0
        {
            return Ok(false);
        }
        let mut candidate = inode.clone();
        candidate.raw.flags = (candidate.raw.flags & !FL_EXTENTS) | FL_INLINE_DATA;
        candidate.raw.block = [0u8; I_BLOCK_BYTES];
        match self.set_system_data(h, &mut candidate, &[]) {
            Ok(()) => {
                *inode = candidate;
                Ok(true)
            }
            // No room in the in-inode area: a block-mapped file.
            Err(Error::NoSpace) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The most bytes `inode` can hold inline: `i_block` plus the largest
    /// `system.data` value its in-inode xattr area has room for next to
    /// the other in-inode attributes (the kernel's
    /// `ext4_get_max_inline_size`).
    pub fn inline_capacity(&self, inode: &Inode) -> Result<u64> {
        Ok((I_BLOCK_BYTES + self.max_system_data(inode)?) as u64)
    }

    /// Write into an inline-data file: in place while the new end fits the
    /// inline capacity, else convert first and write through the block
    /// path. The capacity is checked before any buffer is sized by the
    /// request, so a write far past the end never allocates its offset.
    pub(crate) fn write_inline(&self, ino: u32, offset: u64, data: &[u8]) -> Result<usize> {
        let end = offset.checked_add(data.len() as u64).ok_or(Error::FileTooBig(ino))?;
        {
            let mut h = self.begin()?;
            let mut inode = self.read_inode_in(&h, ino)?;
            // A file whose i_size runs past its inline bytes converts first.
            let sized = inode.has_flag(FL_INLINE_DATA) && inode.size() <= self.inline_data(&inode)?.len() as u64;
            if sized && end <= self.inline_capacity(&inode)? {
                // end <= capacity: both fit in memory and in usize.
                let (start, end) = (offset as usize, end as usize);
                let mut content = self.inline_contents(&inode)?;
                if end > content.len() {
                    content.resize(end, 0);
                }
                content[start..end].copy_from_slice(data);
                match self.store_inline(&mut h, &mut inode, &content) {
                    Ok(()) => {
                        touch_mtime(&mut inode, now());
                        self.write_inode(&mut h, &mut inode)?;
                        h.finish();
                        return Ok(data.len());
                    }
                    Err(Error::NoSpace) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.convert_inline_locked(ino)?;
        self.write_locked(ino, offset, data)
    }

    /// Truncate of an inline-data file, as the kernel does it: shrinking
    /// and growing within the inline area in use (`i_block`, plus the
    /// current `system.data` value) stay inline; growing past it converts
    /// and truncates the block-mapped file (a hole up to `size`, nothing
    /// allocated for it, whatever `size` is).
    pub(crate) fn truncate_inline(&self, ino: u32, size: u64) -> Result<()> {
        {
            let mut h = self.begin()?;
            let mut inode = self.read_inode_in(&h, ino)?;
            if inode.has_flag(FL_INLINE_DATA) && size <= self.inline_data(&inode)?.len() as u64 {
                let mut content = self.inline_contents(&inode)?;
                // size <= the inline area: a few hundred bytes at most.
                content.resize(size as usize, 0);
                match self.store_inline(&mut h, &mut inode, &content) {
                    Ok(()) => {
                        touch_mtime(&mut inode, now());
                        self.write_inode(&mut h, &mut inode)?;
                        h.finish();
                        return Ok(());
                    }
                    Err(Error::NoSpace) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.convert_inline_locked(ino)?;
        self.truncate_locked(ino, size)
    }

    /// Converts inline-data file `ino` to a block-mapped file, as Ted Ts'o
    /// proposed: reserve one block, write the inline bytes into it (zero
    /// padded) with no handle open, then in ONE handle zero `i_block`,
    /// remove `system.data`, clear the inline flag, set the extents flag
    /// with a fresh root, and map logical block 0 to the block (marking it
    /// in the bitmap in the same handle). Returns whether this call
    /// converted (false: not inline, or converted concurrently). Racing
    /// conversions of the same inode convert exactly once.
    pub fn convert_inline(&self, ino: u32) -> Result<bool> {
        let _io = self.lock_inode(ino, LockMode::Exclusive);
        self.convert_inline_locked(ino)
    }

    /// [`Ext4::convert_inline`] for a caller that holds the inode's lock
    /// exclusively.
    pub(crate) fn convert_inline_locked(&self, ino: u32) -> Result<bool> {
        for _ in 0..CONVERT_RETRIES {
            let snapshot = self.read_inode(ino)?;
            if !snapshot.has_flag(FL_INLINE_DATA) {
                return Ok(false);
            }
            if !snapshot.is_reg() {
                return Err(Error::InvalidArgument(format!("inode {ino}: only regular files convert here")));
            }
            let content = self.inline_contents(&snapshot)?;
            // allocate -> write (no handle open while the data is written).
            let reservation = if content.is_empty() {
                None
            } else {
                let r = self.allocate(self.data_goal(ino, true), 1)?;
                self.write_reserved(&r, &content)?;
                Some(r)
            };
            // set_blocks: one handle for every metadata change.
            let mut h = self.begin()?;
            let mut inode = self.read_inode_in(&h, ino)?;
            if !inode.has_flag(FL_INLINE_DATA) {
                return Ok(false);
            }
            if self.inline_contents(&inode)? != content {
                // Written meanwhile: the block holds stale bytes; try again.
                continue;
            }
            self.remove_system_data(&mut h, &mut inode)?;
            inode.raw.block = [0u8; I_BLOCK_BYTES];
            inode.raw.flags &= !FL_INLINE_DATA;
            if self.superblock().incompat().has(Incompat::EXTENTS) {
                inode.raw.flags |= FL_EXTENTS;
                init_root(&mut inode.raw.block);
            }
            match reservation {
                Some(r) => self.set_blocks(&mut h, &mut inode, 0, r, false)?,
                None => self.write_inode(&mut h, &mut inode)?,
            }
            h.finish();
            return Ok(true);
        }
        Err(Error::InvalidArgument(format!("inode {ino}: inline data kept changing during conversion")))
    }
}

/// Name suffix of the `system.data` xattr that continues the inline data.
const INLINE_DATA_XATTR: &[u8] = b"data";

impl Ext4 {
    /// The whole inline contents: the 60 bytes of `i_block` followed by the
    /// value of the `system.data` xattr. Callers clamp to `i_size`.
    pub fn inline_data(&self, inode: &Inode) -> Result<Vec<u8>> {
        if !inode.has_flag(FL_INLINE_DATA) {
            return Err(Error::InvalidArgument(format!("inode {} has no inline data", inode.ino)));
        }
        let mut data = inode.i_block().to_vec();
        if let Some(rest) = self.find_raw_xattr(inode, INDEX_SYSTEM, INLINE_DATA_XATTR)? {
            data.extend_from_slice(&rest);
        }
        Ok(data)
    }
}
