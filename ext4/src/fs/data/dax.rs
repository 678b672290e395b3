//! `map_for_dax`: the physical image ranges that back a file range, for the
//! daemon to map into a guest's DAX window, and the pins that keep those
//! blocks from being freed or reused while a guest may still access them.
//!
//! Semantics:
//! - Inline-data files are always converted first (allocate → write →
//!   set_blocks): mapping the inode table block would expose other inodes.
//! - Writable mappings: holes inside `i_size` (rounded up to a block) are
//!   filled with zeroed blocks and unwritten extents are zeroed and marked
//!   written, so every byte the guest can store to has a block of its own.
//!   The part of a writable range past the end of the file comes back as
//!   [`DaxPiece::Zero`]: a guest never touches a mapping past EOF (Linux
//!   sends extending writes as FUSE_WRITE and always asks 2 MiB ranges,
//!   whatever the file's size), and when the file grows the daemon maps the
//!   new blocks in.
//! - Read-only mappings never allocate: holes, unwritten extents and the
//!   part past end of file come back as [`DaxPiece::Zero`], which the daemon
//!   backs with a shared zero page (the guest cannot store through them).
//! - Refused: anything but regular files, block sizes smaller than the host
//!   page size (a page would span blocks of different owners), encrypted
//!   and verity files.

use crate::disk::inode::{FL_ENCRYPT, FL_INLINE_DATA, FL_VERITY};
use crate::error::{Error, Result};
use crate::fs::Ext4;
use crate::fs::inode::lock::LockMode;
use crate::fs::map::lookup::Mapping;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Host page size assumed for DAX mappings.
pub const PAGE_SIZE: u64 = 4096;

/// One piece of a mapped file range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaxPiece {
    /// `len` bytes of the file at `file_offset` are the image bytes at `image_offset`.
    Image {
        /// Offset in the file.
        file_offset: u64,
        /// Byte offset in the image file.
        image_offset: u64,
        /// Length in bytes (a multiple of the page size).
        len: u64,
    },
    /// `len` bytes at `file_offset` read as zeros and have no block (read-only mappings only).
    Zero {
        /// Offset in the file.
        file_offset: u64,
        /// Length in bytes.
        len: u64,
    },
}

/// A pinned DAX mapping of one inode: its image pieces stay allocated to the
/// inode until [`Ext4::release_dax`] is called with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaxMapping {
    /// Identifies the pin for [`Ext4::release_dax`].
    pub id: u64,
    /// Inode mapped.
    pub ino: u32,
    /// Pieces in file order, covering the requested range.
    pub pieces: Vec<DaxPiece>,
    /// The file was stored inline and was converted for this mapping.
    pub converted: bool,
}

/// What the core tells the owner of DAX mappings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaxEvent {
    /// Logical blocks `first..first+count` of `ino`, some of them under a
    /// pin, are about to be freed or moved: before returning, the owner
    /// must unmap them from every guest and release (or narrow, with
    /// [`Ext4::pin_dax`]) every pin overlapping the range.
    Freeing {
        /// Inode.
        ino: u32,
        /// First logical block.
        first: u64,
        /// Number of blocks (`u64::MAX`: to the end).
        count: u64,
    },
    /// Inode `ino` was freed (its blocks already were, announced by
    /// [`DaxEvent::Freeing`]): its number may be reused by a new file, so
    /// mappings of the old one must never be taken for the new one's.
    InodeFreed {
        /// Inode.
        ino: u32,
    },
}

/// The owner's handler of [`DaxEvent`]s (the daemon's DAX window). It runs
/// inside the freeing journal handle and under the inode's I/O lock.
pub type UnmapCallback = Box<dyn Fn(DaxEvent) + Send + Sync>;

/// The registry of pinned block ranges.
#[derive(Default)]
pub struct DaxPins {
    next_id: u64,
    /// id -> (inode, first logical block, block count).
    pins: BTreeMap<u64, (u32, u64, u64)>,
}

/// Pins and the owner to ask for unmapping, kept by [`Ext4`].
#[derive(Default)]
pub struct DaxState {
    pins: Mutex<DaxPins>,
    owner: Mutex<Option<UnmapCallback>>,
}

impl Ext4 {
    /// Registers the owner that unmaps pinned ranges on request (the daemon).
    pub fn set_dax_unmap_owner(&self, cb: UnmapCallback) {
        *self.dax().owner.lock().unwrap_or_else(|e| e.into_inner()) = Some(cb);
    }

    /// Resolves (and prepares, see the module documentation) the file range
    /// `offset..offset+len` of `ino` for a DAX mapping and pins its blocks.
    /// `offset` must be page aligned; `len` is rounded up to whole pages.
    pub fn map_for_dax(&self, ino: u32, offset: u64, len: u64, writable: bool) -> Result<DaxMapping> {
        self.map_for_dax_with(ino, offset, len, writable, |m| m.clone())
    }

    /// [`Ext4::map_for_dax`], then runs `install` with the mapping while the
    /// inode's I/O lock is still held exclusively: no write, truncate or
    /// other mapping of the inode can change its blocks before `install`
    /// has put the pieces where the guest sees them. `install` runs with no
    /// journal handle open, so it may wait (for a frontend's
    /// acknowledgement) without stalling other inodes; it must not call back
    /// into this inode's data operations.
    pub fn map_for_dax_with<R>(
        &self,
        ino: u32,
        offset: u64,
        len: u64,
        writable: bool,
        install: impl FnOnce(&DaxMapping) -> R,
    ) -> Result<R> {
        let bs = self.block_size() as u64;
        if bs < PAGE_SIZE {
            return Err(Error::Unsupported(format!(
                "DAX needs blocks of at least {PAGE_SIZE} bytes, this image has {bs}"
            )));
        }
        if offset % PAGE_SIZE != 0 || len == 0 {
            return Err(Error::InvalidArgument(format!("DAX range {offset}+{len} is not page aligned")));
        }
        let len = len
            .checked_next_multiple_of(PAGE_SIZE)
            .ok_or_else(|| Error::InvalidArgument("DAX length overflows".into()))?;
        let end = offset.checked_add(len).ok_or_else(|| Error::InvalidArgument("DAX range overflows".into()))?;
        // Exclusive: the conversion, hole filling, resolving, pinning and
        // installing see one version of the mapping, and no read or write
        // runs meanwhile.
        let _io = self.lock_inode(ino, LockMode::Exclusive);
        let inode = self.read_inode(ino)?;
        if !inode.is_reg() {
            return Err(Error::InvalidArgument(format!("inode {ino} is not a regular file")));
        }
        if inode.flags() & (FL_ENCRYPT | FL_VERITY) != 0 {
            return Err(Error::Unsupported(format!("inode {ino} is encrypted or verity-protected")));
        }
        let converted = inode.has_flag(FL_INLINE_DATA) && self.convert_inline_locked(ino)?;
        if writable {
            let size_end = self.read_inode(ino)?.size().div_ceil(bs) * bs;
            if offset < size_end {
                self.prepare_writable(ino, offset / bs, end.min(size_end).div_ceil(bs))?;
            }
        }
        // Resolve and pin under the writer lock, so no truncate can free a
        // block between resolving and pinning.
        // (A read-only image has no handles and nothing that could free.)
        let h = if self.is_read_only() { None } else { Some(self.begin()?) };
        let inode = match &h {
            Some(h) => self.read_inode_in(h, ino)?,
            None => self.read_inode(ino)?,
        };
        let size = inode.size();
        let mut pieces: Vec<DaxPiece> = Vec::new();
        let mut pos = offset;
        while pos < end {
            let lblk = pos / bs;
            let in_file = pos < size.div_ceil(bs) * bs;
            let (piece_len, piece) = match (in_file, self.map_block(&inode, lblk)?) {
                (true, Mapping::Mapped { pblk, len: n, unwritten: false }) => {
                    let run = (n * bs - pos % bs).min(end - pos).min(size.div_ceil(bs) * bs - pos);
                    (run, DaxPiece::Image { file_offset: pos, image_offset: pblk * bs + pos % bs, len: run })
                }
                (true, Mapping::Mapped { len: n, .. }) | (true, Mapping::Hole { len: n }) => {
                    if writable {
                        return Err(Error::corrupt(
                            "inode",
                            crate::Location::Inode(ino),
                            "hole left after preparing a writable DAX range",
                        ));
                    }
                    let run = (n.saturating_mul(bs) - pos % bs).min(end - pos).min(size.div_ceil(bs) * bs - pos);
                    (run, DaxPiece::Zero { file_offset: pos, len: run })
                }
                (false, _) => (end - pos, DaxPiece::Zero { file_offset: pos, len: end - pos }),
            };
            push_piece(&mut pieces, piece);
            pos += piece_len;
        }
        let id = self.pin_dax(ino, offset / bs, end.div_ceil(bs) - offset / bs);
        drop(h);
        Ok(install(&DaxMapping { id, ino, pieces, converted }))
    }

    /// Pins logical blocks `first..first+count` of `ino` without resolving
    /// them: for an owner that keeps part of a mapping it already holds
    /// (after part of it was unmapped). Returns the pin's id.
    pub fn pin_dax(&self, ino: u32, first: u64, count: u64) -> u64 {
        let mut pins = self.dax().pins.lock().unwrap_or_else(|e| e.into_inner());
        pins.next_id += 1;
        let id = pins.next_id;
        pins.pins.insert(id, (ino, first, count));
        id
    }

    /// Tells the owner, if any, that inode `ino` was freed.
    pub(crate) fn dax_inode_freed(&self, ino: u32) {
        if let Some(cb) = self.dax().owner.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            cb(DaxEvent::InodeFreed { ino });
        }
    }

    /// Forgets the unmap owner (its session ended; every pin was released).
    pub fn clear_dax_unmap_owner(&self) {
        *self.dax().owner.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Fills holes and converts unwritten blocks in logical `first..last`
    /// with zeroed, written blocks (allocate → write zeros → set_blocks).
    fn prepare_writable(&self, ino: u32, first: u64, last: u64) -> Result<()> {
        let bs = self.block_size() as u64;
        let mut lblk = first;
        while lblk < last {
            let inode = self.read_inode(ino)?;
            match self.map_block(&inode, lblk)? {
                Mapping::Mapped { len, unwritten: false, .. } => lblk += len,
                Mapping::Mapped { pblk, len, unwritten: true } => {
                    let n = len.min(last - lblk).min(1024);
                    self.device().write_at(&vec![0u8; (n * bs) as usize], pblk * bs)?;
                    let mut h = self.begin()?;
                    let mut inode = self.read_inode_in(&h, ino)?;
                    if matches!(self.map_block(&inode, lblk)?, Mapping::Mapped { pblk: p, unwritten: true, .. } if p == pblk)
                    {
                        self.mark_written_in(&mut h, &mut inode, lblk, n)?;
                        h.finish();
                    }
                }
                Mapping::Hole { len } => {
                    let n = len.min(last - lblk).min(1024);
                    let r = self.allocate(self.data_goal(ino, true), n)?;
                    self.write_reserved(&r, &vec![0u8; (r.len() * bs) as usize])?;
                    let mut h = self.begin()?;
                    let mut inode = self.read_inode_in(&h, ino)?;
                    if matches!(self.map_block(&inode, lblk)?, Mapping::Hole { len } if len >= r.len()) {
                        self.set_blocks(&mut h, &mut inode, lblk, r, false)?;
                        h.finish();
                    }
                }
            }
        }
        Ok(())
    }

    /// Releases the pin of a DAX mapping (after the daemon unmapped it).
    pub fn release_dax(&self, id: u64) {
        self.dax().pins.lock().unwrap_or_else(|e| e.into_inner()).pins.remove(&id);
    }

    /// Number of live DAX pins.
    pub fn dax_pin_count(&self) -> usize {
        self.dax().pins.lock().unwrap_or_else(|e| e.into_inner()).pins.len()
    }

    /// Before blocks `first..first+count` of `ino` are freed: asks the owner
    /// to unmap every overlapping pin, then refuses ([`Error::Busy`]) if any
    /// pin is still there. A pinned block is never freed.
    pub fn unpin_before_free(&self, ino: u32, first: u64, count: u64) -> Result<()> {
        let overlaps = |pins: &DaxPins| -> Vec<(u64, u64, u64)> {
            pins.pins
                .iter()
                .filter(|(_, (i, l, n))| *i == ino && *l < first.saturating_add(count) && first < l + n)
                .map(|(id, (_, l, n))| (*id, *l, *n))
                .collect()
        };
        let found = overlaps(&self.dax().pins.lock().unwrap_or_else(|e| e.into_inner()));
        if found.is_empty() {
            return Ok(());
        }
        if let Some(cb) = self.dax().owner.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            cb(DaxEvent::Freeing { ino, first, count });
        }
        if overlaps(&self.dax().pins.lock().unwrap_or_else(|e| e.into_inner())).is_empty() {
            Ok(())
        } else {
            Err(Error::Busy(format!(
                "blocks {first}..{} of inode {ino} are mapped into a guest",
                first.saturating_add(count)
            )))
        }
    }
}

/// Appends `piece`, merging it into the previous one when contiguous.
fn push_piece(pieces: &mut Vec<DaxPiece>, piece: DaxPiece) {
    match (pieces.last_mut(), piece) {
        (
            Some(DaxPiece::Image { file_offset: f, image_offset: i, len: l }),
            DaxPiece::Image { file_offset: nf, image_offset: ni, len: nl },
        ) if *f + *l == nf && *i + *l == ni => *l += nl,
        (Some(DaxPiece::Zero { file_offset: f, len: l }), DaxPiece::Zero { file_offset: nf, len: nl })
            if *f + *l == nf =>
        {
            *l += nl
        }
        _ => pieces.push(piece),
    }
}
