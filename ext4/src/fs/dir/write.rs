//! Directory mutation inside a journal handle: adding, removing and
//! re-pointing entries, and the contents of a new directory.
//!
//! The caller (create, unlink, rename, mkdir) opens the handle, allocates
//! and writes the child inodes and keeps their link counts; these functions
//! keep the directory itself: its blocks (journaled through the handle:
//! directory blocks are metadata), its index, its size and `i_blocks`.
//! Timestamps of the directory are the caller's. On success the `dir`
//! passed in holds the directory inode as staged in the handle; on error
//! the handle may hold partial changes and must be dropped unfinished.
//!
//! Entries are placed and removed the way the kernel does (`fs/ext4/namei.c`,
//! `fs/ext4/inline.c`), so that the reader's `read_dir` cookies stay valid:
//! - linear directories: a new entry takes the first unused record that is
//!   long enough or the slack after a live entry, in block order (a hole
//!   gets a fresh block); else the directory grows by one block. Removal
//!   merges a record into the one before it (or marks the first record of
//!   a block unused). Surviving entries never move.
//! - a linear directory of one full block becomes an htree when the file
//!   system has `dir_index` (see [`crate::fs::dir::htree`]); other linear
//!   directories grow linearly, as in the kernel.
//! - inline directories: see [`crate::fs::dir::inline`].
//!
//! Reads go through the handle (its staged blocks first), so several
//! changes to one directory can be made in one handle. Casefolded and
//! encrypted directories are refused.

use crate::disk::dir_entry::{
    DirFormat, DirRecords, DirTail, Dirent, FT_DIR, FT_MAX, FT_UNKNOWN, FoundRecord, MIN_REC_LEN, NAME_LEN,
    delete_record, dir_csum_seed, find_record, find_room, init_empty_region, insert_record, leaf_checksum,
    retarget_record, set_leaf_tail,
};
use crate::disk::dx::{BLOCK_MASK, DxFormat};
use crate::disk::features::{Compat, Incompat};
use crate::disk::inode::{FL_CASEFOLD, FL_ENCRYPT, FL_INDEX, FL_INLINE_DATA, Inode};
use crate::error::{Error, Location, Result};
use crate::fs::Ext4;
use crate::fs::dir::inline::inline_parent;
use crate::fs::dir::read::DirEntry;
use crate::fs::map::lookup::Mapping;
use crate::journal::transaction::Handle;

/// How a directory stores its entries, decided as the reader decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WLayout {
    /// Entries in `i_block` and the `system.data` xattr.
    Inline,
    /// Blocks of entries.
    Linear,
    /// Blocks of entries under a hash index.
    Htree,
}

/// What directory mutations need to know about one directory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WDir {
    /// The directory's inode number.
    pub ino: u32,
    /// Its layout.
    pub layout: WLayout,
    /// Entry encoding.
    pub fmt: DirFormat,
    /// Index encoding.
    pub dx: DxFormat,
    /// Blocks of a block directory (`i_size` / block size).
    pub nblocks: u32,
    /// The directory's checksum seed, with metadata_csum.
    pub seed: Option<u32>,
    /// Inodes in the file system: every entry's inode lies at or below.
    pub max_ino: u32,
}

impl WDir {
    /// The error location of logical block `lblk`.
    pub fn loc(&self, lblk: u32) -> Location {
        Location::FileBlock { ino: self.ino, lblk: lblk as u64 }
    }

    /// A validating walk over the records of `buf`.
    pub fn records<'b>(&self, buf: &'b [u8], location: Location) -> DirRecords<'b> {
        DirRecords::new(buf, self.fmt, self.max_ino, location)
    }

    /// Length of a leaf block's entry area (before the checksum tail).
    pub fn region_len(&self) -> usize {
        self.fmt.block_size as usize - if self.seed.is_some() { DirTail::SIZE } else { 0 }
    }

    /// The file type code to store: none without the filetype feature.
    pub fn stored_type(&self, file_type: u8) -> u8 {
        if self.fmt.filetype { file_type } else { 0 }
    }
}

/// Checks a name for a new or removed entry: 1..=255 bytes, no '/' or
/// NUL, not "." or "..".
fn check_name(name: &[u8]) -> Result<()> {
    if name.is_empty()
        || name.len() > NAME_LEN
        || name.iter().any(|&b| b == b'/' || b == 0)
        || name == b"."
        || name == b".."
    {
        return Err(Error::InvalidName);
    }
    Ok(())
}

impl Ext4 {
    /// Adds the entry `name` → inode `ino` (of type `file_type`, an `FT_*`
    /// code) to directory `dir`, growing the directory or converting its
    /// layout when it is full (see the module documentation).
    /// [`Error::Exists`] if the name is taken, [`Error::InvalidName`] for
    /// an empty, too long, "." or ".." name or one with '/' or NUL,
    /// [`Error::NoSpace`] when no block is left or the index is at its
    /// maximum depth.
    pub fn add_entry(&self, h: &mut Handle<'_>, dir: &mut Inode, name: &[u8], ino: u32, file_type: u8) -> Result<()> {
        check_name(name)?;
        self.check_target(ino, file_type)?;
        let mut d = self.wdir(dir)?;
        match d.layout {
            WLayout::Inline => {
                if self.inline_add(h, &d, dir, name, ino, file_type)? {
                    return Ok(());
                }
                // Converted to a one-block directory: add there.
                d = self.wdir(dir)?;
                self.linear_add(h, &mut d, dir, name, ino, file_type)
            }
            WLayout::Linear => self.linear_add(h, &mut d, dir, name, ino, file_type),
            WLayout::Htree => {
                if self.dx_find(h, &d, dir, name)?.is_some() {
                    return Err(Error::Exists);
                }
                self.dx_add(h, &mut d, dir, name, ino, file_type)
            }
        }
    }

    /// Removes the entry `name` from directory `dir` and returns the inode
    /// it named; [`Error::NotFound`] if there is none. Index blocks of an
    /// htree directory are left as they are.
    pub fn remove_entry(&self, h: &mut Handle<'_>, dir: &mut Inode, name: &[u8]) -> Result<u32> {
        check_name(name)?;
        let d = self.wdir(dir)?;
        match d.layout {
            WLayout::Inline => self.inline_remove(h, &d, dir, name),
            WLayout::Linear | WLayout::Htree => {
                let (lblk, pblk, mut block, found) = self.block_find(h, &d, dir, name)?.ok_or(Error::NotFound)?;
                delete_record(&mut block[..d.region_len()], d.fmt, &found).map_err(|e| internal(&d, lblk, e))?;
                self.put_leaf(h, &d, pblk, block);
                Ok(found.inode)
            }
        }
    }

    /// Re-points the existing entry `name` of `dir` at inode `ino` with
    /// `file_type` (rename over an existing name; ".." when a directory
    /// moves to another parent) and returns the inode it named before.
    /// [`Error::NotFound`] if there is no such entry; "." cannot be changed.
    pub fn set_entry(&self, h: &mut Handle<'_>, dir: &mut Inode, name: &[u8], ino: u32, file_type: u8) -> Result<u32> {
        if name != b".." {
            check_name(name)?;
        }
        self.check_target(ino, file_type)?;
        let d = self.wdir(dir)?;
        let ft = d.stored_type(file_type);
        match d.layout {
            WLayout::Inline => self.inline_set(h, &d, dir, name, ino, ft),
            WLayout::Htree if name == b".." => self.dx_set_dotdot(h, &d, dir, ino),
            WLayout::Linear | WLayout::Htree => {
                let (lblk, pblk, mut block, found) = self.block_find(h, &d, dir, name)?.ok_or(Error::NotFound)?;
                retarget_record(&mut block[..d.region_len()], d.fmt, &found, ino, ft)
                    .map_err(|e| internal(&d, lblk, e))?;
                self.put_leaf(h, &d, pblk, block);
                Ok(found.inode)
            }
        }
    }

    /// Looks `name` up in `dir` as handle `h` sees it (its own staged
    /// changes included), like [`Ext4::lookup`]: for operations that look
    /// up after changing a directory in the same handle.
    pub fn find_entry_in(&self, h: &Handle<'_>, dir: &Inode, name: &[u8]) -> Result<Option<DirEntry>> {
        if name == b"." {
            let d = self.wdir(dir)?;
            return Ok(Some(DirEntry { ino: dir.ino, name: name.to_vec(), file_type: d.stored_type(FT_DIR) }));
        }
        if name != b".." {
            check_name(name)?;
        }
        let d = self.wdir(dir)?;
        let entry = |ino: u32, file_type: u8| {
            let file_type = if file_type < FT_MAX { file_type } else { FT_UNKNOWN };
            DirEntry { ino, name: name.to_vec(), file_type }
        };
        let found = match d.layout {
            WLayout::Inline if name == b".." => return Ok(Some(entry(inline_parent(dir), d.stored_type(FT_DIR)))),
            WLayout::Inline => return Ok(self.inline_find(&d, dir, name)?.map(|(_, r)| entry(r.inode, r.file_type))),
            WLayout::Htree if name == b".." => {
                let (_, root) = self.dx_root_in(h, &d, dir)?;
                return Ok(Some(entry(root.dotdot, d.stored_type(FT_DIR))));
            }
            WLayout::Linear | WLayout::Htree => self.block_find(h, &d, dir, name)?,
        };
        Ok(found.map(|(_, _, _, r)| entry(r.inode, r.file_type)))
    }

    /// Whether `dir` holds no entries besides "." and "..", as `h` sees it
    /// (for rmdir and rename over a directory).
    pub fn dir_is_empty_in(&self, h: &Handle<'_>, dir: &Inode) -> Result<bool> {
        let d = self.wdir(dir)?;
        match d.layout {
            WLayout::Inline => self.inline_is_empty(&d, dir),
            WLayout::Htree => self.dx_is_empty(h, &d, dir),
            WLayout::Linear => {
                for lblk in 0..d.nblocks {
                    let Some((_, block)) = self.dir_block_in(h, &d, dir, lblk)? else { continue };
                    self.check_leaf(&d, lblk, &block)?;
                    for rec in d.records(&block[..d.region_len()], d.loc(lblk)).live() {
                        let (_, e) = rec?;
                        if !(lblk == 0 && (e.name == b"." || e.name == b"..")) {
                            return Ok(false);
                        }
                    }
                }
                Ok(true)
            }
        }
    }

    /// Gives the freshly allocated directory inode `dir` (mode set, size
    /// 0, nothing mapped: an empty extent root with `FL_EXTENTS`, or an
    /// empty block map) its first contents: "." and ".." (`parent`).
    /// Like the kernel, a file system with inline_data gets an inline
    /// directory when the inode has room for the `system.data` attribute;
    /// otherwise one block holding "." and ".." (and the checksum tail) is
    /// allocated near the inode and mapped. Stages `dir`. Link counts are
    /// the caller's.
    pub fn new_directory(&self, h: &mut Handle<'_>, dir: &mut Inode, parent: u32) -> Result<()> {
        if !dir.is_dir() {
            return Err(Error::NotADirectory(dir.ino));
        }
        self.check_target(parent, FT_DIR)?;
        if dir.size() != 0 || dir.has_flag(FL_INLINE_DATA) || dir.raw.blocks_lo != 0 || dir.raw.blocks_hi != 0 {
            return Err(Error::InvalidArgument(format!("inode {} is not a fresh, empty inode", dir.ino)));
        }
        if self.sb.incompat().has(Incompat::INLINE_DATA) && self.inline_create(h, dir, parent)? {
            return Ok(());
        }
        let block = self.init_dir_block(dir, parent)?;
        let mut d = self.dir_params(dir);
        self.place_dir_block(h, &mut d, dir, 0, block)?;
        Ok(())
    }

    /// The first block of a new block directory `dir`: "." (12 bytes),
    /// ".." (`parent`) spanning the rest, and the checksum tail with
    /// metadata_csum — as `ext4_init_dot_dotdot` writes it.
    pub fn init_dir_block(&self, dir: &Inode, parent: u32) -> Result<Vec<u8>> {
        let d = self.dir_params(dir);
        let ft = d.stored_type(FT_DIR);
        let mut block = vec![0u8; d.fmt.block_size as usize];
        let region = d.region_len();
        Dirent { inode: dir.ino, rec_len: MIN_REC_LEN as u32, file_type: ft, name: b"." }.encode(&mut block, d.fmt)?;
        let dotdot = Dirent { inode: parent, rec_len: (region - MIN_REC_LEN) as u32, file_type: ft, name: b".." };
        dotdot.encode(&mut block[MIN_REC_LEN..], d.fmt)?;
        if let Some(seed) = d.seed {
            set_leaf_tail(seed, &mut block);
        }
        Ok(block)
    }

    // ----- shared helpers -----

    /// Checks an inode number and file type to be stored in an entry.
    fn check_target(&self, ino: u32, file_type: u8) -> Result<()> {
        if ino == 0 || ino > self.sb.inodes_count {
            return Err(Error::InvalidArgument(format!("inode number {ino} out of range")));
        }
        if file_type >= FT_MAX {
            return Err(Error::InvalidArgument(format!("file type code {file_type}")));
        }
        Ok(())
    }

    /// Directory parameters that do not depend on the inode's layout.
    pub(crate) fn dir_params(&self, dir: &Inode) -> WDir {
        let fmt = DirFormat { block_size: self.geo.block_size, filetype: self.sb.incompat().has(Incompat::FILETYPE) };
        let seed = self.csum_seed.map(|s| dir_csum_seed(s, dir.ino, dir.generation()));
        WDir {
            ino: dir.ino,
            layout: WLayout::Linear,
            fmt,
            dx: DxFormat {
                dir: fmt,
                metadata_csum: seed.is_some(),
                largedir: self.sb.incompat().has(Incompat::LARGEDIR),
            },
            nblocks: 0,
            seed,
            max_ino: self.sb.inodes_count,
        }
    }

    /// Directory size as the reader counts it: `i_size_high` only with largedir.
    pub(crate) fn wdir_size(&self, dir: &Inode) -> u64 {
        if self.sb.incompat().has(Incompat::LARGEDIR) { dir.size() } else { dir.raw.size_lo as u64 }
    }

    /// Sets a directory's size (`i_size_high` only with largedir, which
    /// alone lets directories reach 4 GiB).
    pub(crate) fn set_dir_size(&self, dir: &mut Inode, size: u64) -> Result<()> {
        if self.sb.incompat().has(Incompat::LARGEDIR) {
            dir.raw.size_lo = size as u32;
            dir.raw.size_hi = (size >> 32) as u32;
        } else {
            dir.raw.size_lo = u32::try_from(size).map_err(|_| Error::FileTooBig(dir.ino))?;
        }
        Ok(())
    }

    /// The mutation view of directory `dir`, checked as the reader checks it.
    pub(crate) fn wdir(&self, dir: &Inode) -> Result<WDir> {
        let ino = dir.ino;
        if !dir.is_dir() {
            return Err(Error::NotADirectory(ino));
        }
        if dir.has_flag(FL_ENCRYPT) || dir.has_flag(FL_CASEFOLD) {
            return Err(Error::Unsupported(format!("changing encrypted or casefolded directory {ino}")));
        }
        let mut d = self.dir_params(dir);
        d.layout = if dir.has_flag(FL_INLINE_DATA) {
            if !self.sb.incompat().has(Incompat::INLINE_DATA) {
                return Err(Error::corrupt("directory", Location::Inode(ino), "inline data flag without the feature"));
            }
            WLayout::Inline
        } else if dir.has_flag(FL_INDEX) && self.sb.compat().has(Compat::DIR_INDEX) {
            WLayout::Htree
        } else {
            WLayout::Linear
        };
        if d.layout != WLayout::Inline {
            let size = self.wdir_size(dir);
            let bs = d.fmt.block_size as u64;
            if size % bs != 0 {
                return Err(Error::corrupt(
                    "directory",
                    Location::Inode(ino),
                    format!("size {size} is not a multiple of the block size"),
                ));
            }
            d.nblocks = u32::try_from(size / bs).map_err(|_| {
                Error::corrupt("directory", Location::Inode(ino), format!("size {size} exceeds 2^32 blocks"))
            })?;
            if d.nblocks == 0 {
                return Err(Error::corrupt("directory", Location::Inode(ino), "directory without blocks"));
            }
        }
        Ok(d)
    }

    /// Logical block `lblk` of a block directory as `h` sees it: its
    /// physical block and contents, or `None` for a hole.
    pub(crate) fn dir_block_in(
        &self,
        h: &Handle<'_>,
        d: &WDir,
        dir: &Inode,
        lblk: u32,
    ) -> Result<Option<(u64, Vec<u8>)>> {
        match self.map_block_in(h, dir, lblk as u64)? {
            Mapping::Hole { .. } => Ok(None),
            Mapping::Mapped { unwritten: true, .. } => {
                Err(Error::corrupt("directory block", d.loc(lblk), "unwritten extent in a directory"))
            }
            Mapping::Mapped { pblk, .. } => Ok(Some((pblk, self.meta_block_in(h, pblk, "directory block")?.to_vec()))),
        }
    }

    /// Checks the tail checksum of leaf block `lblk` (with metadata_csum).
    pub(crate) fn check_leaf(&self, d: &WDir, lblk: u32, block: &[u8]) -> Result<()> {
        let Some(seed) = d.seed else { return Ok(()) };
        match DirTail::find(block) {
            None => Err(Error::corrupt("directory block", d.loc(lblk), "no checksum tail")),
            Some(t) if t.checksum != leaf_checksum(seed, block) => {
                Err(Error::Checksum { what: "directory block", location: d.loc(lblk) })
            }
            Some(_) => Ok(()),
        }
    }

    /// A leaf block `lblk` as `h` sees it, checked; a hole is corrupt.
    pub(crate) fn leaf_in(&self, h: &Handle<'_>, d: &WDir, dir: &Inode, lblk: u32) -> Result<(u64, Vec<u8>)> {
        let (pblk, block) = self
            .dir_block_in(h, d, dir, lblk)?
            .ok_or_else(|| Error::corrupt("directory block", d.loc(lblk), "directory block is a hole"))?;
        self.check_leaf(d, lblk, &block)?;
        Ok((pblk, block))
    }

    /// Stages leaf `block` at physical block `pblk`, with a fresh tail
    /// checksum under metadata_csum.
    pub(crate) fn put_leaf(&self, h: &mut Handle<'_>, d: &WDir, pblk: u64, mut block: Vec<u8>) {
        if let Some(seed) = d.seed {
            set_leaf_tail(seed, &mut block);
        }
        h.write(pblk, block);
    }

    /// Allocates a block for logical block `lblk` of the directory (near
    /// the block before it), stages `block` there as it is (tails and
    /// checksums already set), maps it, and grows `i_size` when `lblk` is
    /// past the end. Stages `dir`.
    pub(crate) fn place_dir_block(
        &self,
        h: &mut Handle<'_>,
        d: &mut WDir,
        dir: &mut Inode,
        lblk: u32,
        block: Vec<u8>,
    ) -> Result<u64> {
        if d.layout == WLayout::Htree && lblk > BLOCK_MASK {
            return Err(Error::FileTooBig(dir.ino));
        }
        let bs = d.fmt.block_size as u64;
        let goal = match lblk.checked_sub(1).map(|prev| self.map_block_in(h, dir, prev as u64)).transpose()? {
            Some(Mapping::Mapped { pblk, .. }) => pblk + 1,
            _ => self.data_goal(dir.ino, false),
        };
        let (pblk, _) = self.alloc_blocks(h, goal, 1)?;
        h.write(pblk, block);
        if lblk >= d.nblocks {
            let nblocks = lblk.checked_add(1).ok_or(Error::FileTooBig(dir.ino))?;
            self.set_dir_size(dir, nblocks as u64 * bs)?;
            d.nblocks = nblocks;
        }
        self.map_blocks_in(h, dir, lblk as u64, pblk, 1, false)?;
        Ok(pblk)
    }

    /// A new leaf block holding only the entry `name`.
    fn leaf_with(&self, d: &WDir, name: &[u8], ino: u32, file_type: u8) -> Result<Vec<u8>> {
        let mut block = vec![0u8; d.fmt.block_size as usize];
        let region = &mut block[..d.region_len()];
        init_empty_region(region, d.fmt)?;
        insert_record(region, d.fmt, 0, ino, d.stored_type(file_type), name)?;
        if let Some(seed) = d.seed {
            set_leaf_tail(seed, &mut block);
        }
        Ok(block)
    }

    /// Adds to a linear directory: the first block with room (or the first
    /// hole), else converts a full single-block directory to an htree
    /// (dir_index), else appends a block.
    fn linear_add(
        &self,
        h: &mut Handle<'_>,
        d: &mut WDir,
        dir: &mut Inode,
        name: &[u8],
        ino: u32,
        file_type: u8,
    ) -> Result<()> {
        let mut room = None;
        let mut hole = None;
        for lblk in 0..d.nblocks {
            let Some((pblk, block)) = self.dir_block_in(h, d, dir, lblk)? else {
                if room.is_none() && hole.is_none() {
                    hole = Some(lblk);
                }
                continue;
            };
            self.check_leaf(d, lblk, &block)?;
            let region = &block[..d.region_len()];
            if find_record(d.records(region, d.loc(lblk)), name)?.is_some() {
                return Err(Error::Exists);
            }
            if room.is_none() && hole.is_none() {
                if let Some(off) = find_room(d.records(region, d.loc(lblk)), name)? {
                    room = Some((lblk, pblk, block, off));
                }
            }
        }
        if let Some((lblk, pblk, mut block, off)) = room {
            insert_record(&mut block[..d.region_len()], d.fmt, off, ino, d.stored_type(file_type), name)
                .map_err(|e| internal(d, lblk, e))?;
            self.put_leaf(h, d, pblk, block);
            return Ok(());
        }
        if let Some(lblk) = hole {
            let block = self.leaf_with(d, name, ino, file_type)?;
            self.place_dir_block(h, d, dir, lblk, block)?;
            return Ok(());
        }
        if d.nblocks == 1 && self.make_indexed_dir(h, d, dir)? {
            return self.dx_add(h, d, dir, name, ino, file_type);
        }
        let block = self.leaf_with(d, name, ino, file_type)?;
        let lblk = d.nblocks;
        self.place_dir_block(h, d, dir, lblk, block)?;
        Ok(())
    }

    /// Finds `name` (or "..", in a linear directory) in a block directory.
    fn block_find(&self, h: &Handle<'_>, d: &WDir, dir: &Inode, name: &[u8]) -> Result<Option<FoundIn>> {
        match d.layout {
            WLayout::Htree => self.dx_find(h, d, dir, name),
            _ if name == b".." => self.dotdot_record(h, d, dir),
            _ => self.linear_find(h, d, dir, name),
        }
    }

    /// Finds `name` in a linear directory: (logical block, physical block,
    /// block contents, record).
    fn linear_find(&self, h: &Handle<'_>, d: &WDir, dir: &Inode, name: &[u8]) -> Result<Option<FoundIn>> {
        for lblk in 0..d.nblocks {
            let Some((pblk, block)) = self.dir_block_in(h, d, dir, lblk)? else { continue };
            self.check_leaf(d, lblk, &block)?;
            if let Some(found) = find_record(d.records(&block[..d.region_len()], d.loc(lblk)), name)? {
                return Ok(Some((lblk, pblk, block, found)));
            }
        }
        Ok(None)
    }

    /// The ".." record of a linear directory: the second record of block 0.
    fn dotdot_record(&self, h: &Handle<'_>, d: &WDir, dir: &Inode) -> Result<Option<FoundIn>> {
        let (pblk, block) = self.leaf_in(h, d, dir, 0)?;
        let mut recs = d.records(&block[..d.region_len()], d.loc(0));
        let first = recs.next().transpose()?;
        let second = recs.next().transpose()?;
        match (first, second) {
            (Some((0, dot)), Some((off, dotdot))) if dot.name == b"." && dotdot.name == b".." => {
                let found = FoundRecord { off, prev: Some(0), inode: dotdot.inode, file_type: dotdot.file_type };
                Ok(Some((0, pblk, block, found)))
            }
            _ => Err(Error::corrupt("directory", d.loc(0), "block 0 does not start with '.' and '..'")),
        }
    }
}

/// A record found in a directory block: (logical block, physical block,
/// block contents, record).
pub(crate) type FoundIn = (u32, u64, Vec<u8>, FoundRecord);

/// A record edit that failed on a block that was validated just before:
/// reported as corruption of that block.
pub(crate) fn internal(d: &WDir, lblk: u32, e: Error) -> Error {
    Error::corrupt("directory block", d.loc(lblk), e.to_string())
}
