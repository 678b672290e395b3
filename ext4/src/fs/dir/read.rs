//! Directory reading and lookup, for the three directory layouts:
//! - linear: blocks of entries, walked in order;
//! - hash-indexed (htree): a dx tree over leaf blocks of entries, used for
//!   lookup by name hash and for hash-ordered readdir;
//! - inline: entries in `i_block` and the `system.data` xattr.
//!
//! Choices where the kernel is lenient or ambiguous:
//! - a hole in a linear directory is skipped (as the kernel does); a hole
//!   where the htree points is corrupt;
//! - a corrupt htree is an error, not a reason to fall back to a linear
//!   scan (the kernel falls back; we report what e2fsck would fix);
//! - lookups in casefolded or encrypted directories are unsupported, as
//!   is reading encrypted directories; casefolded ones are read linearly.

use crate::disk::dir_entry::{
    DirFormat, DirRecords, DirTail, Dirent, FT_DIR, FT_UNKNOWN, MIN_REC_LEN, NAME_LEN, dir_csum_seed, leaf_checksum,
};
use crate::disk::dx::{DxFormat, DxNode, DxRoot, DxTable, NODE_TABLE_OFFSET, ROOT_TABLE_OFFSET, verify_dx_checksum};
use crate::disk::dx_hash::{DxHash, HashVersion, dx_hash};
use crate::disk::features::{Compat, Incompat};
use crate::disk::inode::{FL_CASEFOLD, FL_ENCRYPT, FL_INDEX, FL_INLINE_DATA, Inode};
use crate::error::{Error, Location, Result};
use crate::fs::Ext4;
use crate::fs::map::lookup::Mapping;
use std::collections::HashSet;
use std::sync::Arc;

/// A directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number.
    pub ino: u32,
    /// Name bytes.
    pub name: Vec<u8>,
    /// File type code from the entry (`EXT4_FT_*`; 0 when unknown).
    pub file_type: u8,
}

/// Size of the inline parent-inode field that stands in for "." and "..".
const INLINE_DOTDOT_SIZE: usize = 4;
/// Size of `i_block`, the first inline region.
const INLINE_IBLOCK_SIZE: usize = 60;
/// Inline positions are those the entries get when the directory is
/// converted to a block ("." and ".." taking 12 bytes each instead of the
/// 4-byte parent field): inline offset + 20.
const INLINE_POS_SHIFT: u64 = 2 * MIN_REC_LEN as u64 - INLINE_DOTDOT_SIZE as u64;
/// Readdir position of ".." in a linear or inline directory.
const LINEAR_DOTDOT_POS: u64 = MIN_REC_LEN as u64;
/// Readdir position of ".." in an htree directory.
const HTREE_DOTDOT_POS: u64 = 1;
/// Offset added to hash keys so that they follow "." and "..".
const HTREE_KEY_BASE: u64 = 2;
/// Largest tie rank a hash position can encode.
const MAX_RANK: u64 = 0xffff;
/// Largest `major >> 1` of any name (the kernel never hands out 0xfffffffe).
const MAX_MAJOR_HALF: u64 = 0x7fff_fffe;

/// How a directory stores its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Inline,
    Linear,
    Htree,
}

/// What every directory operation needs to know about one directory.
struct Dir<'a> {
    inode: &'a Inode,
    layout: Layout,
    fmt: DirFormat,
    /// Number of blocks (i_size / block size) of a block directory.
    nblocks: u32,
    /// Per-directory checksum seed, with metadata_csum.
    csum_seed: Option<u32>,
    max_ino: u32,
}

impl Dir<'_> {
    fn ino(&self) -> u32 {
        self.inode.ino
    }

    fn loc(&self, lblk: u32) -> Location {
        Location::FileBlock { ino: self.inode.ino, lblk: lblk as u64 }
    }

    fn records<'b>(&self, buf: &'b [u8], location: Location) -> DirRecords<'b> {
        DirRecords::new(buf, self.fmt, self.max_ino, location)
    }
}

fn to_entry(d: &Dirent<'_>) -> DirEntry {
    DirEntry { ino: d.inode, name: d.name.to_vec(), file_type: d.file_type_or_unknown() }
}

/// A "." or ".." entry not read from a record (inline directories, the
/// dx root), typed like a record would be.
fn dot_entry(d: &Dir<'_>, ino: u32, name: &[u8]) -> DirEntry {
    DirEntry { ino, name: name.to_vec(), file_type: if d.fmt.filetype { FT_DIR } else { FT_UNKNOWN } }
}

/// An entry of an htree leaf with its name hash, for hash-ordered readdir.
struct Hashed {
    hash: DxHash,
    entry: DirEntry,
}

/// One level of a descent through the index: the block, its table and
/// the entry followed.
struct Frame {
    lblk: u32,
    table: DxTable,
    at: usize,
}

/// A position in the htree: the path from the root to a leaf. Every
/// block it reads is remembered, so a walk reads each block at most once
/// and a tree that points back into itself is detected.
struct Cursor {
    frames: Vec<Frame>,
    visited: HashSet<u32>,
}

impl Cursor {
    fn bottom(&self) -> &Frame {
        self.frames.last().expect("a cursor always has the root frame")
    }

    /// The block the bottom frame points to.
    fn target(&self) -> u32 {
        let f = self.bottom();
        f.table.entries[f.at].lblk()
    }
}

impl Ext4 {
    /// Finds `name` in directory `dir`: `Ok(None)` if it is absent.
    /// "." is the directory itself; ".." comes from the directory's first
    /// block (or the inline parent field). Hash-indexed directories are
    /// searched through their index, others linearly.
    pub fn lookup(&self, dir: &Inode, name: &[u8]) -> Result<Option<DirEntry>> {
        if name.is_empty() || name.len() > NAME_LEN || name.iter().any(|&b| b == b'/' || b == 0) {
            return Err(Error::InvalidName);
        }
        let d = self.dir_info(dir)?;
        if name == b"." || name == b".." {
            return self.lookup_dots(&d, name).map(Some);
        }
        if dir.has_flag(FL_CASEFOLD) {
            return Err(Error::Unsupported(format!("lookup in casefolded directory {}", d.ino())));
        }
        match d.layout {
            Layout::Inline => {
                let data = self.inline_dir(&d)?;
                for (region, _, loc) in inline_regions(&d, &data) {
                    for rec in d.records(region, loc).live() {
                        let (_, e) = rec?;
                        if e.name == name {
                            return Ok(Some(to_entry(&e)));
                        }
                    }
                }
                Ok(None)
            }
            Layout::Linear => {
                let mut found = None;
                self.walk_linear(&d, 0, &mut |_, e| {
                    if e.name == name {
                        found = Some(to_entry(e));
                        false
                    } else {
                        true
                    }
                })?;
                Ok(found)
            }
            Layout::Htree => self.lookup_htree(&d, name),
        }
    }

    /// Calls `f(entry, next_offset)` for each entry from cookie `offset`
    /// (0 = start) until `f` returns false or the directory ends.
    ///
    /// `next_offset` is the cookie that resumes right after that entry: it
    /// is never 0 and always below 2^63 (it fits an `i64`, as FUSE, NFS
    /// and the kernel's 63-bit positions need). Cookies are positions, not
    /// indexes, so they stay meaningful when the directory changes:
    /// resuming returns the entries at or after the position, whichever
    /// block holds them by then. Encoding:
    /// - linear directories: the byte offset in the directory of the
    ///   record after the entry ("." and ".." are the first two records,
    ///   at 0 and 12). Resuming rescans that block from its start, so an
    ///   offset that is no longer a record boundary still works.
    /// - inline directories: the offset the next record would have once
    ///   the directory is converted to a block: "." is at 0, ".." at 12,
    ///   an entry at inline byte `o` (after the 4-byte parent field) at
    ///   `o + 20` — so cookies survive that conversion.
    /// - htree directories: "." is at 0 and ".." at 1; an entry with name
    ///   hash (major, minor) is at `2 + ((major >> 1) << 32 | (minor >> 16)
    ///   << 16 | rank)`, where rank counts the entries before it with the
    ///   same major hash and minor high half (ordered by minor hash, then
    ///   name). Entries are returned in that order, and a cookie is the
    ///   position of its entry plus one. Positions do not depend on which
    ///   block holds an entry, so they survive leaf splits; resuming
    ///   descends the index to the cookie's hash. Ranks only shift when
    ///   entries with the same hash prefix come or go, which is rare. In a
    ///   run of more than 65536 entries with equal prefixes the rest share
    ///   the last rank: one pass returns them all, resuming among them
    ///   skips to the next prefix (it never loops).
    pub fn read_dir(&self, dir: &Inode, offset: u64, f: &mut dyn FnMut(&DirEntry, u64) -> bool) -> Result<()> {
        let d = self.dir_info(dir)?;
        match d.layout {
            Layout::Inline => self.read_dir_inline(&d, offset, f),
            Layout::Htree if !dir.has_flag(FL_CASEFOLD) => self.read_dir_htree(&d, offset, f),
            Layout::Htree | Layout::Linear => {
                self.walk_linear(&d, offset, &mut |pos, e| f(&to_entry(e), pos + e.rec_len as u64))
            }
        }
    }

    /// Size of a directory: `i_size_high` counts only with largedir
    /// (before it, that field was `i_dir_acl`).
    fn dir_size(&self, dir: &Inode) -> u64 {
        if self.sb.incompat().has(Incompat::LARGEDIR) { dir.size() } else { dir.raw.size_lo as u64 }
    }

    fn dir_info<'a>(&self, dir: &'a Inode) -> Result<Dir<'a>> {
        let ino = dir.ino;
        if !dir.is_dir() {
            return Err(Error::NotADirectory(ino));
        }
        if dir.has_flag(FL_ENCRYPT) {
            return Err(Error::Unsupported(format!("encrypted directory {ino}")));
        }
        let fmt = DirFormat { block_size: self.geo.block_size, filetype: self.sb.incompat().has(Incompat::FILETYPE) };
        let layout = if dir.has_flag(FL_INLINE_DATA) {
            if !self.sb.incompat().has(Incompat::INLINE_DATA) {
                return Err(Error::corrupt("directory", Location::Inode(ino), "inline data flag without the feature"));
            }
            Layout::Inline
        } else if dir.has_flag(FL_INDEX) && self.sb.compat().has(Compat::DIR_INDEX) {
            Layout::Htree
        } else {
            Layout::Linear
        };
        let mut nblocks = 0;
        if layout != Layout::Inline {
            let size = self.dir_size(dir);
            let bs = fmt.block_size as u64;
            if size % bs != 0 {
                return Err(Error::corrupt(
                    "directory",
                    Location::Inode(ino),
                    format!("size {size} is not a multiple of the block size"),
                ));
            }
            nblocks = u32::try_from(size / bs).map_err(|_| {
                Error::corrupt("directory", Location::Inode(ino), format!("size {size} exceeds 2^32 blocks"))
            })?;
        }
        Ok(Dir {
            inode: dir,
            layout,
            fmt,
            nblocks,
            csum_seed: self.csum_seed.map(|s| dir_csum_seed(s, ino, dir.generation())),
            max_ino: self.sb.inodes_count,
        })
    }

    fn dx_format(&self, d: &Dir<'_>) -> DxFormat {
        DxFormat {
            dir: d.fmt,
            metadata_csum: d.csum_seed.is_some(),
            largedir: self.sb.incompat().has(Incompat::LARGEDIR),
        }
    }

    /// Reads logical block `lblk` of a directory through the metadata
    /// cache; `None` for a hole.
    fn dir_block(&self, d: &Dir<'_>, lblk: u32) -> Result<Option<Arc<[u8]>>> {
        match self.map_block(d.inode, lblk as u64)? {
            Mapping::Hole { .. } => Ok(None),
            Mapping::Mapped { pblk, unwritten, .. } => self.read_mapped_block(d, lblk, pblk, unwritten).map(Some),
        }
    }

    /// Reads directory block `lblk`, mapped to `pblk`.
    fn read_mapped_block(&self, d: &Dir<'_>, lblk: u32, pblk: u64, unwritten: bool) -> Result<Arc<[u8]>> {
        if unwritten {
            return Err(Error::corrupt("directory block", d.loc(lblk), "unwritten extent in a directory"));
        }
        self.read_meta_block(pblk, "directory block")
    }

    /// The entry area of a leaf block: with metadata_csum, everything
    /// before the checksum tail, whose checksum must match.
    fn leaf_region<'b>(&self, d: &Dir<'_>, lblk: u32, block: &'b [u8]) -> Result<&'b [u8]> {
        let Some(seed) = d.csum_seed else {
            return Ok(block);
        };
        let Some(tail) = DirTail::find(block) else {
            return Err(Error::corrupt("directory block", d.loc(lblk), "no checksum tail"));
        };
        if tail.checksum != leaf_checksum(seed, block) {
            return Err(Error::Checksum { what: "directory block", location: d.loc(lblk) });
        }
        Ok(&block[..block.len() - DirTail::SIZE])
    }

    /// Checks the `dx_tail` checksum of an index block.
    fn check_dx_csum(&self, d: &Dir<'_>, lblk: u32, block: &[u8], table_offset: usize) -> Result<()> {
        match d.csum_seed {
            Some(seed) if !verify_dx_checksum(seed, block, table_offset) => {
                Err(Error::Checksum { what: "directory index", location: d.loc(lblk) })
            }
            _ => Ok(()),
        }
    }

    /// "." and "..": the first two records of block 0 (the dx root's fake
    /// entries in an htree directory) or the inline parent field.
    fn lookup_dots(&self, d: &Dir<'_>, name: &[u8]) -> Result<DirEntry> {
        let ino = d.ino();
        let missing = || Error::corrupt("directory", Location::Inode(ino), "no '.' or '..' entry");
        if name == b"." {
            return Ok(dot_entry(d, ino, name));
        }
        match d.layout {
            Layout::Inline => {
                let data = self.inline_dir(d)?;
                Ok(dot_entry(d, inline_parent(&data), name))
            }
            Layout::Htree => Ok(dot_entry(d, self.htree_root(d)?.dotdot, name)),
            Layout::Linear => {
                if d.nblocks == 0 {
                    return Err(missing());
                }
                let block = self.dir_block(d, 0)?.ok_or_else(missing)?;
                let region = self.leaf_region(d, 0, &block)?;
                for rec in d.records(region, d.loc(0)).live().take(2) {
                    let (_, e) = rec?;
                    if e.name == name {
                        return Ok(to_entry(&e));
                    }
                }
                Err(missing())
            }
        }
    }

    /// Walks the blocks of a directory in order from byte position
    /// `start`, calling `f(position, record)` for each live record at or
    /// after it, until `f` returns false. Holes are skipped. In a
    /// casefolded htree directory read this way, index blocks show only
    /// the root's "." and "..".
    fn walk_linear(&self, d: &Dir<'_>, start: u64, f: &mut dyn FnMut(u64, &Dirent<'_>) -> bool) -> Result<()> {
        let bs = d.fmt.block_size as u64;
        let indexed = d.layout == Layout::Htree;
        let mut lblk = start / bs;
        let mut skip_below = (start % bs) as usize;
        while lblk < d.nblocks as u64 {
            let l = lblk as u32;
            let block = match self.map_block(d.inode, lblk)? {
                Mapping::Hole { len } => {
                    lblk += len.max(1);
                    skip_below = 0;
                    continue;
                }
                Mapping::Mapped { pblk, unwritten, .. } => self.read_mapped_block(d, l, pblk, unwritten)?,
            };
            let first = Dirent::decode(&block, d.fmt);
            let is_index = indexed && (l == 0 || first.is_some_and(|e| e.inode == 0 && e.rec_len as u64 == bs));
            let region = if is_index {
                self.check_dx_csum(d, l, &block, if l == 0 { ROOT_TABLE_OFFSET } else { NODE_TABLE_OFFSET })?;
                &block[..]
            } else {
                self.leaf_region(d, l, &block)?
            };
            for rec in d.records(region, d.loc(l)).live() {
                let (off, e) = rec?;
                if off >= skip_below && !f(lblk * bs + off as u64, &e) {
                    return Ok(());
                }
            }
            skip_below = 0;
            lblk += 1;
        }
        Ok(())
    }

    /// The inline contents of a directory, clamped to `i_size` but never
    /// shorter than `i_block`.
    fn inline_dir(&self, d: &Dir<'_>) -> Result<Vec<u8>> {
        let mut data = self.inline_data(d.inode)?;
        if data.len() < INLINE_IBLOCK_SIZE {
            return Err(Error::corrupt("inline directory", Location::Inode(d.ino()), "shorter than i_block"));
        }
        let size = self.dir_size(d.inode).clamp(INLINE_IBLOCK_SIZE as u64, data.len() as u64);
        data.truncate(size as usize);
        Ok(data)
    }

    fn read_dir_inline(&self, d: &Dir<'_>, offset: u64, f: &mut dyn FnMut(&DirEntry, u64) -> bool) -> Result<()> {
        let data = self.inline_dir(d)?;
        if offset == 0 && !f(&dot_entry(d, d.ino(), b"."), LINEAR_DOTDOT_POS) {
            return Ok(());
        }
        let first_entry_pos = INLINE_DOTDOT_SIZE as u64 + INLINE_POS_SHIFT;
        if offset <= LINEAR_DOTDOT_POS && !f(&dot_entry(d, inline_parent(&data), b".."), first_entry_pos) {
            return Ok(());
        }
        for (region, base, loc) in inline_regions(d, &data) {
            for rec in d.records(region, loc).live() {
                let (off, e) = rec?;
                let pos = (base + off) as u64 + INLINE_POS_SHIFT;
                if pos >= offset && !f(&to_entry(&e), pos + e.rec_len as u64) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Reads, checks and parses the dx root of an htree directory.
    fn htree_root(&self, d: &Dir<'_>) -> Result<DxRoot> {
        if d.nblocks < 2 {
            return Err(Error::corrupt("directory index", d.loc(0), "indexed directory of fewer than 2 blocks"));
        }
        let block =
            self.dir_block(d, 0)?.ok_or_else(|| Error::corrupt("directory index", d.loc(0), "root is a hole"))?;
        self.check_dx_csum(d, 0, &block, ROOT_TABLE_OFFSET)?;
        DxRoot::parse(&block, self.dx_format(d), d.loc(0))
    }

    /// The hash function of an htree: the root's version, made unsigned
    /// when the superblock says names hash as unsigned chars.
    fn hash_version(&self, d: &Dir<'_>, root: &DxRoot) -> Result<HashVersion> {
        HashVersion::for_directory(root.info.hash_version, self.sb.hash_unsigned()).ok_or_else(|| {
            Error::corrupt("directory index", d.loc(0), format!("hash version {}", root.info.hash_version))
        })
    }

    /// Checks that `lblk` may be visited by `cursor` next: inside the
    /// directory, not the root, not seen before in this walk.
    fn claim_block(&self, d: &Dir<'_>, cursor: &mut Cursor, lblk: u32, from: u32) -> Result<()> {
        if lblk == 0 || lblk >= d.nblocks || !cursor.visited.insert(lblk) {
            return Err(Error::corrupt(
                "directory index",
                d.loc(from),
                format!("entry points to block {lblk}: outside the directory, the root, or a block already visited"),
            ));
        }
        Ok(())
    }

    /// Reads and parses index node `lblk`, referenced from block `from`.
    fn read_node(&self, d: &Dir<'_>, cursor: &mut Cursor, lblk: u32, from: u32) -> Result<DxNode> {
        self.claim_block(d, cursor, lblk, from)?;
        let block = self
            .dir_block(d, lblk)?
            .ok_or_else(|| Error::corrupt("directory index", d.loc(lblk), "index node is a hole"))?;
        self.check_dx_csum(d, lblk, &block, NODE_TABLE_OFFSET)?;
        DxNode::parse(&block, self.dx_format(d), d.loc(lblk))
    }

    /// Descends from the root to the leaf whose hash range holds `hash`
    /// (`dx_probe`), reading `indirect_levels` interior nodes.
    fn probe(&self, d: &Dir<'_>, root: &DxRoot, hash: u32) -> Result<Cursor> {
        let mut cursor = Cursor { frames: Vec::new(), visited: HashSet::from([0]) };
        let at = root.table.find(hash);
        cursor.frames.push(Frame { lblk: 0, table: root.table.clone(), at });
        for _ in 0..root.info.indirect_levels {
            let (child, from) = (cursor.target(), cursor.bottom().lblk);
            let node = self.read_node(d, &mut cursor, child, from)?;
            let at = node.table.find(hash);
            cursor.frames.push(Frame { lblk: child, table: node.table, at });
        }
        Ok(cursor)
    }

    /// Moves `cursor` to the next leaf in hash order
    /// (`ext4_htree_next_block`), returning the hash where that leaf's
    /// range starts. With `only_hash`, moves only if the next leaf
    /// continues that hash (its start is `only_hash` or `only_hash | 1`).
    fn next_leaf(&self, d: &Dir<'_>, cursor: &mut Cursor, only_hash: Option<u32>) -> Result<Option<u32>> {
        let mut level = cursor.frames.len() - 1;
        loop {
            let f = &cursor.frames[level];
            if f.at + 1 < f.table.entries.len() {
                break;
            }
            if level == 0 {
                return Ok(None);
            }
            level -= 1;
        }
        let next = cursor.frames[level].at + 1;
        let start = cursor.frames[level].table.entries[next].hash;
        if only_hash.is_some_and(|h| start & !1 != h) {
            return Ok(None);
        }
        cursor.frames[level].at = next;
        for below in level + 1..cursor.frames.len() {
            let parent = &cursor.frames[below - 1];
            let (child, from) = (parent.table.entries[parent.at].lblk(), parent.lblk);
            let node = self.read_node(d, cursor, child, from)?;
            cursor.frames[below] = Frame { lblk: child, table: node.table, at: 0 };
        }
        Ok(Some(start))
    }

    /// Reads the leaf the cursor points to; returns its number and block.
    fn read_leaf(&self, d: &Dir<'_>, cursor: &mut Cursor) -> Result<(u32, Arc<[u8]>)> {
        let (lblk, from) = (cursor.target(), cursor.bottom().lblk);
        self.claim_block(d, cursor, lblk, from)?;
        let hole = || Error::corrupt("directory block", d.loc(lblk), "htree leaf is a hole");
        Ok((lblk, self.dir_block(d, lblk)?.ok_or_else(hole)?))
    }

    fn lookup_htree(&self, d: &Dir<'_>, name: &[u8]) -> Result<Option<DirEntry>> {
        let root = self.htree_root(d)?;
        let hash = dx_hash(self.hash_version(d, &root)?, &self.sb.hash_seed, name);
        let mut cursor = self.probe(d, &root, hash.major)?;
        loop {
            let (lblk, block) = self.read_leaf(d, &mut cursor)?;
            let region = self.leaf_region(d, lblk, &block)?;
            for rec in d.records(region, d.loc(lblk)).live() {
                let (_, e) = rec?;
                if e.name == name {
                    return Ok(Some(to_entry(&e)));
                }
            }
            if self.next_leaf(d, &mut cursor, Some(hash.major))?.is_none() {
                return Ok(None);
            }
        }
    }

    fn read_dir_htree(&self, d: &Dir<'_>, offset: u64, f: &mut dyn FnMut(&DirEntry, u64) -> bool) -> Result<()> {
        let root = self.htree_root(d)?;
        if offset == 0 && !f(&dot_entry(d, root.dot, b"."), HTREE_DOTDOT_POS) {
            return Ok(());
        }
        if offset <= HTREE_DOTDOT_POS && !f(&dot_entry(d, root.dotdot, b".."), HTREE_KEY_BASE) {
            return Ok(());
        }
        // Entries are returned in position order from here; an entry below
        // it was returned before (or sits in a leaf not meant for its hash).
        let mut floor = offset.max(HTREE_KEY_BASE);
        let start_half = (floor - HTREE_KEY_BASE) >> 32;
        if start_half > MAX_MAJOR_HALF {
            return Ok(());
        }
        let version = self.hash_version(d, &root)?;
        let mut cursor = self.probe(d, &root, (start_half as u32) << 1)?;
        let mut more = true;
        while more {
            // A batch: one leaf and the leaves that continue its last hash.
            let mut batch = Vec::new();
            loop {
                let (lblk, block) = self.read_leaf(d, &mut cursor)?;
                let region = self.leaf_region(d, lblk, &block)?;
                for rec in d.records(region, d.loc(lblk)).live() {
                    let (_, e) = rec?;
                    batch.push(Hashed { hash: dx_hash(version, &self.sb.hash_seed, e.name), entry: to_entry(&e) });
                }
                match self.next_leaf(d, &mut cursor, None)? {
                    None => {
                        more = false;
                        break;
                    }
                    Some(start) if start & 1 != 0 => continue,
                    Some(_) => break,
                }
            }
            batch.sort_by(|a, b| (a.hash, &a.entry.name).cmp(&(b.hash, &b.entry.name)));
            let mut prev_prefix = None;
            let mut rank = 0;
            for h in &batch {
                let prefix = ((h.hash.major as u64 >> 1) << 32) | ((h.hash.minor as u64 >> 16) << 16);
                rank = if prev_prefix == Some(prefix) { (rank + 1).min(MAX_RANK) } else { 0 };
                prev_prefix = Some(prefix);
                let pos = HTREE_KEY_BASE + (prefix | rank);
                if pos < floor {
                    continue;
                }
                floor = pos;
                if !f(&h.entry, pos + 1) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// The parent inode stored in the first 4 bytes of an inline directory.
fn inline_parent(data: &[u8]) -> u32 {
    crate::disk::codec::le32(data, 0)
}

/// The two record regions of an inline directory: the rest of `i_block`
/// after the parent field, and the `system.data` value. Yields
/// `(region, offset of the region in the inline data, error location)`.
fn inline_regions<'b>(d: &Dir<'_>, data: &'b [u8]) -> [(&'b [u8], usize, Location); 2] {
    let loc = Location::Inode(d.ino());
    [
        (&data[INLINE_DOTDOT_SIZE..INLINE_IBLOCK_SIZE], INLINE_DOTDOT_SIZE, loc),
        (&data[INLINE_IBLOCK_SIZE..], INLINE_IBLOCK_SIZE, loc),
    ]
}
