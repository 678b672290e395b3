//! Inline-data files: writes and truncates that stay inline while the data
//! fits in the inode (`i_block` plus the `system.data` xattr), and the
//! conversion to a block-mapped file by allocate → write → set_blocks when
//! it no longer fits — or when a DAX mapping needs a real block.

use super::Ext4;
use super::extent_tree::init_root;
use super::file_write::{now, set_size, touch_mtime};
use crate::disk::features::Incompat;
use crate::disk::inode::{FL_EXTENTS, FL_INLINE_DATA, Inode};
use crate::error::{Error, Result};
use crate::journal::transaction::Handle;

/// Bytes of inline data held by `i_block`.
pub const I_BLOCK_BYTES: usize = 60;
/// Conversions retried when the inline contents change under a conversion.
const CONVERT_RETRIES: usize = 8;

impl Ext4 {
    /// The inline contents of `inode`, exactly `i_size` bytes.
    fn inline_contents(&self, inode: &Inode) -> Result<Vec<u8>> {
        let mut content = self.inline_data(inode)?;
        let size = inode.size() as usize;
        if content.len() < size {
            return Err(Error::corrupt("inline data", crate::Location::Inode(inode.ino), "shorter than i_size"));
        }
        content.truncate(size);
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

    /// Write into an inline-data file: in place while it fits, else convert
    /// first and write through the block path.
    pub(crate) fn write_inline(&self, ino: u32, offset: u64, data: &[u8]) -> Result<usize> {
        let end = offset as usize + data.len();
        {
            let mut h = self.begin()?;
            let mut inode = self.read_inode_in(&h, ino)?;
            if inode.has_flag(FL_INLINE_DATA) {
                let mut content = self.inline_contents(&inode)?;
                if end > content.len() {
                    content.resize(end, 0);
                }
                content[offset as usize..end].copy_from_slice(data);
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
        self.convert_inline(ino)?;
        self.write(ino, offset, data)
    }

    /// Truncate of an inline-data file.
    pub(crate) fn truncate_inline(&self, ino: u32, size: u64) -> Result<()> {
        {
            let mut h = self.begin()?;
            let mut inode = self.read_inode_in(&h, ino)?;
            if inode.has_flag(FL_INLINE_DATA) {
                let mut content = self.inline_contents(&inode)?;
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
        self.convert_inline(ino)?;
        self.truncate(ino, size)
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
