//! Hash-tree (htree, "dx") directory index blocks: the root in block 0
//! (fake "." and ".." entries, `dx_root_info`, the entry table) and the
//! interior nodes (a fake entry spanning the block, the entry table), with
//! the `dx_tail` checksum of metadata_csum.
//!
//! An entry table starts with `dx_countlimit` overlaid on the hash of
//! entry 0: entry 0 covers every hash below entry 1's, and entry `i`
//! covers hashes from its own up to the next one's. Bit 0 of a stored hash
//! marks a leaf that continues a run of equal hashes from the leaf before.

use super::checksum::crc32c;
use super::codec::layout;
use super::dir_entry::{DirFormat, Dirent, FT_DIR, MIN_REC_LEN};
use super::dx_hash::{HASH_SIPHASH, HASH_TEA};
use crate::error::{Error, Location, Result};

/// Offset of `dx_root_info` in the root block: after "." (12 bytes) and
/// the start of ".." (12 bytes).
pub const ROOT_INFO_OFFSET: usize = 2 * MIN_REC_LEN;
/// The only `info_length` in use.
pub const ROOT_INFO_LEN: u8 = 8;
/// Offset of the entry table (its count/limit) in the root block.
pub const ROOT_TABLE_OFFSET: usize = ROOT_INFO_OFFSET + ROOT_INFO_LEN as usize;
/// Offset of the entry table in an interior node (after the fake entry header).
pub const NODE_TABLE_OFFSET: usize = 8;
/// Logical block bits of `dx_entry.block`; the high bits are reserved.
pub const BLOCK_MASK: u32 = 0x0fff_ffff;
/// `unused_flags` bit that no implementation supports.
pub const FLAG_INCOMPAT: u8 = 0x1;
/// Deepest `indirect_levels` without the largedir feature.
pub const MAX_LEVELS: u8 = 1;
/// Deepest `indirect_levels` with the largedir feature.
pub const MAX_LEVELS_LARGEDIR: u8 = 2;

layout! {
    /// `dx_root_info`: how the index is built.
    pub struct DxRootInfo (8) {
        0 => reserved_zero: u32,
        4 => hash_version: u8,
        5 => info_length: u8,
        6 => indirect_levels: u8,
        7 => unused_flags: u8,
    }
}

layout! {
    /// `dx_countlimit`: capacity and use of an entry table, stored in
    /// place of the hash of entry 0.
    pub struct DxCountLimit (4) {
        0 => limit: u16,
        2 => count: u16,
    }
}

layout! {
    /// `dx_entry`: the lowest hash of a subtree and its logical block.
    pub struct DxEntry (8) {
        0 => hash: u32,
        4 => block: u32,
    }
}

layout! {
    /// `dx_tail`: follows the `limit` entries of an index block with metadata_csum.
    pub struct DxTail (8) {
        0 => reserved: u32,
        4 => checksum: u32,
    }
}

impl DxEntry {
    /// The logical block it points to (reserved high bits masked off).
    pub fn lblk(&self) -> u32 {
        self.block & BLOCK_MASK
    }
}

/// What the index layout depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DxFormat {
    /// Entry encoding (block size, filetype feature).
    pub dir: DirFormat,
    /// metadata_csum: index blocks end with a [`DxTail`].
    pub metadata_csum: bool,
    /// largedir: three index levels allowed.
    pub largedir: bool,
}

impl DxFormat {
    fn tail_len(&self) -> usize {
        if self.metadata_csum { DxTail::SIZE } else { 0 }
    }

    /// Entries that fit a root block (`dx_root_limit`).
    pub fn root_limit(&self) -> u16 {
        let space = self.dir.block_size as usize - ROOT_TABLE_OFFSET - self.tail_len();
        (space / DxEntry::SIZE) as u16
    }

    /// Entries that fit an interior node (`dx_node_limit`).
    pub fn node_limit(&self) -> u16 {
        let space = self.dir.block_size as usize - NODE_TABLE_OFFSET - self.tail_len();
        (space / DxEntry::SIZE) as u16
    }

    /// Deepest valid `indirect_levels`.
    pub fn max_levels(&self) -> u8 {
        if self.largedir { MAX_LEVELS_LARGEDIR } else { MAX_LEVELS }
    }
}

/// An entry table: its capacity and its entries. `entries[0].hash` is not
/// stored (that slot holds the count and limit) and reads as 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DxTable {
    /// Capacity in entries.
    pub limit: u16,
    /// The entries in use (`count` of them), hashes non-decreasing.
    pub entries: Vec<DxEntry>,
}

impl DxTable {
    /// Decodes and validates the table at `offset` of `block`, whose limit
    /// must be `want_limit`.
    fn parse(block: &[u8], offset: usize, want_limit: u16) -> std::result::Result<DxTable, String> {
        let cl = DxCountLimit::decode(&block[offset..]);
        if cl.limit != want_limit {
            return Err(format!("limit {} where the block holds {want_limit}", cl.limit));
        }
        if cl.count == 0 || cl.count > cl.limit {
            return Err(format!("count {} not in 1..={}", cl.count, cl.limit));
        }
        // limit == want_limit, so every entry lies inside the block.
        let entries: Vec<DxEntry> = (0..cl.count as usize)
            .map(|i| {
                let e = DxEntry::decode(&block[offset + i * DxEntry::SIZE..]);
                if i == 0 { DxEntry { hash: 0, ..e } } else { e }
            })
            .collect();
        if let Some(i) = (2..entries.len()).find(|&i| entries[i].hash < entries[i - 1].hash) {
            return Err(format!("hash of entry {i} ({:#x}) below its predecessor's", entries[i].hash));
        }
        Ok(DxTable { limit: cl.limit, entries })
    }

    /// Encodes the table at `offset` of `block`.
    fn encode(&self, block: &mut [u8], offset: usize) {
        for (i, e) in self.entries.iter().enumerate() {
            e.encode(&mut block[offset + i * DxEntry::SIZE..]);
        }
        DxCountLimit { limit: self.limit, count: self.entries.len() as u16 }.encode(&mut block[offset..]);
    }

    /// Index of the entry whose range holds `hash`: the last one whose
    /// hash is <= `hash` (entry 0 when none is).
    pub fn find(&self, hash: u32) -> usize {
        let above_first = self.entries.get(1..).unwrap_or(&[]);
        above_first.partition_point(|e| e.hash <= hash)
    }
}

/// The root block of an htree directory (its logical block 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DxRoot {
    /// Inode of "." (the directory itself).
    pub dot: u32,
    /// Inode of ".." (the parent).
    pub dotdot: u32,
    /// Index parameters.
    pub info: DxRootInfo,
    /// Top-level entries.
    pub table: DxTable,
}

/// An interior index node (a fake unused entry spanning the whole block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DxNode {
    /// The node's entries.
    pub table: DxTable,
}

fn corrupt(location: Location, reason: impl Into<String>) -> Error {
    Error::corrupt("directory index", location, reason)
}

impl DxRoot {
    /// Decodes and validates a root block: the "." and ".." records, the
    /// info (length 8, no reserved bits, depth within the format's bound,
    /// a hash version 0..=2), and the table (limit matching the space in
    /// the block, 1 <= count <= limit, sorted hashes).
    pub fn parse(block: &[u8], fmt: DxFormat, location: Location) -> Result<DxRoot> {
        let bs = fmt.dir.block_size as usize;
        if block.len() != bs {
            return Err(corrupt(location, "root block has the wrong size"));
        }
        let dot = Dirent::decode(block, fmt.dir).filter(|d| d.name == b"." && d.rec_len as usize == MIN_REC_LEN);
        let dotdot = Dirent::decode(&block[MIN_REC_LEN..], fmt.dir)
            .filter(|d| d.name == b".." && d.rec_len as usize == bs - MIN_REC_LEN);
        let (Some(dot), Some(dotdot)) = (dot, dotdot) else {
            return Err(corrupt(location, "root does not start with '.' and '..' records"));
        };
        let info = DxRootInfo::decode(&block[ROOT_INFO_OFFSET..]);
        if info.reserved_zero != 0 || info.info_length != ROOT_INFO_LEN {
            return Err(corrupt(
                location,
                format!("root info: reserved {:#x}, length {}", info.reserved_zero, info.info_length),
            ));
        }
        if info.hash_version == HASH_SIPHASH {
            return Err(Error::Unsupported("siphash-indexed (casefolded, encrypted) directory".into()));
        }
        if info.hash_version > HASH_TEA {
            return Err(corrupt(location, format!("unknown hash version {}", info.hash_version)));
        }
        if info.unused_flags & FLAG_INCOMPAT != 0 {
            return Err(corrupt(location, format!("unsupported index flags {:#x}", info.unused_flags)));
        }
        if info.indirect_levels > fmt.max_levels() {
            return Err(corrupt(location, format!("{} indirect levels", info.indirect_levels)));
        }
        let table = DxTable::parse(block, ROOT_TABLE_OFFSET, fmt.root_limit()).map_err(|r| corrupt(location, r))?;
        Ok(DxRoot { dot: dot.inode, dotdot: dotdot.inode, info, table })
    }

    /// Encodes the root into `block` (one block); the checksum, if any, is
    /// set separately with [`set_dx_checksum`].
    pub fn encode(&self, block: &mut [u8], fmt: DxFormat) -> Result<()> {
        let bs = fmt.dir.block_size;
        let ft = if fmt.dir.filetype { FT_DIR } else { 0 };
        Dirent { inode: self.dot, rec_len: MIN_REC_LEN as u32, file_type: ft, name: b"." }.encode(block, fmt.dir)?;
        let dotdot = Dirent { inode: self.dotdot, rec_len: bs - MIN_REC_LEN as u32, file_type: ft, name: b".." };
        dotdot.encode(&mut block[MIN_REC_LEN..], fmt.dir)?;
        self.info.encode(&mut block[ROOT_INFO_OFFSET..]);
        self.table.encode(block, ROOT_TABLE_OFFSET);
        Ok(())
    }
}

impl DxNode {
    /// Decodes and validates an interior node: a fake record spanning the
    /// block, then a table whose limit matches the space in the block.
    pub fn parse(block: &[u8], fmt: DxFormat, location: Location) -> Result<DxNode> {
        let bs = fmt.dir.block_size;
        match Dirent::decode(block, fmt.dir) {
            Some(d) if block.len() == bs as usize && d.rec_len == bs && d.inode == 0 => {}
            _ => {
                return Err(corrupt(location, "index node does not start with an empty record spanning the block"));
            }
        }
        let table = DxTable::parse(block, NODE_TABLE_OFFSET, fmt.node_limit()).map_err(|r| corrupt(location, r))?;
        Ok(DxNode { table })
    }

    /// Encodes the node into `block` (one block); see [`set_dx_checksum`].
    pub fn encode(&self, block: &mut [u8], fmt: DxFormat) -> Result<()> {
        block[..NODE_TABLE_OFFSET].fill(0);
        Dirent { inode: 0, rec_len: fmt.dir.block_size, file_type: 0, name: b"" }.encode(block, fmt.dir)?;
        self.table.encode(block, NODE_TABLE_OFFSET);
        Ok(())
    }
}

/// The checksum of an index block whose table starts at `table_offset`
/// ([`ROOT_TABLE_OFFSET`] or [`NODE_TABLE_OFFSET`]), and the offset of its
/// tail: crc32c(inode seed, block[..table_offset + count * 8], the tail's
/// reserved word, four zero bytes) as `ext2fs_dx_csum` computes it. The
/// tail follows the `limit` entries; `None` if it does not fit the block or
/// count exceeds limit.
pub fn dx_checksum(inode_seed: u32, block: &[u8], table_offset: usize) -> Option<(u32, usize)> {
    let cl = DxCountLimit::decode(block.get(table_offset..)?);
    let tail = table_offset + cl.limit as usize * DxEntry::SIZE;
    if tail + DxTail::SIZE > block.len() || cl.count > cl.limit {
        return None;
    }
    let covered = table_offset + cl.count as usize * DxEntry::SIZE;
    let t = DxTail::decode(&block[tail..]);
    let c = crc32c(inode_seed, &block[..covered]);
    let c = crc32c(c, &t.reserved.to_le_bytes());
    Some((crc32c(c, &[0; 4]), tail))
}

/// Whether the stored `dx_tail` checksum of an index block is right.
pub fn verify_dx_checksum(inode_seed: u32, block: &[u8], table_offset: usize) -> bool {
    dx_checksum(inode_seed, block, table_offset)
        .is_some_and(|(want, tail)| DxTail::decode(&block[tail..]).checksum == want)
}

/// Stores the right `dx_tail` checksum into an index block; false if the
/// block has no room for a tail.
pub fn set_dx_checksum(inode_seed: u32, block: &mut [u8], table_offset: usize) -> bool {
    let Some((csum, tail)) = dx_checksum(inode_seed, block, table_offset) else {
        return false;
    };
    let mut t = DxTail::decode(&block[tail..]);
    t.checksum = csum;
    t.encode(&mut block[tail..]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOC: Location = Location::FileBlock { ino: 12, lblk: 0 };

    fn fmt(csum: bool) -> DxFormat {
        DxFormat { dir: DirFormat { block_size: 1024, filetype: true }, metadata_csum: csum, largedir: false }
    }

    fn root(fmt: DxFormat) -> DxRoot {
        DxRoot {
            dot: 12,
            dotdot: 2,
            info: DxRootInfo { hash_version: 1, info_length: 8, ..Default::default() },
            table: DxTable {
                limit: fmt.root_limit(),
                entries: vec![
                    DxEntry { hash: 0, block: 1 },
                    DxEntry { hash: 0x1000, block: 3 },
                    DxEntry { hash: 0x1001, block: 2 },
                ],
            },
        }
    }

    #[test]
    fn limits() {
        assert_eq!(fmt(false).root_limit(), 124);
        assert_eq!(fmt(true).root_limit(), 123);
        assert_eq!(fmt(false).node_limit(), 127);
        assert_eq!(fmt(true).node_limit(), 126);
    }

    #[test]
    fn root_roundtrip_and_find() {
        for csum in [false, true] {
            let f = fmt(csum);
            let r = root(f);
            let mut b = vec![0u8; 1024];
            r.encode(&mut b, f).unwrap();
            assert_eq!(DxRoot::parse(&b, f, LOC).unwrap(), r);
            assert_eq!(r.table.find(0), 0);
            assert_eq!(r.table.find(0xfff), 0);
            assert_eq!(r.table.find(0x1000), 1);
            assert_eq!(r.table.find(0xffff_ffff), 2);
        }
    }

    #[test]
    fn node_roundtrip() {
        let f = fmt(true);
        let n = DxNode { table: DxTable { limit: f.node_limit(), entries: vec![DxEntry { hash: 0, block: 5 }] } };
        let mut b = vec![0xAAu8; 1024];
        n.encode(&mut b, f).unwrap();
        assert_eq!(DxNode::parse(&b, f, LOC).unwrap(), n);
        // A leaf is not a node.
        assert!(DxNode::parse(&vec![0u8; 1024], f, LOC).is_err());
    }

    #[test]
    fn validation() {
        let f = fmt(false);
        let mut good = vec![0u8; 1024];
        root(f).encode(&mut good, f).unwrap();
        let reason = |b: &[u8]| match DxRoot::parse(b, f, LOC) {
            Err(Error::Corrupt { reason, .. }) => reason,
            other => panic!("expected corruption, got {other:?}"),
        };
        let mut b = good.clone();
        b[ROOT_TABLE_OFFSET + 2] = 125; // count > limit
        assert!(reason(&b).contains("count"));
        let mut b = good.clone();
        b[ROOT_TABLE_OFFSET] = 100; // wrong limit
        assert!(reason(&b).contains("limit"));
        let mut b = good.clone();
        b[ROOT_INFO_OFFSET + 5] = 12; // info_length
        assert!(reason(&b).contains("length"));
        let mut b = good.clone();
        b[ROOT_INFO_OFFSET + 6] = 2; // too deep without largedir
        assert!(reason(&b).contains("levels"));
        assert!(DxRoot::parse(&b, DxFormat { largedir: true, ..f }, LOC).is_ok());
        let mut b = good.clone();
        b[ROOT_INFO_OFFSET + 4] = 9;
        assert!(reason(&b).contains("hash version"));
        let mut b = good.clone();
        b[ROOT_INFO_OFFSET + 4] = HASH_SIPHASH;
        assert!(matches!(DxRoot::parse(&b, f, LOC), Err(Error::Unsupported(_))));
        let mut b = good.clone();
        b[ROOT_TABLE_OFFSET + 16..ROOT_TABLE_OFFSET + 20].copy_from_slice(&0x10u32.to_le_bytes());
        assert!(reason(&b).contains("predecessor"));
        let mut b = good;
        b[4] = 16; // '.' record of the wrong length
        assert!(reason(&b).contains("'.'"));
    }

    #[test]
    fn checksum_covers_entries_in_use_and_tail() {
        let f = fmt(true);
        let mut b = vec![0u8; 1024];
        root(f).encode(&mut b, f).unwrap();
        let seed = 0xfeed_f00d;
        assert!(!verify_dx_checksum(seed, &b, ROOT_TABLE_OFFSET));
        assert!(set_dx_checksum(seed, &mut b, ROOT_TABLE_OFFSET));
        assert!(verify_dx_checksum(seed, &b, ROOT_TABLE_OFFSET));
        // The tail sits right after the limit entries, at the block end.
        let (_, tail) = dx_checksum(seed, &b, ROOT_TABLE_OFFSET).unwrap();
        assert_eq!(tail, 1024 - 8);
        // Unused entry slots are not covered; used ones are.
        b[ROOT_TABLE_OFFSET + 3 * 8] ^= 1;
        assert!(verify_dx_checksum(seed, &b, ROOT_TABLE_OFFSET));
        b[ROOT_TABLE_OFFSET + 2 * 8] ^= 1;
        assert!(!verify_dx_checksum(seed, &b, ROOT_TABLE_OFFSET));
        // A limit that leaves no room for the tail has no checksum.
        let mut b = vec![0u8; 1024];
        DxCountLimit { limit: 124, count: 1 }.encode(&mut b[ROOT_TABLE_OFFSET..]);
        assert!(dx_checksum(seed, &b, ROOT_TABLE_OFFSET).is_none());
    }
}
