//! Inline directories (`FL_INLINE_DATA`) inside a handle, as the kernel
//! keeps them (`fs/ext4/inline.c`): the parent inode in the first 4 bytes
//! of `i_block`, records in the other 56 bytes, continued in the value of
//! the in-inode `system.data` extended attribute; `i_size` is 60 plus that
//! value's length (e2fsck checks it).
//!
//! - A new entry goes into the first region with room. When `i_block` is
//!   full and `system.data` is still empty, the value grows once to all
//!   the free space of the in-inode xattr area (as `ext4_update_inline_dir`
//!   does) if that exceeds one minimal record.
//! - When nothing fits, the directory becomes a one-block directory
//!   (`ext4_convert_inline_dir`): "." and ".." (12 bytes each), then the
//!   inline records byte for byte, so an entry at inline offset `o` lands
//!   at `o + 20` as the reader's cookies promise; the last record extends
//!   to the tail. `system.data` is removed, the inline flag cleared, and
//!   the inode gets an empty extent tree (extents feature) or block map
//!   before block 0 is mapped.
//! - `system.data` is read from the in-inode area and written through the
//!   xattr writer ([`Ext4::set_system_data`], [`Ext4::remove_system_data`]),
//!   which keeps the inode's other attributes.
//!
//! New directories on file systems with inline_data start inline, like
//! the kernel's: [`Ext4::new_directory`](crate::fs::Ext4::new_directory).

use crate::disk::codec::le32;
use crate::disk::dir_entry::{
    DirRecords, Dirent, FT_DIR, FoundRecord, MIN_REC_LEN, OwnedRecord, delete_record, extend_last_record, find_record,
    find_room, init_empty_region, insert_record, retarget_record, set_leaf_tail, write_packed,
};
use crate::disk::features::Incompat;
use crate::disk::inode::{FL_EXTENTS, FL_INLINE_DATA, Inode};
use crate::disk::xattr::{INDEX_SYSTEM, parse_ibody};
use crate::error::{Error, Location, Result};
use crate::fs::Ext4;
use crate::fs::dir::write::{WDir, WLayout};
use crate::fs::map::extent_tree::init_root;
use crate::journal::transaction::Handle;

/// Size of the parent-inode field at the start of `i_block`.
const DOTDOT_SIZE: usize = 4;
/// Size of `i_block`, the first inline region with the parent field.
const IBLOCK_SIZE: usize = 60;
/// Name suffix of `system.data`.
const DATA_NAME: &[u8] = b"data";

/// The region of an inline directory that holds a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InlineRegion {
    /// `i_block` after the parent field.
    IBlock,
    /// The `system.data` value.
    Xattr,
}

/// The parent inode recorded in an inline directory.
pub(crate) fn inline_parent(dir: &Inode) -> u32 {
    le32(&dir.raw.block, 0)
}

impl Ext4 {
    /// The `system.data` value of inline directory `dir` (the second
    /// region), checked: in the inode, and `i_size` = 60 + its length.
    fn inline_value(&self, dir: &Inode) -> Result<Vec<u8>> {
        let corrupt = |why: String| Error::corrupt("inline directory", Location::Inode(dir.ino), why);
        let value = parse_ibody(dir.xattr_area(), dir.ino)?
            .into_iter()
            .find(|a| a.entry.name_index == INDEX_SYSTEM && a.entry.name == DATA_NAME)
            .ok_or_else(|| corrupt("no system.data attribute in the inode".into()))?
            .value;
        let want = (IBLOCK_SIZE + value.len()) as u64;
        if self.wdir_size(dir) != want {
            return Err(corrupt(format!("size {} where the inline data holds {want} bytes", self.wdir_size(dir))));
        }
        Ok(value)
    }

    fn inline_records<'b>(d: &WDir, buf: &'b [u8]) -> DirRecords<'b> {
        d.records(buf, Location::Inode(d.ino))
    }

    /// Finds `name` in an inline directory.
    pub(crate) fn inline_find(
        &self,
        d: &WDir,
        dir: &Inode,
        name: &[u8],
    ) -> Result<Option<(InlineRegion, FoundRecord)>> {
        if let Some(f) = find_record(Self::inline_records(d, &dir.raw.block[DOTDOT_SIZE..]), name)? {
            return Ok(Some((InlineRegion::IBlock, f)));
        }
        let value = self.inline_value(dir)?;
        Ok(find_record(Self::inline_records(d, &value), name)?.map(|f| (InlineRegion::Xattr, f)))
    }

    /// Whether an inline directory holds no entries.
    pub(crate) fn inline_is_empty(&self, d: &WDir, dir: &Inode) -> Result<bool> {
        let value = self.inline_value(dir)?;
        for region in [&dir.raw.block[DOTDOT_SIZE..], &value[..]] {
            if let Some(rec) = Self::inline_records(d, region).live().next() {
                rec?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Adds `name` to an inline directory. Returns false when it did not
    /// fit and the directory was converted to a block directory instead
    /// (the caller then adds to that).
    pub(crate) fn inline_add(
        &self,
        h: &mut Handle<'_>,
        d: &WDir,
        dir: &mut Inode,
        name: &[u8],
        ino: u32,
        file_type: u8,
    ) -> Result<bool> {
        if self.inline_find(d, dir, name)?.is_some() {
            return Err(Error::Exists);
        }
        let ft = d.stored_type(file_type);
        let loc = Location::Inode(d.ino);
        let mut iblock = dir.raw.block;
        if let Some(off) = find_room(Self::inline_records(d, &iblock[DOTDOT_SIZE..]), name)? {
            insert_record(&mut iblock[DOTDOT_SIZE..], d.fmt, off, ino, ft, name).map_err(|e| bad_inline(loc, e))?;
            dir.raw.block = iblock;
            self.write_inode(h, dir)?;
            return Ok(true);
        }
        let mut value = self.inline_value(dir)?;
        if value.is_empty() {
            let max = self.max_system_data(dir)? / 4 * 4;
            if max > MIN_REC_LEN {
                value = vec![0u8; max];
                init_empty_region(&mut value, d.fmt)?;
            }
        }
        if !value.is_empty()
            && let Some(off) = find_room(Self::inline_records(d, &value), name)?
        {
            insert_record(&mut value, d.fmt, off, ino, ft, name).map_err(|e| bad_inline(loc, e))?;
            self.set_dir_size(dir, (IBLOCK_SIZE + value.len()) as u64)?;
            self.set_system_data(h, dir, &value)?;
            return Ok(true);
        }
        self.inline_to_block(h, d, dir)?;
        Ok(false)
    }

    /// Removes `name` from an inline directory; returns its inode.
    pub(crate) fn inline_remove(&self, h: &mut Handle<'_>, d: &WDir, dir: &mut Inode, name: &[u8]) -> Result<u32> {
        let (region, found) = self.inline_find(d, dir, name)?.ok_or(Error::NotFound)?;
        self.inline_edit(h, d, dir, region, |buf| delete_record(buf, d.fmt, &found))?;
        Ok(found.inode)
    }

    /// Re-points `name` (or "..", the parent field) of an inline directory;
    /// returns the inode it named.
    pub(crate) fn inline_set(
        &self,
        h: &mut Handle<'_>,
        d: &WDir,
        dir: &mut Inode,
        name: &[u8],
        ino: u32,
        file_type: u8,
    ) -> Result<u32> {
        if name == b".." {
            let old = inline_parent(dir);
            dir.raw.block[..DOTDOT_SIZE].copy_from_slice(&ino.to_le_bytes());
            self.write_inode(h, dir)?;
            return Ok(old);
        }
        let (region, found) = self.inline_find(d, dir, name)?.ok_or(Error::NotFound)?;
        self.inline_edit(h, d, dir, region, |buf| retarget_record(buf, d.fmt, &found, ino, file_type))?;
        Ok(found.inode)
    }

    /// Applies `edit` to one region of an inline directory and stages the inode.
    fn inline_edit(
        &self,
        h: &mut Handle<'_>,
        d: &WDir,
        dir: &mut Inode,
        region: InlineRegion,
        edit: impl FnOnce(&mut [u8]) -> Result<()>,
    ) -> Result<()> {
        let loc = Location::Inode(d.ino);
        match region {
            InlineRegion::IBlock => {
                let mut iblock = dir.raw.block;
                edit(&mut iblock[DOTDOT_SIZE..]).map_err(|e| bad_inline(loc, e))?;
                dir.raw.block = iblock;
            }
            InlineRegion::Xattr => {
                let mut value = self.inline_value(dir)?;
                edit(&mut value).map_err(|e| bad_inline(loc, e))?;
                return self.set_system_data(h, dir, &value);
            }
        }
        self.write_inode(h, dir)
    }

    /// Converts an inline directory into a one-block directory (see the
    /// module documentation); stages the block and the inode.
    fn inline_to_block(&self, h: &mut Handle<'_>, d: &WDir, dir: &mut Inode) -> Result<()> {
        let value = self.inline_value(dir)?;
        let regions = [&dir.raw.block[DOTDOT_SIZE..], &value[..]];
        let mut live = Vec::new();
        for region in regions {
            for rec in Self::inline_records(d, region) {
                let (_, e) = rec?;
                if e.is_live() {
                    live.push(OwnedRecord::of(&e));
                }
            }
        }
        let ft = d.stored_type(FT_DIR);
        let mut block = vec![0u8; d.fmt.block_size as usize];
        let region_len = d.region_len();
        let dots = 2 * MIN_REC_LEN;
        Dirent { inode: dir.ino, rec_len: MIN_REC_LEN as u32, file_type: ft, name: b"." }.encode(&mut block, d.fmt)?;
        Dirent { inode: inline_parent(dir), rec_len: MIN_REC_LEN as u32, file_type: ft, name: b".." }
            .encode(&mut block[MIN_REC_LEN..], d.fmt)?;
        let body = regions[0].len() + regions[1].len();
        if dots + body <= region_len {
            // Byte for byte, so that positions (readdir cookies) carry over.
            block[dots..dots + regions[0].len()].copy_from_slice(regions[0]);
            block[dots + regions[0].len()..dots + body].copy_from_slice(regions[1]);
            extend_last_record(&mut block[..region_len], d.fmt, dots + body)?;
        } else {
            // Inline data larger than a block (huge inodes, small blocks):
            // only the live records, packed.
            write_packed(&mut block[dots..region_len], d.fmt, &live).map_err(|_| Error::NoSpace)?;
        }
        if let Some(seed) = d.seed {
            set_leaf_tail(seed, &mut block);
        }
        dir.raw.flags &= !FL_INLINE_DATA;
        dir.raw.block = [0; IBLOCK_SIZE];
        if self.sb.incompat().has(Incompat::EXTENTS) {
            dir.raw.flags |= FL_EXTENTS;
            init_root(&mut dir.raw.block);
        } else {
            dir.raw.flags &= !FL_EXTENTS;
        }
        self.set_dir_size(dir, 0)?;
        self.remove_system_data(h, dir)?;
        let mut nd = WDir { layout: WLayout::Linear, nblocks: 0, ..*d };
        self.place_dir_block(h, &mut nd, dir, 0, block)?;
        Ok(())
    }

    /// Makes the fresh directory inode `dir` an empty inline directory
    /// with parent `parent` (`ext4_try_create_inline_dir`); false, changing
    /// nothing, if the inode has no room for the `system.data` attribute.
    pub(crate) fn inline_create(&self, h: &mut Handle<'_>, dir: &mut Inode, parent: u32) -> Result<bool> {
        let fmt = self.dir_params(dir).fmt;
        let mut candidate = dir.clone();
        candidate.raw.flags = (candidate.raw.flags & !FL_EXTENTS) | FL_INLINE_DATA;
        let mut iblock = [0u8; IBLOCK_SIZE];
        iblock[..DOTDOT_SIZE].copy_from_slice(&parent.to_le_bytes());
        init_empty_region(&mut iblock[DOTDOT_SIZE..], fmt)?;
        candidate.raw.block = iblock;
        self.set_dir_size(&mut candidate, IBLOCK_SIZE as u64)?;
        match self.set_system_data(h, &mut candidate, &[]) {
            Ok(()) => {
                *dir = candidate;
                Ok(true)
            }
            // No in-inode area, or no room in it: a block directory.
            Err(Error::NoSpace) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A record edit that failed on an inline region that was validated just before.
fn bad_inline(loc: Location, e: Error) -> Error {
    Error::corrupt("inline directory", loc, e.to_string())
}
