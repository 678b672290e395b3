//! Extent tree nodes: the header, leaf extents (with the unwritten length
//! encoding), index entries, and the checksum tail of tree blocks.
//!
//! A node is either the root, stored in the inode's 60-byte `i_block`, or a
//! whole file-system block; only block nodes carry a tail checksum, placed
//! right after `eh_max` entries.

use super::checksum::crc32c;
use super::codec::layout;
use crate::error::{Error, Location, Result};

/// One physically contiguous run of a file's logical blocks on disk, as the
/// extent tree or a block map resolves it (and as the journal file is laid
/// out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileExtent {
    /// First logical block.
    pub lblk: u64,
    /// First physical block.
    pub pblk: u64,
    /// Length in blocks.
    pub len: u64,
    /// Unwritten (preallocated) extent.
    pub unwritten: bool,
}

/// `eh_magic` of every extent tree node.
pub const EXTENT_MAGIC: u16 = 0xF30A;
/// Deepest tree the kernel builds or accepts (`EXT4_MAX_EXTENT_DEPTH`).
pub const MAX_DEPTH: u16 = 5;
/// Longest initialized extent; a stored length above it marks an unwritten extent.
pub const INIT_MAX_LEN: u32 = 32768;
/// Longest unwritten extent.
pub const UNWRITTEN_MAX_LEN: u32 = INIT_MAX_LEN - 1;
/// Number of logical blocks an extent tree can address (`ee_block` is 32 bits).
pub const MAX_LOGICAL_BLOCKS: u64 = 1 << 32;
/// Physical block numbers are 48 bits wide.
pub const MAX_PHYSICAL_BLOCK: u64 = (1 << 48) - 1;

layout! {
    /// `struct ext4_extent_header`, at the start of every node.
    pub struct ExtentHeader (12) {
        0 => magic: u16,
        2 => entries: u16,
        4 => max: u16,
        6 => depth: u16,
        8 => generation: u32,
    }
}

layout! {
    /// `struct ext4_extent`: a leaf entry as stored.
    pub struct RawExtent (12) {
        0 => block: u32,
        4 => len: u16,
        6 => start_hi: u16,
        8 => start_lo: u32,
    }
}

layout! {
    /// `struct ext4_extent_idx`: an index entry as stored.
    pub struct RawExtentIndex (12) {
        0 => block: u32,
        4 => leaf_lo: u32,
        8 => leaf_hi: u16,
        10 => unused: u16,
    }
}

layout! {
    /// `struct ext4_extent_tail`: the checksum after the entries of a block node.
    pub struct ExtentTail (4) {
        0 => checksum: u32,
    }
}

/// Size of one entry (leaf extent or index), both 12 bytes on disk.
const ENTRY_SIZE: usize = 12;
/// Size of the inode's `i_block` area holding the root node.
pub const ROOT_SIZE: usize = 60;
/// Entries the root node holds (`eh_max` of a root written by the kernel).
pub const ROOT_CAPACITY: u16 = ((ROOT_SIZE - ExtentHeader::SIZE) / ENTRY_SIZE) as u16;

/// Entries a tree block of `block_size` bytes holds with room for its
/// tail: the `eh_max` the kernel and e2fsprogs write (84 for 1 KiB blocks,
/// 340 for 4 KiB). Zero for blocks too small to hold a node.
pub fn block_capacity(block_size: usize) -> u16 {
    let room = block_size.saturating_sub(ExtentHeader::SIZE + ExtentTail::SIZE) / ENTRY_SIZE;
    room.min(u16::MAX as usize) as u16
}

/// A leaf extent: `len` logical blocks from `lblk` stored at `pblk..pblk+len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First logical block.
    pub lblk: u32,
    /// Number of blocks, 1..=32768 (1..=32767 when unwritten).
    pub len: u32,
    /// First physical block (48 bits).
    pub pblk: u64,
    /// Allocated but never written: reads as zeros.
    pub unwritten: bool,
}

impl Extent {
    /// Decodes the length encoding: above 32768 means unwritten.
    pub fn from_raw(raw: &RawExtent) -> Self {
        let stored = raw.len as u32;
        let (len, unwritten) = if stored > INIT_MAX_LEN { (stored - INIT_MAX_LEN, true) } else { (stored, false) };
        Extent { lblk: raw.block, len, pblk: (raw.start_hi as u64) << 32 | raw.start_lo as u64, unwritten }
    }

    /// Encodes the extent; fails if its length or block cannot be stored.
    pub fn to_raw(&self) -> Result<RawExtent> {
        let max = if self.unwritten { UNWRITTEN_MAX_LEN } else { INIT_MAX_LEN };
        if self.len == 0 || self.len > max || self.pblk > MAX_PHYSICAL_BLOCK || self.end() > MAX_LOGICAL_BLOCKS {
            return Err(Error::InvalidArgument(format!("extent {self:?} cannot be encoded")));
        }
        let len = if self.unwritten { self.len + INIT_MAX_LEN } else { self.len };
        Ok(RawExtent {
            block: self.lblk,
            len: len as u16,
            start_hi: (self.pblk >> 32) as u16,
            start_lo: self.pblk as u32,
        })
    }

    /// One past the last logical block.
    pub fn end(&self) -> u64 {
        self.lblk as u64 + self.len as u64
    }
}

/// An index entry: the subtree at block `leaf` covers logical blocks from `lblk`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtentIndex {
    /// First logical block covered by the subtree.
    pub lblk: u32,
    /// Physical block of the child node (48 bits).
    pub leaf: u64,
}

impl ExtentIndex {
    /// Decodes an index entry.
    pub fn from_raw(raw: &RawExtentIndex) -> Self {
        ExtentIndex { lblk: raw.block, leaf: (raw.leaf_hi as u64) << 32 | raw.leaf_lo as u64 }
    }

    /// Encodes the entry; fails if the child block needs more than 48 bits.
    pub fn to_raw(&self) -> Result<RawExtentIndex> {
        if self.leaf > MAX_PHYSICAL_BLOCK {
            return Err(Error::InvalidArgument(format!("extent index {self:?} cannot be encoded")));
        }
        Ok(RawExtentIndex { block: self.lblk, leaf_lo: self.leaf as u32, leaf_hi: (self.leaf >> 32) as u16, unused: 0 })
    }
}

/// The entries of a node: extents in a leaf (depth 0), indexes above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtentEntries {
    /// Entries of a leaf node, sorted and non-overlapping.
    Leaves(Vec<Extent>),
    /// Entries of an index node, strictly ascending by `lblk`.
    Indexes(Vec<ExtentIndex>),
}

impl ExtentEntries {
    /// Number of entries.
    pub fn len(&self) -> usize {
        match self {
            ExtentEntries::Leaves(v) => v.len(),
            ExtentEntries::Indexes(v) => v.len(),
        }
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a node is stored, which decides its capacity and whether it has a tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodePlace {
    /// In the inode's `i_block` (no checksum tail).
    Root,
    /// In a tree block (checksum tail after `eh_max` entries).
    Block,
}

/// A parsed extent tree node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtentNode {
    /// The header as stored (`entries` matches `self.entries.len()` after decode).
    pub header: ExtentHeader,
    /// The valid entries.
    pub entries: ExtentEntries,
}

/// Byte offset of the tail of a block node whose header says `max` entries.
pub fn tail_offset(max: u16) -> usize {
    ExtentHeader::SIZE + max as usize * ENTRY_SIZE
}

impl ExtentNode {
    /// Decodes and validates a node from `b` (the 60 bytes of `i_block`, or a
    /// whole block): magic, `eh_max` nonzero and fitting `b` (with the tail
    /// for block nodes), `entries <= max`, depth at most [`MAX_DEPTH`], no
    /// empty index node, index keys strictly ascending, extents non-empty,
    /// sorted, non-overlapping and within the 32-bit logical space.
    /// `location` names the node in errors.
    pub fn decode(b: &[u8], place: NodePlace, location: Location) -> Result<ExtentNode> {
        let bad = |reason: String| Error::corrupt("extent tree node", location, reason);
        if b.len() < ExtentHeader::SIZE {
            return Err(bad(format!("buffer of {} bytes cannot hold a header", b.len())));
        }
        let header = ExtentHeader::decode(b);
        if header.magic != EXTENT_MAGIC {
            return Err(bad(format!("bad magic {:#06x}", header.magic)));
        }
        let tail = if place == NodePlace::Block { ExtentTail::SIZE } else { 0 };
        if header.max == 0 || tail_offset(header.max) + tail > b.len() {
            return Err(bad(format!("eh_max {} does not fit a {}-byte node", header.max, b.len())));
        }
        if header.entries > header.max {
            return Err(bad(format!("eh_entries {} exceeds eh_max {}", header.entries, header.max)));
        }
        if header.depth > MAX_DEPTH {
            return Err(bad(format!("depth {} exceeds the maximum {MAX_DEPTH}", header.depth)));
        }
        let raw = |i: usize| &b[ExtentHeader::SIZE + i * ENTRY_SIZE..];
        let n = header.entries as usize;
        let entries = if header.depth == 0 {
            let mut v = Vec::with_capacity(n);
            let mut next_free = 0u64;
            for i in 0..n {
                let e = Extent::from_raw(&RawExtent::decode(raw(i)));
                if e.len == 0 {
                    return Err(bad(format!("extent {i} has length 0")));
                }
                if e.end() > MAX_LOGICAL_BLOCKS {
                    return Err(bad(format!("extent {i} runs past logical block 2^32")));
                }
                if (e.lblk as u64) < next_free {
                    return Err(bad(format!("extent {i} at logical block {} overlaps or is out of order", e.lblk)));
                }
                next_free = e.end();
                v.push(e);
            }
            ExtentEntries::Leaves(v)
        } else {
            if n == 0 {
                return Err(bad(format!("index node at depth {} has no entries", header.depth)));
            }
            let mut v: Vec<ExtentIndex> = Vec::with_capacity(n);
            for i in 0..n {
                let e = ExtentIndex::from_raw(&RawExtentIndex::decode(raw(i)));
                if v.last().is_some_and(|p| p.lblk >= e.lblk) {
                    return Err(bad(format!("index {i} at logical block {} is out of order", e.lblk)));
                }
                v.push(e);
            }
            ExtentEntries::Indexes(v)
        };
        Ok(ExtentNode { header, entries })
    }

    /// Encodes the node into `b`: the header (with `eh_entries` set from the
    /// entries) and the entries. Fails if the node does not fit `b` or its
    /// header (capacity, depth vs. entry kind) contradicts its entries. The
    /// tail of a block node is written separately by [`set_checksum`].
    pub fn encode(&self, b: &mut [u8], place: NodePlace) -> Result<()> {
        let n = self.entries.len();
        let tail = if place == NodePlace::Block { ExtentTail::SIZE } else { 0 };
        let leaf = matches!(self.entries, ExtentEntries::Leaves(_));
        if n > self.header.max as usize
            || tail_offset(self.header.max) + tail > b.len()
            || leaf != (self.header.depth == 0)
        {
            return Err(Error::InvalidArgument(format!(
                "extent node {:?} does not fit or is inconsistent",
                self.header
            )));
        }
        ExtentHeader { magic: EXTENT_MAGIC, entries: n as u16, ..self.header }.encode(b);
        let slot = |i: usize| ExtentHeader::SIZE + i * ENTRY_SIZE;
        match &self.entries {
            ExtentEntries::Leaves(v) => {
                for (i, e) in v.iter().enumerate() {
                    e.to_raw()?.encode(&mut b[slot(i)..]);
                }
            }
            ExtentEntries::Indexes(v) => {
                for (i, e) in v.iter().enumerate() {
                    e.to_raw()?.encode(&mut b[slot(i)..]);
                }
            }
        }
        Ok(())
    }
}

/// The metadata_csum checksum of an extent tree block: crc32c over the
/// inode number, the inode's generation and the block up to its tail.
/// `None` if the header's `eh_max` puts the tail outside the block.
pub fn compute_checksum(csum_seed: u32, ino: u32, generation: u32, block: &[u8]) -> Option<u32> {
    if block.len() < ExtentHeader::SIZE {
        return None;
    }
    let off = tail_offset(ExtentHeader::decode(block).max);
    if off + ExtentTail::SIZE > block.len() {
        return None;
    }
    let c = crc32c(csum_seed, &ino.to_le_bytes());
    let c = crc32c(c, &generation.to_le_bytes());
    Some(crc32c(c, &block[..off]))
}

/// Whether the tail checksum of an extent tree block is correct.
pub fn verify_checksum(csum_seed: u32, ino: u32, generation: u32, block: &[u8]) -> bool {
    match compute_checksum(csum_seed, ino, generation, block) {
        Some(want) => ExtentTail::decode(&block[tail_offset(ExtentHeader::decode(block).max)..]).checksum == want,
        None => false,
    }
}

/// Computes and stores the tail checksum of an extent tree block; fails if
/// the header's `eh_max` leaves no room for the tail.
pub fn set_checksum(csum_seed: u32, ino: u32, generation: u32, block: &mut [u8]) -> Result<()> {
    let checksum = compute_checksum(csum_seed, ino, generation, block)
        .ok_or_else(|| Error::InvalidArgument("extent block has no room for its tail".into()))?;
    let off = tail_offset(ExtentHeader::decode(block).max);
    ExtentTail { checksum }.encode(&mut block[off..]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOC: Location = Location::Block(7);

    fn leaf(extents: Vec<Extent>, max: u16) -> ExtentNode {
        let header = ExtentHeader { magic: EXTENT_MAGIC, entries: extents.len() as u16, max, depth: 0, generation: 0 };
        ExtentNode { header, entries: ExtentEntries::Leaves(extents) }
    }

    fn ext(lblk: u32, len: u32, pblk: u64, unwritten: bool) -> Extent {
        Extent { lblk, len, pblk, unwritten }
    }

    #[test]
    fn capacities() {
        assert_eq!(ROOT_CAPACITY, 4);
        assert_eq!(block_capacity(1024), 84);
        assert_eq!(block_capacity(4096), 340);
        assert_eq!(block_capacity(65536), 5460);
        assert_eq!(block_capacity(8), 0);
        for bs in [1024usize, 2048, 4096, 65536] {
            assert!(tail_offset(block_capacity(bs)) + ExtentTail::SIZE <= bs);
            // The kernel's ext4_ext_space_block(): (blocksize - header) / entry.
            assert_eq!(block_capacity(bs) as usize, (bs - ExtentHeader::SIZE) / ENTRY_SIZE);
        }
    }

    #[test]
    fn length_encoding() {
        let raw = |len: u16| RawExtent { block: 0, len, start_hi: 0, start_lo: 1 };
        assert_eq!(Extent::from_raw(&raw(32768)), ext(0, 32768, 1, false));
        assert_eq!(Extent::from_raw(&raw(32769)), ext(0, 1, 1, true));
        assert_eq!(Extent::from_raw(&raw(65535)), ext(0, 32767, 1, true));
        assert_eq!(ext(0, 32767, 1, true).to_raw().unwrap().len, 65535);
        assert_eq!(ext(0, 32768, 1, false).to_raw().unwrap().len, 32768);
        assert!(ext(0, 32768, 1, true).to_raw().is_err());
        assert!(ext(0, 0, 1, false).to_raw().is_err());
        assert!(ext(0, 1, 1 << 48, false).to_raw().is_err());
        let hi = ext(5, 3, 0x1234_5678_9abc, false);
        assert_eq!(Extent::from_raw(&hi.to_raw().unwrap()), hi);
    }

    #[test]
    fn root_roundtrip() {
        let node = leaf(vec![ext(0, 10, 100, false), ext(10, 5, 200, true), ext(40, 32768, 1 << 40, false)], 4);
        let mut b = [0u8; 60];
        node.encode(&mut b, NodePlace::Root).unwrap();
        assert_eq!(ExtentNode::decode(&b, NodePlace::Root, LOC).unwrap(), node);
        let idx = ExtentNode {
            header: ExtentHeader { magic: EXTENT_MAGIC, entries: 2, max: 4, depth: 2, generation: 9 },
            entries: ExtentEntries::Indexes(vec![
                ExtentIndex { lblk: 0, leaf: 5 },
                ExtentIndex { lblk: 100, leaf: 0xffff_0000_0001 },
            ]),
        };
        idx.encode(&mut b, NodePlace::Root).unwrap();
        assert_eq!(ExtentNode::decode(&b, NodePlace::Root, LOC).unwrap(), idx);
    }

    #[test]
    fn block_checksum() {
        let mut b = vec![0u8; 1024];
        let node = leaf(vec![ext(0, 1, 50, false)], 84);
        node.encode(&mut b, NodePlace::Block).unwrap();
        set_checksum(0xdead_beef, 12, 3, &mut b).unwrap();
        assert!(verify_checksum(0xdead_beef, 12, 3, &b));
        assert!(!verify_checksum(0xdead_beef, 13, 3, &b));
        assert!(!verify_checksum(0xdead_beef, 12, 4, &b));
        // The tail sits right after eh_max entries: the last 4 bytes here.
        let stored = ExtentTail::decode(&b[1020..]).checksum;
        assert_eq!(Some(stored), compute_checksum(0xdead_beef, 12, 3, &b));
        b[100] ^= 1;
        assert!(!verify_checksum(0xdead_beef, 12, 3, &b));
        // Bytes after the tail are not covered.
        b[100] ^= 1;
        let mut big = b.clone();
        big.extend_from_slice(&[0xAA; 8]);
        assert!(verify_checksum(0xdead_beef, 12, 3, &big));
        // A header whose eh_max puts the tail outside the block never verifies.
        ExtentHeader { max: 85, ..ExtentHeader::decode(&b) }.encode(&mut b);
        assert!(!verify_checksum(0xdead_beef, 12, 3, &b));
        assert!(set_checksum(0xdead_beef, 12, 3, &mut b).is_err());
    }

    fn corrupt(b: &[u8], place: NodePlace) -> bool {
        matches!(ExtentNode::decode(b, place, LOC), Err(Error::Corrupt { .. }))
    }

    #[test]
    fn validation_failures() {
        let mut good = [0u8; 60];
        leaf(vec![ext(0, 2, 10, false), ext(5, 1, 20, false)], 4).encode(&mut good, NodePlace::Root).unwrap();
        assert!(!corrupt(&good, NodePlace::Root));
        let with = |f: &dyn Fn(&mut ExtentHeader)| {
            let mut b = good;
            let mut h = ExtentHeader::decode(&b);
            f(&mut h);
            h.encode(&mut b);
            b
        };
        assert!(corrupt(&with(&|h| h.magic = 0xF30B), NodePlace::Root));
        assert!(corrupt(&with(&|h| h.max = 5), NodePlace::Root));
        assert!(corrupt(&with(&|h| h.max = 0), NodePlace::Root));
        assert!(corrupt(&with(&|h| h.max = 1), NodePlace::Root));
        assert!(corrupt(&with(&|h| h.depth = 6), NodePlace::Root));
        assert!(!corrupt(&with(&|h| h.entries = 0), NodePlace::Root), "an empty leaf is valid");
        assert!(corrupt(
            &with(&|h| {
                h.depth = 1;
                h.entries = 0
            }),
            NodePlace::Root
        ));
        assert!(corrupt(&good[..11], NodePlace::Root));
        // 4 entries fill 60 bytes exactly, leaving no room for a tail.
        assert!(corrupt(&good, NodePlace::Block));

        let mut b = [0u8; 60];
        let enc = |b: &mut [u8], v: Vec<Extent>| {
            let n = v.len();
            // Raw encoding, bypassing to_raw's checks, to build bad nodes.
            let raws: Vec<RawExtent> = v
                .iter()
                .map(|e| RawExtent { block: e.lblk, len: e.len as u16, start_hi: 0, start_lo: e.pblk as u32 })
                .collect();
            ExtentHeader { magic: EXTENT_MAGIC, entries: n as u16, max: 4, depth: 0, generation: 0 }.encode(b);
            for (i, r) in raws.iter().enumerate() {
                r.encode(&mut b[12 + 12 * i..]);
            }
        };
        enc(&mut b, vec![ext(5, 2, 10, false), ext(6, 1, 20, false)]);
        assert!(corrupt(&b, NodePlace::Root), "overlap");
        enc(&mut b, vec![ext(5, 2, 10, false), ext(1, 1, 20, false)]);
        assert!(corrupt(&b, NodePlace::Root), "unsorted");
        enc(&mut b, vec![ext(u32::MAX, 2, 10, false)]);
        assert!(corrupt(&b, NodePlace::Root), "past 2^32");
        enc(&mut b, vec![ext(u32::MAX, 1, 10, false)]);
        assert!(!corrupt(&b, NodePlace::Root), "last block is addressable");
        RawExtent { block: 9, len: 0, start_hi: 0, start_lo: 1 }.encode(&mut b[12..]);
        assert!(corrupt(&b, NodePlace::Root), "zero length");

        ExtentHeader { magic: EXTENT_MAGIC, entries: 2, max: 4, depth: 1, generation: 0 }.encode(&mut b);
        ExtentIndex { lblk: 10, leaf: 3 }.to_raw().unwrap().encode(&mut b[12..]);
        ExtentIndex { lblk: 10, leaf: 4 }.to_raw().unwrap().encode(&mut b[24..]);
        assert!(corrupt(&b, NodePlace::Root), "duplicate index key");
    }

    #[test]
    fn encode_rejects_inconsistent_nodes() {
        let mut b = [0u8; 60];
        assert!(leaf(vec![ext(0, 1, 1, false); 5], 5).encode(&mut b, NodePlace::Root).is_err());
        let mut wrong_depth = leaf(vec![ext(0, 1, 1, false)], 4);
        wrong_depth.header.depth = 1;
        assert!(wrong_depth.encode(&mut b, NodePlace::Root).is_err());
        assert!(leaf(vec![ext(0, 1, 1, false)], 4).encode(&mut b, NodePlace::Block).is_err());
    }
}
