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
//! - The in-inode xattr area is rewritten whole when `system.data` changes
//!   size (values packed from the end, as e2fsprogs lays them out); the
//!   entry hash of `system.data` is 0, as the kernel leaves it for
//!   in-inode attributes whose value it edits in place.
//!
//! New directories on file systems with inline_data start inline, like
//! the kernel's: [`Ext4::new_directory`](super::Ext4::new_directory).

use super::Ext4;
use super::dir_write::{WDir, WLayout};
use super::extent_tree::init_root;
use crate::disk::codec::le32;
use crate::disk::dir_entry::{
    DirRecords, Dirent, FT_DIR, FoundRecord, MIN_REC_LEN, OwnedRecord, delete_record, extend_last_record, find_record,
    find_room, init_empty_region, insert_record, retarget_record, set_leaf_tail, write_packed,
};
use crate::disk::features::Incompat;
use crate::disk::inode::{FL_EXTENTS, FL_INLINE_DATA, GOOD_OLD_INODE_SIZE, Inode};
use crate::disk::xattr::{INDEX_SYSTEM, IbodyHeader, RawXattr, XATTR_MAGIC, XattrEntry, pad, parse_ibody};
use crate::error::{Error, Location, Result};
use crate::journal::transaction::Handle;

/// Size of the parent-inode field at the start of `i_block`.
const DOTDOT_SIZE: usize = 4;
/// Size of `i_block`, the first inline region with the parent field.
const IBLOCK_SIZE: usize = 60;
/// Name suffix of `system.data`.
const DATA_NAME: &[u8] = b"data";
/// Size of the entry list terminator of an xattr area.
const TERMINATOR_LEN: usize = 4;

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

/// The in-inode attributes of an inline directory and which is `system.data`.
struct InlineAttrs {
    attrs: Vec<RawXattr>,
    data: usize,
}

impl InlineAttrs {
    fn value(&self) -> &[u8] {
        &self.attrs[self.data].value
    }

    /// Replaces the `system.data` value (its hash is then 0, see the module doc).
    fn set_value(&mut self, value: Vec<u8>) {
        let a = &mut self.attrs[self.data];
        a.value = value;
        a.entry.hash = 0;
    }
}

/// Start of the in-inode xattr area in the inode record.
fn area_start(dir: &Inode) -> usize {
    GOOD_OLD_INODE_SIZE + dir.raw.extra_isize as usize
}

/// Rewrites the in-inode xattr area of `dir` to hold `attrs`: the magic,
/// the entries in order, the terminator, the values packed from the end.
fn write_ibody(dir: &mut Inode, attrs: &[RawXattr]) -> Result<()> {
    let start = area_start(dir);
    let no_room = || Error::InvalidArgument(format!("inode {}: attributes do not fit the inode", dir.ino));
    let len =
        dir.bytes.len().checked_sub(start).filter(|&l| l >= IbodyHeader::SIZE + TERMINATOR_LEN).ok_or_else(no_room)?;
    let mut area = vec![0u8; len];
    IbodyHeader { magic: XATTR_MAGIC }.encode(&mut area);
    let (mut entry_pos, mut value_end) = (IbodyHeader::SIZE, len);
    for a in attrs {
        let mut e: XattrEntry = a.entry.clone();
        e.value_size = a.value.len() as u32;
        e.value_offs = 0;
        if !a.value.is_empty() {
            value_end = value_end.checked_sub(pad(a.value.len())).ok_or_else(no_room)?;
            e.value_offs = u16::try_from(value_end - IbodyHeader::SIZE).map_err(|_| no_room())?;
        }
        if entry_pos + e.on_disk_len() + TERMINATOR_LEN > value_end {
            return Err(no_room());
        }
        area[value_end..value_end + a.value.len()].copy_from_slice(&a.value);
        entry_pos += e.serialize(&mut area[entry_pos..]);
    }
    dir.bytes[start..].copy_from_slice(&area);
    Ok(())
}

/// Largest `system.data` value the in-inode area can hold besides the
/// other attributes (a multiple of 4).
fn max_data_len(dir: &Inode, ia: &InlineAttrs) -> usize {
    let storage = dir.bytes.len().saturating_sub(area_start(dir) + IbodyHeader::SIZE);
    let mut used = TERMINATOR_LEN;
    for (i, a) in ia.attrs.iter().enumerate() {
        used += a.entry.on_disk_len();
        if i != ia.data {
            used += pad(a.value.len());
        }
    }
    storage.saturating_sub(used) / 4 * 4
}

impl Ext4 {
    /// The in-inode attributes of inline directory `dir`, checked: a
    /// `system.data` entry in the inode and `i_size` = 60 + its length.
    fn inline_attrs(&self, dir: &Inode) -> Result<InlineAttrs> {
        let attrs = parse_ibody(dir.xattr_area(), dir.ino)?;
        let corrupt = |why: String| Error::corrupt("inline directory", Location::Inode(dir.ino), why);
        let data = attrs
            .iter()
            .position(|a| a.entry.name_index == INDEX_SYSTEM && a.entry.name == DATA_NAME)
            .ok_or_else(|| corrupt("no system.data attribute in the inode".into()))?;
        let ia = InlineAttrs { attrs, data };
        let want = (IBLOCK_SIZE + ia.value().len()) as u64;
        if self.wdir_size(dir) != want {
            return Err(corrupt(format!("size {} where the inline data holds {want} bytes", self.wdir_size(dir))));
        }
        Ok(ia)
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
        let ia = self.inline_attrs(dir)?;
        Ok(find_record(Self::inline_records(d, ia.value()), name)?.map(|f| (InlineRegion::Xattr, f)))
    }

    /// Whether an inline directory holds no entries.
    pub(crate) fn inline_is_empty(&self, d: &WDir, dir: &Inode) -> Result<bool> {
        let ia = self.inline_attrs(dir)?;
        for region in [&dir.raw.block[DOTDOT_SIZE..], ia.value()] {
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
        let mut ia = self.inline_attrs(dir)?;
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
        let mut value = ia.value().to_vec();
        if value.is_empty() {
            let max = max_data_len(dir, &ia);
            if max > MIN_REC_LEN {
                value = vec![0u8; max];
                init_empty_region(&mut value, d.fmt)?;
            }
        }
        if !value.is_empty()
            && let Some(off) = find_room(Self::inline_records(d, &value), name)?
        {
            insert_record(&mut value, d.fmt, off, ino, ft, name).map_err(|e| bad_inline(loc, e))?;
            let size = (IBLOCK_SIZE + value.len()) as u64;
            ia.set_value(value);
            write_ibody(dir, &ia.attrs)?;
            self.set_dir_size(dir, size)?;
            self.write_inode(h, dir)?;
            return Ok(true);
        }
        self.inline_to_block(h, d, dir, ia)?;
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
                let mut ia = self.inline_attrs(dir)?;
                let mut value = ia.value().to_vec();
                edit(&mut value).map_err(|e| bad_inline(loc, e))?;
                ia.set_value(value);
                write_ibody(dir, &ia.attrs)?;
            }
        }
        self.write_inode(h, dir)
    }

    /// Converts an inline directory into a one-block directory (see the
    /// module documentation); stages the block and the inode.
    fn inline_to_block(&self, h: &mut Handle<'_>, d: &WDir, dir: &mut Inode, mut ia: InlineAttrs) -> Result<()> {
        let regions = [&dir.raw.block[DOTDOT_SIZE..], ia.value()];
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
        ia.attrs.remove(ia.data);
        write_ibody(dir, &ia.attrs)?;
        dir.raw.flags &= !FL_INLINE_DATA;
        dir.raw.block = [0; IBLOCK_SIZE];
        if self.sb.incompat().has(Incompat::EXTENTS) {
            dir.raw.flags |= FL_EXTENTS;
            init_root(&mut dir.raw.block);
        } else {
            dir.raw.flags &= !FL_EXTENTS;
        }
        self.set_dir_size(dir, 0)?;
        let mut nd = WDir { layout: WLayout::Linear, nblocks: 0, ..*d };
        self.place_dir_block(h, &mut nd, dir, 0, block)?;
        Ok(())
    }

    /// Makes the fresh directory inode `dir` an empty inline directory
    /// with parent `parent` (`ext4_try_create_inline_dir`); false, changing
    /// nothing, if the inode has no room for the `system.data` attribute.
    pub(crate) fn inline_create(&self, h: &mut Handle<'_>, dir: &mut Inode, parent: u32) -> Result<bool> {
        if dir.bytes.len() <= area_start(dir) {
            return Ok(false);
        }
        let mut attrs = parse_ibody(dir.xattr_area(), dir.ino)?;
        if attrs.iter().any(|a| a.entry.name_index == INDEX_SYSTEM && a.entry.name == DATA_NAME) {
            return Err(Error::InvalidArgument(format!("inode {} already has system.data", dir.ino)));
        }
        let entry = XattrEntry {
            name_index: INDEX_SYSTEM,
            value_offs: 0,
            value_inum: 0,
            value_size: 0,
            hash: 0,
            name: DATA_NAME.to_vec(),
        };
        attrs.push(RawXattr { entry, value: Vec::new() });
        let mut candidate = dir.clone();
        if write_ibody(&mut candidate, &attrs).is_err() {
            return Ok(false);
        }
        let d = self.dir_params(&candidate);
        candidate.raw.flags = (candidate.raw.flags & !FL_EXTENTS) | FL_INLINE_DATA;
        let mut iblock = [0u8; IBLOCK_SIZE];
        iblock[..DOTDOT_SIZE].copy_from_slice(&parent.to_le_bytes());
        init_empty_region(&mut iblock[DOTDOT_SIZE..], d.fmt)?;
        candidate.raw.block = iblock;
        self.set_dir_size(&mut candidate, IBLOCK_SIZE as u64)?;
        *dir = candidate;
        self.write_inode(h, dir)?;
        Ok(true)
    }
}

/// A record edit that failed on an inline region that was validated just before.
fn bad_inline(loc: Location, e: Error) -> Error {
    Error::corrupt("inline directory", loc, e.to_string())
}
