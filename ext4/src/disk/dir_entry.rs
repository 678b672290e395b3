//! Directory entries (`ext4_dir_entry_2`, and the older `ext4_dir_entry`
//! without a file type), the leaf-block checksum tail
//! (`ext4_dir_entry_tail`) and a validating iterator over the records of a
//! directory block or inline-data region.

use super::checksum::crc32c;
use super::codec::layout;
use super::inode::FileType;
use crate::error::{Error, Location, Result};

/// Longest name a directory entry can hold.
pub const NAME_LEN: usize = 255;
/// Size of the fixed part of an entry, before the name.
pub const HEADER_LEN: usize = 8;
/// Smallest valid record: a header and a one-byte name, rounded to 4 bytes.
pub const MIN_REC_LEN: usize = 12;

/// File type code: unknown.
pub const FT_UNKNOWN: u8 = 0;
/// File type code: regular file.
pub const FT_REG_FILE: u8 = 1;
/// File type code: directory.
pub const FT_DIR: u8 = 2;
/// File type code: character device.
pub const FT_CHRDEV: u8 = 3;
/// File type code: block device.
pub const FT_BLKDEV: u8 = 4;
/// File type code: FIFO.
pub const FT_FIFO: u8 = 5;
/// File type code: socket.
pub const FT_SOCK: u8 = 6;
/// File type code: symbolic link.
pub const FT_SYMLINK: u8 = 7;
/// One past the largest valid file type code.
pub const FT_MAX: u8 = 8;
/// The fake file type of the checksum tail entry.
pub const FT_DIR_CSUM: u8 = 0xDE;

/// The on-disk `rec_len` value meaning "the whole 64 KiB block".
const REC_LEN_MAX_DISK: u16 = 0xFFFF;

/// The file type code recorded in directory entries for `ft`.
pub fn file_type_code(ft: FileType) -> u8 {
    match ft {
        FileType::Regular => FT_REG_FILE,
        FileType::Directory => FT_DIR,
        FileType::CharDevice => FT_CHRDEV,
        FileType::BlockDevice => FT_BLKDEV,
        FileType::Fifo => FT_FIFO,
        FileType::Socket => FT_SOCK,
        FileType::Symlink => FT_SYMLINK,
    }
}

/// Space an entry with a `name_len`-byte name needs (`EXT4_DIR_REC_LEN`).
pub fn rec_len_for_name(name_len: usize) -> usize {
    (HEADER_LEN + name_len + 3) & !3
}

/// Decodes an on-disk `rec_len` (`ext4_rec_len_from_disk`). Records of
/// 64 KiB blocks cannot store 65536 in 16 bits: 65535 or 0 means the whole
/// block, and larger lengths keep bits 16..18 in the two low bits.
pub fn rec_len_from_disk(raw: u16, block_size: u32) -> u32 {
    if block_size < 65536 {
        return raw as u32;
    }
    if raw == REC_LEN_MAX_DISK || raw == 0 {
        return block_size;
    }
    (raw as u32 & 0xFFFC) | ((raw as u32 & 3) << 16)
}

/// Encodes a record length for disk (`ext4_rec_len_to_disk`); `None` if
/// it is not a multiple of 4, exceeds the block, or cannot be represented.
pub fn rec_len_to_disk(len: u32, block_size: u32) -> Option<u16> {
    if len > block_size || len % 4 != 0 || len >= 1 << 18 {
        return None;
    }
    if len < 65536 {
        return Some(len as u16);
    }
    if len == block_size && block_size == 65536 {
        return Some(REC_LEN_MAX_DISK);
    }
    Some(((len & 0xFFFC) | ((len >> 16) & 3)) as u16)
}

layout! {
    /// Header of `ext4_dir_entry_2` (file systems with the filetype feature).
    pub struct DirEntry2Header (8) {
        0 => inode: u32,
        4 => rec_len: u16,
        6 => name_len: u8,
        7 => file_type: u8,
    }
}

layout! {
    /// Header of the original `ext4_dir_entry`: a 16-bit name length and no
    /// file type (file systems without the filetype feature).
    pub struct DirEntryHeader (8) {
        0 => inode: u32,
        4 => rec_len: u16,
        6 => name_len: u16,
    }
}

/// How entries are encoded on a given file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirFormat {
    /// File-system block size (decides the `rec_len` encoding).
    pub block_size: u32,
    /// Whether the filetype incompat feature is on (`ext4_dir_entry_2`).
    pub filetype: bool,
}

/// One directory record, borrowing its name from the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dirent<'a> {
    /// Inode number; 0 for an unused (deleted) record.
    pub inode: u32,
    /// Decoded record length (distance to the next record).
    pub rec_len: u32,
    /// File type code (`FT_*`) as stored; 0 without the filetype feature.
    pub file_type: u8,
    /// The name bytes.
    pub name: &'a [u8],
}

impl<'a> Dirent<'a> {
    /// Decodes the record at the start of `buf` without validating it.
    /// `None` if `buf` cannot hold the header and the name it announces.
    pub fn decode(buf: &'a [u8], fmt: DirFormat) -> Option<Dirent<'a>> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        let (inode, raw_rec_len, name_len, file_type) = if fmt.filetype {
            let h = DirEntry2Header::decode(buf);
            (h.inode, h.rec_len, h.name_len as usize, h.file_type)
        } else {
            let h = DirEntryHeader::decode(buf);
            (h.inode, h.rec_len, h.name_len as usize, FT_UNKNOWN)
        };
        let name = buf.get(HEADER_LEN..HEADER_LEN + name_len)?;
        Some(Dirent { inode, rec_len: rec_len_from_disk(raw_rec_len, fmt.block_size), file_type, name })
    }

    /// Encodes the record (header and name) at the start of `buf`, which
    /// must hold `rec_len` bytes. Bytes after the name are left alone.
    pub fn encode(&self, buf: &mut [u8], fmt: DirFormat) -> Result<()> {
        let invalid = |why: &str| Err(Error::InvalidArgument(format!("directory entry: {why}")));
        if self.name.len() > NAME_LEN {
            return invalid("name longer than 255 bytes");
        }
        let Some(raw_rec_len) = rec_len_to_disk(self.rec_len, fmt.block_size) else {
            return invalid("rec_len not encodable");
        };
        if (self.rec_len as usize) < rec_len_for_name(self.name.len()) || buf.len() < self.rec_len as usize {
            return invalid("rec_len too small for the name or the buffer");
        }
        if fmt.filetype {
            DirEntry2Header {
                inode: self.inode,
                rec_len: raw_rec_len,
                name_len: self.name.len() as u8,
                file_type: self.file_type,
            }
            .encode(buf);
        } else {
            DirEntryHeader { inode: self.inode, rec_len: raw_rec_len, name_len: self.name.len() as u16 }.encode(buf);
        }
        buf[HEADER_LEN..HEADER_LEN + self.name.len()].copy_from_slice(self.name);
        Ok(())
    }

    /// Whether the record names a file (inode not 0).
    pub fn is_live(&self) -> bool {
        self.inode != 0
    }

    /// The file type code as readers should report it: `FT_UNKNOWN` when
    /// the code is out of range (as the kernel's `get_dtype` does).
    pub fn file_type_or_unknown(&self) -> u8 {
        if self.file_type < FT_MAX { self.file_type } else { FT_UNKNOWN }
    }
}

/// Iterator over the records of one directory block (or inline region),
/// validating each as the kernel's `ext4_check_dir_entry` does. Yields
/// `(offset within the region, record)` for every record, unused ones
/// included; the first violation ends the walk with a `Corrupt` error.
#[derive(Debug, Clone)]
pub struct DirRecords<'a> {
    buf: &'a [u8],
    off: usize,
    fmt: DirFormat,
    max_ino: u32,
    location: Location,
    done: bool,
}

impl<'a> DirRecords<'a> {
    /// Walks `buf` (a whole directory block, or an inline-data region) on a
    /// file system with `max_ino` inodes; errors name `location`.
    pub fn new(buf: &'a [u8], fmt: DirFormat, max_ino: u32, location: Location) -> Self {
        DirRecords { buf, off: 0, fmt, max_ino, location, done: false }
    }

    /// Only the records that name files (inode not 0).
    pub fn live(self) -> impl Iterator<Item = Result<(usize, Dirent<'a>)>> {
        self.filter(|r| r.as_ref().map_or(true, |(_, d)| d.is_live()))
    }

    fn check(&self, d: Option<Dirent<'a>>) -> std::result::Result<Dirent<'a>, String> {
        let size = self.buf.len();
        let Some(d) = d else {
            return Err("record header or name runs past the end".into());
        };
        let rec_len = d.rec_len as usize;
        let next = self.off + rec_len;
        if rec_len < MIN_REC_LEN {
            Err(format!("rec_len {rec_len} is smaller than minimal"))
        } else if rec_len % 4 != 0 {
            Err(format!("rec_len {rec_len} is not a multiple of 4"))
        } else if d.name.len() > NAME_LEN {
            Err(format!("name_len {} exceeds {NAME_LEN}", d.name.len()))
        } else if rec_len < rec_len_for_name(d.name.len()) {
            Err(format!("rec_len {rec_len} is too small for name_len {}", d.name.len()))
        } else if next > size {
            Err(format!("rec_len {rec_len} runs past the end ({size} bytes)"))
        } else if next != size && next + MIN_REC_LEN > size {
            Err(format!("rec_len {rec_len} leaves a gap too small for a record"))
        } else if d.inode > self.max_ino {
            Err(format!("inode {} out of range", d.inode))
        } else if next == size && d.name == b"." {
            Err("'.' is the last record of the block".into())
        } else {
            Ok(d)
        }
    }
}

impl<'a> Iterator for DirRecords<'a> {
    type Item = Result<(usize, Dirent<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.off >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.off..];
        match self.check(Dirent::decode(rest, self.fmt)) {
            Ok(d) => {
                let off = self.off;
                self.off += d.rec_len as usize;
                Some(Ok((off, d)))
            }
            Err(reason) => {
                self.done = true;
                let reason = format!("record at offset {}: {reason}", self.off);
                Some(Err(Error::corrupt("directory entry", self.location, reason)))
            }
        }
    }
}

layout! {
    /// The checksum tail that ends every leaf block with metadata_csum:
    /// a fake unused entry of 12 bytes with file type 0xDE.
    pub struct DirTail (12) {
        0 => reserved_zero1: u32,
        4 => rec_len: u16,
        6 => reserved_zero2: u8,
        7 => reserved_ft: u8,
        8 => checksum: u32,
    }
}

impl DirTail {
    /// A tail carrying `checksum`.
    pub fn new(checksum: u32) -> DirTail {
        DirTail {
            reserved_zero1: 0,
            rec_len: DirTail::SIZE as u16,
            reserved_zero2: 0,
            reserved_ft: FT_DIR_CSUM,
            checksum,
        }
    }

    /// The tail at the end of `block`, if the last 12 bytes look like one.
    pub fn find(block: &[u8]) -> Option<DirTail> {
        let start = block.len().checked_sub(DirTail::SIZE)?;
        let t = DirTail::decode(&block[start..]);
        let ok = t.reserved_zero1 == 0
            && t.rec_len as usize == DirTail::SIZE
            && t.reserved_zero2 == 0
            && t.reserved_ft == FT_DIR_CSUM;
        ok.then_some(t)
    }
}

/// The per-inode checksum seed of directory blocks:
/// crc32c(fs seed, le32 inode number, le32 generation).
pub fn dir_csum_seed(fs_seed: u32, ino: u32, generation: u32) -> u32 {
    crc32c(crc32c(fs_seed, &ino.to_le_bytes()), &generation.to_le_bytes())
}

/// The checksum of a leaf block: crc32c over everything before the tail,
/// seeded with [`dir_csum_seed`]. `block` is the whole block.
pub fn leaf_checksum(inode_seed: u32, block: &[u8]) -> u32 {
    crc32c(inode_seed, &block[..block.len().saturating_sub(DirTail::SIZE)])
}

/// Writes a fresh tail with the right checksum into the last 12 bytes of `block`.
pub fn set_leaf_tail(inode_seed: u32, block: &mut [u8]) {
    let Some(start) = block.len().checked_sub(DirTail::SIZE) else {
        return;
    };
    let csum = leaf_checksum(inode_seed, block);
    DirTail::new(csum).encode(&mut block[start..]);
}

// ----- Record edits inside one region (a leaf block's entry area, or an
// inline-data region), as the kernel performs them. -----

/// Sets the `rec_len` of the record at the start of `buf`, keeping the rest.
fn set_rec_len(buf: &mut [u8], fmt: DirFormat, rec_len: u32) -> Result<()> {
    let raw = rec_len_to_disk(rec_len, fmt.block_size)
        .ok_or_else(|| Error::InvalidArgument(format!("directory entry: rec_len {rec_len} not encodable")))?;
    if fmt.filetype {
        let mut h = DirEntry2Header::decode(buf);
        h.rec_len = raw;
        h.encode(buf);
    } else {
        let mut h = DirEntryHeader::decode(buf);
        h.rec_len = raw;
        h.encode(buf);
    }
    Ok(())
}

/// Writes one unused record spanning all of `region`: an empty leaf.
pub fn init_empty_region(region: &mut [u8], fmt: DirFormat) -> Result<()> {
    region.fill(0);
    Dirent { inode: 0, rec_len: region.len() as u32, file_type: 0, name: b"" }.encode(region, fmt)
}

/// Finds room for a record named `name` the way `ext4_find_dest_de` does:
/// the first record that is unused and long enough, or live with enough
/// slack after its own name. Returns its offset, or `None` when the region
/// is full. A live record already carrying `name` is [`Error::Exists`].
pub fn find_room(records: DirRecords<'_>, name: &[u8]) -> Result<Option<usize>> {
    let need = rec_len_for_name(name.len());
    for rec in records {
        let (off, d) = rec?;
        if d.is_live() && d.name == name {
            return Err(Error::Exists);
        }
        let used = if d.is_live() { rec_len_for_name(d.name.len()) } else { 0 };
        if d.rec_len as usize - used >= need {
            return Ok(Some(off));
        }
    }
    Ok(None)
}

/// Stores a record for `name` at `off`, a place [`find_room`] returned
/// (`ext4_insert_dentry`): an unused record is taken whole; a live one
/// keeps its minimal length and the new record gets the rest. The new
/// record's bytes after its name are zeroed.
pub fn insert_record(
    region: &mut [u8],
    fmt: DirFormat,
    off: usize,
    ino: u32,
    file_type: u8,
    name: &[u8],
) -> Result<()> {
    let bad = |why: &str| Error::InvalidArgument(format!("directory entry insert at {off}: {why}"));
    let cur = region.get(off..).and_then(|b| Dirent::decode(b, fmt)).ok_or_else(|| bad("no record"))?;
    let (cur_live, cur_len, cur_used) = (cur.is_live(), cur.rec_len as usize, rec_len_for_name(cur.name.len()));
    if cur_len < cur_used || off + cur_len > region.len() {
        return Err(bad("record does not fit the region"));
    }
    let (at, len) = if cur_live {
        set_rec_len(&mut region[off..], fmt, cur_used as u32)?;
        (off + cur_used, cur_len - cur_used)
    } else {
        (off, cur_len)
    };
    if len < rec_len_for_name(name.len()) {
        return Err(bad("no room"));
    }
    let rec = &mut region[at..at + len];
    rec.fill(0);
    Dirent { inode: ino, rec_len: len as u32, file_type, name }.encode(rec, fmt)
}

/// A record found by name: its offset, the offset of the record before it
/// in the region, and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundRecord {
    /// Offset of the record in its region.
    pub off: usize,
    /// Offset of the preceding record (live or not), if any.
    pub prev: Option<usize>,
    /// Its inode number.
    pub inode: u32,
    /// Its file type code as stored.
    pub file_type: u8,
}

/// Finds the live record named `name` among `records`.
pub fn find_record(records: DirRecords<'_>, name: &[u8]) -> Result<Option<FoundRecord>> {
    let mut prev = None;
    for rec in records {
        let (off, d) = rec?;
        if d.is_live() && d.name == name {
            return Ok(Some(FoundRecord { off, prev, inode: d.inode, file_type: d.file_type }));
        }
        prev = Some(off);
    }
    Ok(None)
}

/// Deletes the record `found` (`ext4_generic_delete_entry`): it is merged
/// into the record before it, whose `rec_len` grows, and wiped; a record
/// first in its region instead becomes unused (inode 0, name wiped, its
/// `rec_len` kept). Other records keep their offsets.
pub fn delete_record(region: &mut [u8], fmt: DirFormat, found: &FoundRecord) -> Result<()> {
    let bad = || Error::InvalidArgument(format!("directory entry delete at {}: no such record", found.off));
    let len = region.get(found.off..).and_then(|b| Dirent::decode(b, fmt)).ok_or_else(bad)?.rec_len as usize;
    if found.off + len > region.len() {
        return Err(bad());
    }
    match found.prev {
        Some(p) => {
            let plen = region.get(p..).and_then(|b| Dirent::decode(b, fmt)).ok_or_else(bad)?.rec_len as usize;
            if p + plen != found.off {
                return Err(bad());
            }
            set_rec_len(&mut region[p..], fmt, (plen + len) as u32)?;
            region[found.off..found.off + len].fill(0);
            Ok(())
        }
        None => {
            let rec = &mut region[found.off..found.off + len];
            rec.fill(0);
            Dirent { inode: 0, rec_len: len as u32, file_type: 0, name: b"" }.encode(rec, fmt)
        }
    }
}

/// Re-points the live record `found` at inode `ino` with `file_type`.
pub fn retarget_record(region: &mut [u8], fmt: DirFormat, found: &FoundRecord, ino: u32, file_type: u8) -> Result<()> {
    let buf = region
        .get_mut(found.off..)
        .filter(|b| b.len() >= HEADER_LEN)
        .ok_or_else(|| Error::InvalidArgument(format!("directory entry at {}: no such record", found.off)))?;
    if fmt.filetype {
        let mut h = DirEntry2Header::decode(buf);
        h.inode = ino;
        h.file_type = file_type;
        h.encode(buf);
    } else {
        let mut h = DirEntryHeader::decode(buf);
        h.inode = ino;
        h.encode(buf);
    }
    Ok(())
}

/// A live record's contents, owned: for moving records between blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    /// Inode number (not 0).
    pub inode: u32,
    /// File type code as stored.
    pub file_type: u8,
    /// Name bytes.
    pub name: Vec<u8>,
}

impl OwnedRecord {
    /// The owned copy of a record.
    pub fn of(d: &Dirent<'_>) -> OwnedRecord {
        OwnedRecord { inode: d.inode, file_type: d.file_type, name: d.name.to_vec() }
    }

    /// Space the record needs (its minimal `rec_len`).
    pub fn min_len(&self) -> usize {
        rec_len_for_name(self.name.len())
    }
}

/// Fills `region` with `records` packed in the given order, each at its
/// minimal length and the last one extended to the region's end; an empty
/// list leaves one unused record. `InvalidArgument` if they do not fit.
pub fn write_packed(region: &mut [u8], fmt: DirFormat, records: &[OwnedRecord]) -> Result<()> {
    let total: usize = records.iter().map(OwnedRecord::min_len).sum();
    if total > region.len() {
        return Err(Error::InvalidArgument(format!("{total} bytes of records do not fit {} bytes", region.len())));
    }
    if records.is_empty() {
        return init_empty_region(region, fmt);
    }
    region.fill(0);
    let mut off = 0;
    for (i, r) in records.iter().enumerate() {
        let len = if i + 1 == records.len() { region.len() - off } else { r.min_len() };
        Dirent { inode: r.inode, rec_len: len as u32, file_type: r.file_type, name: &r.name }
            .encode(&mut region[off..], fmt)?;
        off += len;
    }
    Ok(())
}

/// Extends the last record of the valid record chain `region[..used]` so
/// that it ends at `region.len()` (`ext4_update_final_de`).
pub fn extend_last_record(region: &mut [u8], fmt: DirFormat, used: usize) -> Result<()> {
    let mut off = 0;
    let mut last = None;
    // Each step advances by a rec_len of at least MIN_REC_LEN, so this ends.
    while off < used {
        let d =
            region.get(off..used).and_then(|b| Dirent::decode(b, fmt)).filter(|d| d.rec_len as usize >= MIN_REC_LEN);
        let Some(d) = d else {
            return Err(Error::InvalidArgument(format!("no valid record at offset {off}")));
        };
        last = Some((off, d.rec_len as usize));
        off += d.rec_len as usize;
    }
    let size = region.len();
    match last {
        Some((at, len)) if off == used => set_rec_len(&mut region[at..], fmt, (len + size - used) as u32),
        _ => Err(Error::InvalidArgument("record chain does not end at the used length".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FMT: DirFormat = DirFormat { block_size: 1024, filetype: true };
    const LOC: Location = Location::FileBlock { ino: 12, lblk: 0 };

    fn block_with(entries: &[(u32, &[u8], u8, u32)], fmt: DirFormat) -> Vec<u8> {
        let mut b = vec![0u8; fmt.block_size as usize];
        let mut off = 0;
        for &(inode, name, file_type, rec_len) in entries {
            Dirent { inode, rec_len, file_type, name }.encode(&mut b[off..], fmt).unwrap();
            off += rec_len as usize;
        }
        b
    }

    #[test]
    fn rec_len_encoding_for_64k_blocks() {
        for bs in [1024u32, 4096, 65536] {
            for len in [12u32, 1020, bs - 12, bs] {
                let raw = rec_len_to_disk(len, bs).unwrap();
                assert_eq!(rec_len_from_disk(raw, bs), len, "bs {bs} len {len}");
            }
        }
        assert_eq!(rec_len_to_disk(65536, 65536), Some(0xFFFF));
        assert_eq!(rec_len_from_disk(0, 65536), 65536);
        assert_eq!(rec_len_from_disk(0, 4096), 0);
        assert_eq!(rec_len_to_disk(14, 4096), None);
        assert_eq!(rec_len_to_disk(8192, 4096), None);
    }

    #[test]
    fn roundtrip_both_forms() {
        for filetype in [true, false] {
            let fmt = DirFormat { filetype, ..FMT };
            let d = Dirent { inode: 77, rec_len: 20, file_type: if filetype { FT_SYMLINK } else { 0 }, name: b"hello" };
            let mut b = [0u8; 20];
            d.encode(&mut b, fmt).unwrap();
            assert_eq!(Dirent::decode(&b, fmt), Some(d));
            assert_eq!(&b[..8], &[77, 0, 0, 0, 20, 0, 5, if filetype { 7 } else { 0 }]);
        }
        assert_eq!(rec_len_for_name(1), 12);
        assert_eq!(rec_len_for_name(4), 12);
        assert_eq!(rec_len_for_name(5), 16);
    }

    #[test]
    fn iterates_and_skips_deleted() {
        let b =
            block_with(&[(2, b".", FT_DIR, 12), (2, b"..", FT_DIR, 12), (0, b"gone", 1, 16), (13, b"f", 1, 984)], FMT);
        let all: Vec<_> = DirRecords::new(&b, FMT, 100, LOC).map(|r| r.unwrap()).collect();
        assert_eq!(all.len(), 4);
        let live: Vec<_> = DirRecords::new(&b, FMT, 100, LOC).live().map(|r| r.unwrap().1.name).collect();
        assert_eq!(live, vec![&b"."[..], b"..", b"f"]);
    }

    fn first_error(b: &[u8], fmt: DirFormat) -> String {
        match DirRecords::new(b, fmt, 100, LOC).find_map(|r| r.err()) {
            Some(Error::Corrupt { reason, location, .. }) => {
                assert_eq!(location, LOC);
                reason
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn rejects_bad_records() {
        let good = block_with(&[(2, b".", FT_DIR, 12), (3, b"abcdef", 1, 1012)], FMT);
        let mut b = good.clone();
        b[12 + 4] = 13; // rec_len not a multiple of 4
        assert!(first_error(&b, FMT).contains("multiple of 4"));
        let mut b = good.clone();
        b[4] = 8; // below minimum
        assert!(first_error(&b, FMT).contains("minimal"));
        let mut b = good.clone();
        b[12 + 4..12 + 6].copy_from_slice(&1016u16.to_le_bytes()); // crosses the end
        assert!(first_error(&b, FMT).contains("past the end"));
        let mut b = good.clone();
        b[12 + 4..12 + 6].copy_from_slice(&1004u16.to_le_bytes()); // 8-byte gap
        assert!(first_error(&b, FMT).contains("gap"));
        let mut b = good.clone();
        b[12 + 6] = 200; // a 200-byte name in a 16-byte record
        b[12 + 4..12 + 6].copy_from_slice(&16u16.to_le_bytes());
        assert!(first_error(&b, FMT).contains("too small for name_len"));
        let mut b = good.clone();
        b[12..16].copy_from_slice(&101u32.to_le_bytes());
        assert!(first_error(&b, FMT).contains("out of range"));
        // Old format: a 16-bit name length over 255.
        let old = DirFormat { filetype: false, ..FMT };
        let mut b = block_with(&[(3, b"x", 0, 1024)], old);
        b[6..8].copy_from_slice(&300u16.to_le_bytes());
        assert!(first_error(&b, old).contains("exceeds"));
        // A zero rec_len is an error, never an endless loop.
        let mut b = good;
        b[4..6].copy_from_slice(&0u16.to_le_bytes());
        assert!(first_error(&b, FMT).contains("minimal"));
    }

    #[test]
    fn tail_checksum() {
        let mut b = block_with(&[(2, b".", FT_DIR, 12), (2, b"..", FT_DIR, 1000)], FMT);
        assert!(DirTail::find(&b).is_none());
        let seed = dir_csum_seed(0x1234_5678, 2, 0);
        set_leaf_tail(seed, &mut b);
        let t = DirTail::find(&b).unwrap();
        assert_eq!(t.checksum, leaf_checksum(seed, &b));
        assert_eq!(&b[1012..1020], &[0, 0, 0, 0, 12, 0, 0, 0xDE]);
        // The tail walks as an unused record.
        let recs: Vec<_> = DirRecords::new(&b, FMT, 100, LOC).map(|r| r.unwrap()).collect();
        assert_eq!(recs.last().unwrap().0, 1012);
        assert!(!recs.last().unwrap().1.is_live());
        b[20] ^= 1;
        assert_ne!(DirTail::find(&b).unwrap().checksum, leaf_checksum(seed, &b));
    }

    fn names(region: &[u8], fmt: DirFormat) -> Vec<(usize, u32, Vec<u8>)> {
        DirRecords::new(region, fmt, 100, LOC).map(|r| r.unwrap()).map(|(o, d)| (o, d.inode, d.name.to_vec())).collect()
    }

    #[test]
    fn insert_splits_slack_or_takes_unused_records() {
        let mut b = block_with(&[(2, b".", FT_DIR, 12), (2, b"..", FT_DIR, 1012)], FMT);
        // ".." has 1000 bytes of slack: the new record follows its 12 bytes.
        let off = find_room(DirRecords::new(&b, FMT, 100, LOC), b"hello").unwrap().unwrap();
        assert_eq!(off, 12);
        insert_record(&mut b, FMT, off, 20, FT_REG_FILE, b"hello").unwrap();
        assert_eq!(names(&b, FMT), vec![(0, 2, b".".to_vec()), (12, 2, b"..".to_vec()), (24, 20, b"hello".to_vec())]);
        assert!(matches!(find_room(DirRecords::new(&b, FMT, 100, LOC), b"hello"), Err(Error::Exists)));
        // Deleting merges into the record before; the offsets of the others stay.
        insert_record(&mut b, FMT, 24, 21, FT_REG_FILE, b"world").unwrap();
        let f = find_record(DirRecords::new(&b, FMT, 100, LOC), b"hello").unwrap().unwrap();
        assert_eq!((f.off, f.prev, f.inode), (24, Some(12), 20));
        delete_record(&mut b, FMT, &f).unwrap();
        assert_eq!(names(&b, FMT), vec![(0, 2, b".".to_vec()), (12, 2, b"..".to_vec()), (40, 21, b"world".to_vec())]);
        assert!(b[24..40].iter().all(|&x| x == 0), "deleted record wiped");
        // A first record becomes unused, keeping its length; it is reused whole.
        let mut r = vec![0u8; 64];
        init_empty_region(&mut r, FMT).unwrap();
        insert_record(&mut r, FMT, 0, 30, FT_SYMLINK, b"a").unwrap();
        let f = find_record(DirRecords::new(&r, FMT, 100, LOC), b"a").unwrap().unwrap();
        assert_eq!(f.prev, None);
        delete_record(&mut r, FMT, &f).unwrap();
        assert_eq!(DirRecords::new(&r, FMT, 100, LOC).live().count(), 0);
        assert_eq!(Dirent::decode(&r, FMT).unwrap().rec_len, 64);
        assert_eq!(find_room(DirRecords::new(&r, FMT, 100, LOC), &[b'z'; 56]).unwrap(), Some(0));
        assert_eq!(find_room(DirRecords::new(&r, FMT, 100, LOC), &[b'z'; 57]).unwrap(), None);
        // Retargeting changes inode and type only.
        insert_record(&mut r, FMT, 0, 30, FT_SYMLINK, b"a").unwrap();
        let f = find_record(DirRecords::new(&r, FMT, 100, LOC), b"a").unwrap().unwrap();
        retarget_record(&mut r, FMT, &f, 31, FT_REG_FILE).unwrap();
        let d = Dirent::decode(&r, FMT).unwrap();
        assert_eq!((d.inode, d.file_type, d.name, d.rec_len), (31, FT_REG_FILE, &b"a"[..], 64));
    }

    #[test]
    fn packing_and_extending_the_last_record() {
        let old = DirFormat { filetype: false, ..FMT };
        let recs = vec![
            OwnedRecord { inode: 5, file_type: 0, name: b"x".to_vec() },
            OwnedRecord { inode: 6, file_type: 0, name: b"longer-name".to_vec() },
        ];
        let mut r = vec![0xffu8; 100];
        write_packed(&mut r, old, &recs).unwrap();
        assert_eq!(names(&r, old), vec![(0, 5, b"x".to_vec()), (12, 6, b"longer-name".to_vec())]);
        assert_eq!(Dirent::decode(&r[12..], old).unwrap().rec_len, 88);
        assert!(write_packed(&mut r[..20], old, &recs).is_err());
        // Chain of 32 bytes in a 100-byte region: the last record grows.
        let mut r = vec![0u8; 100];
        write_packed(&mut r[..32], FMT, &recs).unwrap();
        extend_last_record(&mut r, FMT, 32).unwrap();
        assert_eq!(Dirent::decode(&r[12..], FMT).unwrap().rec_len, 88);
        assert!(extend_last_record(&mut r, FMT, 30).is_err(), "a chain that does not end at the given length");
    }
}
