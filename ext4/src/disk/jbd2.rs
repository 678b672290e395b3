//! The on-disk structures of the jbd2 journal, all big-endian: the journal
//! superblock, the common block header, descriptor blocks and their tags,
//! revoke blocks, commit blocks, the checksum tail of descriptor and revoke
//! blocks, and every jbd2 checksum (v1 transactional crc32_be is computed by
//! the log walk from [`crate::disk::checksum::crc32_be`]; v2/v3 crc32c here).
//!
//! Each structure has one decoder and one encoder so that the journaled
//! writes of a later issue produce exactly what recovery parses.

use super::checksum::crc32c;
use super::codec::{be32, be64, layout, layout_be};
use crate::error::{Error, Location, Result};

/// `h_magic` of every journal metadata block.
pub const MAGIC: u32 = 0xC03B_3998;

/// `h_blocktype`: descriptor block (tags of the data blocks that follow).
pub const BLOCKTYPE_DESCRIPTOR: u32 = 1;
/// `h_blocktype`: commit block (ends a transaction).
pub const BLOCKTYPE_COMMIT: u32 = 2;
/// `h_blocktype`: journal superblock, version 1.
pub const BLOCKTYPE_SUPERBLOCK_V1: u32 = 3;
/// `h_blocktype`: journal superblock, version 2.
pub const BLOCKTYPE_SUPERBLOCK_V2: u32 = 4;
/// `h_blocktype`: revoke block (blocks not to replay from earlier transactions).
pub const BLOCKTYPE_REVOKE: u32 = 5;

/// Compat feature: v1 transaction checksum (crc32_be of descriptor and data
/// blocks, stored in the commit block).
pub const COMPAT_CHECKSUM: u32 = 0x1;
/// Incompat feature: revoke blocks are in use.
pub const INCOMPAT_REVOKE: u32 = 0x1;
/// Incompat feature: block numbers in tags and revoke records are 64-bit.
pub const INCOMPAT_64BIT: u32 = 0x2;
/// Incompat feature: commit blocks are written without waiting for the data blocks.
pub const INCOMPAT_ASYNC_COMMIT: u32 = 0x4;
/// Incompat feature: v2 checksums (crc32c; 16-bit data tag checksums).
pub const INCOMPAT_CSUM_V2: u32 = 0x8;
/// Incompat feature: v3 checksums (crc32c; 32-bit data tag checksums in 16-byte tags).
pub const INCOMPAT_CSUM_V3: u32 = 0x10;
/// Incompat feature: a fast-commit area follows the regular log.
pub const INCOMPAT_FAST_COMMIT: u32 = 0x20;
/// Every incompat feature this implementation understands.
pub const KNOWN_INCOMPAT: u32 = INCOMPAT_REVOKE
    | INCOMPAT_64BIT
    | INCOMPAT_ASYNC_COMMIT
    | INCOMPAT_CSUM_V2
    | INCOMPAT_CSUM_V3
    | INCOMPAT_FAST_COMMIT;
/// Every ro_compat feature this implementation understands (none exist).
pub const KNOWN_RO_COMPAT: u32 = 0;

/// `s_checksum_type` / `h_chksum_type`: crc32 (v1 commit checksums).
pub const CHECKSUM_TYPE_CRC32: u8 = 1;
/// `s_checksum_type`: crc32c (v2/v3).
pub const CHECKSUM_TYPE_CRC32C: u8 = 4;
/// `h_chksum_size` of a v1 crc32 commit checksum.
pub const CRC32_CHECKSUM_SIZE: u8 = 4;

/// Tag flag: the logged copy had its leading magic zeroed (restore on replay).
pub const FLAG_ESCAPE: u32 = 0x1;
/// Tag flag: no UUID follows this tag (same as the previous tag's).
pub const FLAG_SAME_UUID: u32 = 0x2;
/// Tag flag: block deleted by this transaction (unused by recovery).
pub const FLAG_DELETED: u32 = 0x4;
/// Tag flag: last tag of the descriptor block.
pub const FLAG_LAST_TAG: u32 = 0x8;

/// Fast-commit blocks reserved when `s_num_fc_blks` is zero.
pub const DEFAULT_FAST_COMMIT_BLOCKS: u32 = 256;

/// Size of the UUID that follows a tag without [`FLAG_SAME_UUID`].
const TAG_UUID_SIZE: usize = 16;

layout_be! {
    /// The header that starts every journal metadata block (`journal_header_t`).
    pub struct Header (12) {
        0 => magic: u32,
        4 => blocktype: u32,
        8 => sequence: u32,
    }
}

impl Header {
    /// The header of a block of `blocktype` in transaction `sequence`.
    pub fn new(blocktype: u32, sequence: u32) -> Self {
        Header { magic: MAGIC, blocktype, sequence }
    }
}

layout_be! {
    /// The journal superblock (`journal_superblock_t`), in journal block 0.
    /// Field names follow the kernel without the `s_` prefix; the first three
    /// are its block header.
    pub struct JournalSuperblock (1024) {
        0x000 => magic: u32,
        0x004 => blocktype: u32,
        0x008 => header_sequence: u32,
        0x00C => blocksize: u32,
        0x010 => maxlen: u32,
        0x014 => first: u32,
        0x018 => sequence: u32,
        0x01C => start: u32,
        0x020 => errno: i32,
        0x024 => feature_compat: u32,
        0x028 => feature_incompat: u32,
        0x02C => feature_ro_compat: u32,
        0x030 => uuid: [u8; 16],
        0x040 => nr_users: u32,
        0x044 => dynsuper: u32,
        0x048 => max_transaction: u32,
        0x04C => max_trans_data: u32,
        0x050 => checksum_type: u8,
        0x051 => padding2: [u8; 3],
        0x054 => num_fc_blks: u32,
        0x058 => head: u32,
        0x05C => padding: [u32; 40],
        0x0FC => checksum: u32,
        0x100 => users: [u8; 768],
    }
}

impl JournalSuperblock {
    /// Format version: 1 or 2 (0 when the block type is not a superblock).
    pub fn version(&self) -> u32 {
        match self.blocktype {
            BLOCKTYPE_SUPERBLOCK_V1 => 1,
            BLOCKTYPE_SUPERBLOCK_V2 => 2,
            _ => 0,
        }
    }

    /// Compat features (always none in a v1 superblock, as in jbd2).
    pub fn compat(&self) -> u32 {
        if self.version() >= 2 { self.feature_compat } else { 0 }
    }

    /// Incompat features (always none in a v1 superblock).
    pub fn incompat(&self) -> u32 {
        if self.version() >= 2 { self.feature_incompat } else { 0 }
    }

    /// Ro_compat features (always none in a v1 superblock).
    pub fn ro_compat(&self) -> u32 {
        if self.version() >= 2 { self.feature_ro_compat } else { 0 }
    }

    /// Whether the v2 or v3 (crc32c) checksums are in use.
    pub fn has_csum_v2or3(&self) -> bool {
        self.incompat() & (INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3) != 0
    }

    /// Whether the v1 transaction checksum (crc32_be in commit blocks) is in use.
    pub fn has_v1_checksum(&self) -> bool {
        self.compat() & COMPAT_CHECKSUM != 0
    }

    /// Whether commit blocks may precede their data blocks on disk.
    pub fn has_async_commit(&self) -> bool {
        self.incompat() & INCOMPAT_ASYNC_COMMIT != 0
    }

    /// Whether block numbers are 64-bit.
    pub fn is_64bit(&self) -> bool {
        self.incompat() & INCOMPAT_64BIT != 0
    }

    /// Whether a fast-commit area is reserved at the end of the journal.
    pub fn has_fast_commit(&self) -> bool {
        self.incompat() & INCOMPAT_FAST_COMMIT != 0
    }

    /// Number of fast-commit blocks reserved (with the fast-commit feature).
    pub fn fast_commit_blocks(&self) -> u32 {
        if self.num_fc_blks == 0 { DEFAULT_FAST_COMMIT_BLOCKS } else { self.num_fc_blks }
    }

    /// One past the last block of the regular log (`j_last`): the log wraps
    /// from here back to [`Self::first`]. Fast-commit blocks lie beyond it.
    pub fn log_end(&self) -> u32 {
        if self.has_fast_commit() { self.maxlen.saturating_sub(self.fast_commit_blocks()) } else { self.maxlen }
    }

    /// The format of the descriptor tags.
    pub fn tag_format(&self) -> TagFormat {
        let incompat = self.incompat();
        let csum = if incompat & INCOMPAT_CSUM_V3 != 0 {
            TagChecksum::V3
        } else if incompat & INCOMPAT_CSUM_V2 != 0 {
            TagChecksum::V2
        } else {
            TagChecksum::None
        };
        TagFormat { csum, is_64bit: self.is_64bit() }
    }

    /// The seed of the v2/v3 block checksums: crc32c over the journal UUID.
    pub fn csum_seed(&self) -> Option<u32> {
        self.has_csum_v2or3().then(|| crc32c(!0, &self.uuid))
    }

    /// Computes the superblock checksum over `raw` (at least [`Self::SIZE`]
    /// bytes): crc32c of the 1024-byte structure with the checksum zeroed.
    pub fn compute_checksum(raw: &[u8]) -> u32 {
        let mut copy = raw[..Self::SIZE].to_vec();
        let mut sb = Self::decode(&copy);
        sb.checksum = 0;
        sb.encode(&mut copy);
        crc32c(!0, &copy)
    }

    /// Encodes the superblock into `raw` and, with v2/v3 checksums, refreshes
    /// its checksum.
    pub fn encode_with_checksum(&mut self, raw: &mut [u8]) {
        self.encode(raw);
        if self.has_csum_v2or3() {
            self.checksum = Self::compute_checksum(raw);
            self.encode(raw);
        }
    }

    /// Decodes and validates the journal superblock of a journal of
    /// `journal_blocks` blocks of `block_size` bytes (the file system's).
    ///
    /// Refuses what jbd2 refuses: a bad magic or block type, unknown
    /// incompat or ro_compat features, conflicting checksum features, an
    /// unknown checksum type, a bad checksum, a journal shared by several
    /// file systems, and a geometry (block size, length, log bounds) that
    /// does not fit the journal.
    pub fn parse(raw: &[u8], block_size: u32, journal_blocks: u64) -> Result<JournalSuperblock> {
        let loc = Location::JournalBlock(0);
        if raw.len() < Self::SIZE {
            return Err(Error::OutOfBounds { what: "journal superblock", location: loc });
        }
        let sb = Self::decode(raw);
        let bad = |reason: String| Error::corrupt("journal superblock", loc, reason);
        if sb.magic != MAGIC {
            return Err(bad(format!("bad magic {:#010x}", sb.magic)));
        }
        if sb.version() == 0 {
            return Err(bad(format!("block type {} is not a journal superblock", sb.blocktype)));
        }
        let unknown = sb.incompat() & !KNOWN_INCOMPAT;
        if unknown != 0 {
            return Err(Error::Unsupported(format!("unknown journal incompatible features {unknown:#x}")));
        }
        let unknown = sb.ro_compat() & !KNOWN_RO_COMPAT;
        if unknown != 0 {
            return Err(Error::Unsupported(format!("unknown journal read-only compatible features {unknown:#x}")));
        }
        if sb.incompat() & INCOMPAT_CSUM_V2 != 0 && sb.incompat() & INCOMPAT_CSUM_V3 != 0 {
            return Err(bad("both checksum v2 and v3 features set".into()));
        }
        if sb.has_csum_v2or3() && sb.has_v1_checksum() {
            return Err(bad("both checksum v1 and v2/v3 features set".into()));
        }
        if sb.has_csum_v2or3() {
            if sb.checksum_type != CHECKSUM_TYPE_CRC32C {
                return Err(bad(format!("unknown checksum type {}", sb.checksum_type)));
            }
            if Self::compute_checksum(raw) != sb.checksum {
                return Err(Error::Checksum { what: "journal superblock", location: loc });
            }
        }
        if sb.version() >= 2 && sb.nr_users > 1 {
            return Err(Error::Unsupported(format!("journal shared by {} file systems", sb.nr_users)));
        }
        if sb.blocksize != block_size {
            return Err(bad(format!("block size {} differs from the file system's {block_size}", sb.blocksize)));
        }
        if sb.maxlen as u64 > journal_blocks {
            return Err(bad(format!("length {} exceeds the journal's {journal_blocks} blocks", sb.maxlen)));
        }
        if sb.has_fast_commit() && sb.fast_commit_blocks() >= sb.maxlen {
            return Err(bad(format!("{} fast-commit blocks in a journal of {}", sb.fast_commit_blocks(), sb.maxlen)));
        }
        if sb.first == 0 || sb.first >= sb.log_end() {
            return Err(bad(format!("first log block {} outside 1..{}", sb.first, sb.log_end())));
        }
        if sb.start != 0 && (sb.start < sb.first || sb.start >= sb.log_end()) {
            return Err(bad(format!("log start {} outside {}..{}", sb.start, sb.first, sb.log_end())));
        }
        Ok(sb)
    }
}

/// Which checksum, if any, descriptor tags carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagChecksum {
    /// No per-block checksum.
    None,
    /// v2: the low 16 bits of the block's crc32c.
    V2,
    /// v3: the full 32-bit crc32c, in 16-byte tags.
    V3,
}

/// The format of descriptor tags and revoke records, fixed per journal by
/// its features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagFormat {
    /// Per-block checksum carried by each tag.
    pub csum: TagChecksum,
    /// Whether block numbers are 64-bit.
    pub is_64bit: bool,
}

layout_be! {
    /// A descriptor tag with a v3 checksum (`journal_block_tag3_t`).
    pub struct BlockTag3 (16) {
        0 => blocknr: u32,
        4 => flags: u32,
        8 => blocknr_high: u32,
        12 => checksum: u32,
    }
}

layout_be! {
    /// A descriptor tag without or with a 16-bit checksum
    /// (`journal_block_tag_t`); only the first [`TagFormat::tag_size`]
    /// bytes of it are on disk.
    pub struct BlockTagV2 (12) {
        0 => blocknr: u32,
        4 => checksum: u16,
        6 => flags: u16,
        8 => blocknr_high: u32,
    }
}

/// A decoded descriptor tag: where the next logged block belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockTag {
    /// Home block number in the file system.
    pub blocknr: u64,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Checksum of the logged block (16 significant bits with v2, 0 without).
    pub checksum: u32,
}

impl TagFormat {
    /// Size of one tag on disk (`journal_tag_bytes`), not counting the UUID
    /// that follows a tag without [`FLAG_SAME_UUID`].
    pub fn tag_size(self) -> usize {
        match self.csum {
            TagChecksum::V3 => BlockTag3::SIZE,
            // journal_block_tag_t, plus 2 bytes with v2, minus the high
            // block number without 64BIT.
            TagChecksum::V2 => BlockTagV2::SIZE + 2 - if self.is_64bit { 0 } else { 4 },
            TagChecksum::None => BlockTagV2::SIZE - if self.is_64bit { 0 } else { 4 },
        }
    }

    /// Whether descriptor and revoke blocks end with a checksum tail.
    pub fn has_tail(self) -> bool {
        self.csum != TagChecksum::None
    }

    /// Size of one revoke record.
    pub fn revoke_record_size(self) -> usize {
        if self.is_64bit { 8 } else { 4 }
    }

    /// Decodes one tag from the start of `b` (which holds at least
    /// [`Self::tag_size`] bytes).
    pub fn decode_tag(self, b: &[u8]) -> BlockTag {
        let mut raw = [0u8; BlockTag3::SIZE];
        let n = self.tag_size().min(b.len());
        raw[..n].copy_from_slice(&b[..n]);
        let high = |h: u32| if self.is_64bit { (h as u64) << 32 } else { 0 };
        match self.csum {
            TagChecksum::V3 => {
                let t = BlockTag3::decode(&raw);
                BlockTag { blocknr: t.blocknr as u64 | high(t.blocknr_high), flags: t.flags, checksum: t.checksum }
            }
            TagChecksum::V2 | TagChecksum::None => {
                let t = BlockTagV2::decode(&raw);
                let checksum = if self.csum == TagChecksum::V2 { t.checksum as u32 } else { 0 };
                BlockTag { blocknr: t.blocknr as u64 | high(t.blocknr_high), flags: t.flags as u32, checksum }
            }
        }
    }

    /// Encodes `tag` into the first [`Self::tag_size`] bytes of `b`.
    pub fn encode_tag(self, tag: &BlockTag, b: &mut [u8]) {
        let mut raw = [0u8; BlockTag3::SIZE];
        let lo = tag.blocknr as u32;
        let hi = if self.is_64bit { (tag.blocknr >> 32) as u32 } else { 0 };
        match self.csum {
            TagChecksum::V3 => {
                BlockTag3 { blocknr: lo, flags: tag.flags, blocknr_high: hi, checksum: tag.checksum }.encode(&mut raw)
            }
            TagChecksum::V2 | TagChecksum::None => {
                let checksum = if self.csum == TagChecksum::V2 { tag.checksum as u16 } else { 0 };
                BlockTagV2 { blocknr: lo, checksum, flags: tag.flags as u16, blocknr_high: hi }.encode(&mut raw)
            }
        }
        let n = self.tag_size();
        b[..n].copy_from_slice(&raw[..n]);
    }

    /// Whether a tag's stored checksum matches `computed`, the
    /// [`data_block_checksum`] of its logged block. Always true without
    /// v2/v3 checksums.
    pub fn tag_checksum_matches(self, tag: &BlockTag, computed: u32) -> bool {
        match self.csum {
            TagChecksum::None => true,
            TagChecksum::V2 => tag.checksum as u16 == computed as u16,
            TagChecksum::V3 => tag.checksum == computed,
        }
    }

    /// The value stored in a tag for a block whose [`data_block_checksum`]
    /// is `computed`.
    pub fn tag_checksum(self, computed: u32) -> u32 {
        match self.csum {
            TagChecksum::None => 0,
            TagChecksum::V2 => computed & 0xFFFF,
            TagChecksum::V3 => computed,
        }
    }

    /// End of the area of a descriptor or revoke block that records may use.
    fn usable(self, block_len: usize) -> usize {
        block_len.saturating_sub(if self.has_tail() { BlockTail::SIZE } else { 0 })
    }

    /// The tags of a descriptor block, in order, as jbd2 walks them: from
    /// after the header, each tag followed by a UUID unless flagged
    /// [`FLAG_SAME_UUID`], until a [`FLAG_LAST_TAG`] or until no further
    /// tag fits before the checksum tail. At most one tag per
    /// `tag_size` bytes of the block.
    pub fn parse_descriptor(self, block: &[u8]) -> Vec<BlockTag> {
        let limit = self.usable(block.len());
        let size = self.tag_size();
        let mut tags = Vec::new();
        let mut off = Header::SIZE;
        while off + size <= limit {
            let tag = self.decode_tag(&block[off..off + size]);
            tags.push(tag);
            off += size;
            if tag.flags & FLAG_SAME_UUID == 0 {
                off += TAG_UUID_SIZE;
            }
            if tag.flags & FLAG_LAST_TAG != 0 {
                break;
            }
        }
        tags
    }

    /// Encodes a descriptor block of transaction `sequence` holding `tags`
    /// exactly as given (flags included), writing `uuid` after each tag
    /// without [`FLAG_SAME_UUID`]. The rest of the block is zeroed; the
    /// checksum tail is left for [`set_block_tail`].
    pub fn encode_descriptor(self, block: &mut [u8], sequence: u32, tags: &[BlockTag], uuid: &[u8; 16]) -> Result<()> {
        let limit = self.usable(block.len());
        let size = self.tag_size();
        block.fill(0);
        Header::new(BLOCKTYPE_DESCRIPTOR, sequence).encode(block);
        let mut off = Header::SIZE;
        for tag in tags {
            let uuid_len = if tag.flags & FLAG_SAME_UUID == 0 { TAG_UUID_SIZE } else { 0 };
            if off + size + uuid_len > limit {
                return Err(Error::InvalidArgument(format!("{} descriptor tags do not fit a block", tags.len())));
            }
            self.encode_tag(tag, &mut block[off..]);
            off += size;
            block[off..off + uuid_len].copy_from_slice(&uuid[..uuid_len]);
            off += uuid_len;
        }
        Ok(())
    }

    /// The block numbers of a revoke block, in order. Fails when the
    /// recorded byte count runs into the checksum tail or past the block.
    pub fn parse_revoke(self, block: &[u8], location: Location) -> Result<Vec<u64>> {
        let header = RevokeHeader::decode(block);
        let count = header.count as usize;
        if count > self.usable(block.len()) {
            return Err(Error::corrupt(
                "journal revoke block",
                location,
                format!("record bytes {count} exceed the block"),
            ));
        }
        let rec = self.revoke_record_size();
        let mut blocks = Vec::with_capacity(count.saturating_sub(RevokeHeader::SIZE) / rec);
        let mut off = RevokeHeader::SIZE;
        while off + rec <= count {
            blocks.push(if self.is_64bit { be64(block, off) } else { be32(block, off) as u64 });
            off += rec;
        }
        Ok(blocks)
    }

    /// Encodes a revoke block of transaction `sequence` holding `blocks`.
    /// The rest of the block is zeroed; the checksum tail is left for
    /// [`set_block_tail`].
    pub fn encode_revoke(self, block: &mut [u8], sequence: u32, blocks: &[u64]) -> Result<()> {
        let rec = self.revoke_record_size();
        let count = RevokeHeader::SIZE + blocks.len() * rec;
        if count > self.usable(block.len()) {
            return Err(Error::InvalidArgument(format!("{} revoke records do not fit a block", blocks.len())));
        }
        block.fill(0);
        RevokeHeader { magic: MAGIC, blocktype: BLOCKTYPE_REVOKE, sequence, count: count as u32 }.encode(block);
        for (i, &b) in blocks.iter().enumerate() {
            let off = RevokeHeader::SIZE + i * rec;
            if self.is_64bit {
                block[off..off + 8].copy_from_slice(&b.to_be_bytes());
            } else {
                block[off..off + 4].copy_from_slice(&(b as u32).to_be_bytes());
            }
        }
        Ok(())
    }
}

layout_be! {
    /// The header of a revoke block (`jbd2_journal_revoke_header_t`):
    /// `count` is the number of bytes used, header included.
    pub struct RevokeHeader (16) {
        0 => magic: u32,
        4 => blocktype: u32,
        8 => sequence: u32,
        12 => count: u32,
    }
}

layout_be! {
    /// The checksum tail in the last bytes of descriptor and revoke blocks
    /// with v2/v3 checksums (`jbd2_journal_block_tail`).
    pub struct BlockTail (4) {
        0 => checksum: u32,
    }
}

/// crc32c of a descriptor or revoke block with its tail checksum taken as zero.
pub fn block_tail_checksum(seed: u32, block: &[u8]) -> u32 {
    let body = block.len().saturating_sub(BlockTail::SIZE);
    crc32c(crc32c(seed, &block[..body]), &[0u8; BlockTail::SIZE])
}

/// Whether the tail checksum of a descriptor or revoke block is right.
pub fn verify_block_tail(seed: u32, block: &[u8]) -> bool {
    let body = block.len().saturating_sub(BlockTail::SIZE);
    block.len() >= BlockTail::SIZE && BlockTail::decode(&block[body..]).checksum == block_tail_checksum(seed, block)
}

/// Stores the tail checksum of a descriptor or revoke block.
pub fn set_block_tail(seed: u32, block: &mut [u8]) {
    let body = block.len() - BlockTail::SIZE;
    BlockTail { checksum: block_tail_checksum(seed, block) }.encode(&mut block[body..]);
}

layout_be! {
    /// The commit block (`struct commit_header`). With the v1 checksum
    /// feature `chksum[0]` holds the transaction's crc32_be; with v2/v3 it
    /// holds the crc32c of the commit block itself.
    pub struct CommitHeader (60) {
        0 => magic: u32,
        4 => blocktype: u32,
        8 => sequence: u32,
        12 => chksum_type: u8,
        13 => chksum_size: u8,
        14 => padding: [u8; 2],
        16 => chksum: [u32; 8],
        48 => commit_sec: u64,
        56 => commit_nsec: u32,
    }
}

/// crc32c of a commit block with `chksum[0]` taken as zero (v2/v3).
pub fn commit_checksum(seed: u32, block: &[u8]) -> u32 {
    let mut copy = block.to_vec();
    let mut h = CommitHeader::decode(&copy);
    h.chksum[0] = 0;
    h.encode(&mut copy);
    crc32c(seed, &copy)
}

/// Whether the v2/v3 checksum of a commit block is right.
pub fn verify_commit_checksum(seed: u32, block: &[u8]) -> bool {
    CommitHeader::decode(block).chksum[0] == commit_checksum(seed, block)
}

/// Stores the v2/v3 checksum of a commit block.
pub fn set_commit_checksum(seed: u32, block: &mut [u8]) {
    let mut h = CommitHeader::decode(block);
    h.chksum[0] = commit_checksum(seed, block);
    h.encode(block);
}

/// The v2/v3 checksum of a logged block of transaction `sequence`:
/// crc32c(seed, be32 sequence, block contents as logged).
pub fn data_block_checksum(seed: u32, sequence: u32, data: &[u8]) -> u32 {
    crc32c(crc32c(seed, &sequence.to_be_bytes()), data)
}

/// Whether transaction id `a` comes after `b`, modulo wrap-around (`tid_gt`).
pub fn tid_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Whether transaction id `a` is `b` or comes after it (`tid_geq`).
pub fn tid_geq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) >= 0
}

/// Fast-commit tag of the block that opens a fast-commit area (ext4's
/// `EXT4_FC_TAG_HEAD`).
pub const FC_TAG_HEAD: u16 = 0x0009;

layout! {
    /// The tag-length header of an ext4 fast-commit record (`struct
    /// ext4_fc_tl`). Fast-commit records are ext4's, hence little-endian.
    pub struct FcTagLength (4) {
        0 => tag: u16,
        2 => len: u16,
    }
}

layout! {
    /// The value of a fast-commit head record (`struct ext4_fc_head`).
    pub struct FcHead (8) {
        0 => features: u32,
        4 => tid: u32,
    }
}

/// The transaction id of a fast-commit area whose first block is `block`,
/// when that block opens with a head record; `None` for an area that holds
/// no fast commit.
pub fn fast_commit_head_tid(block: &[u8]) -> Option<u32> {
    if block.len() < FcTagLength::SIZE + FcHead::SIZE {
        return None;
    }
    let tl = FcTagLength::decode(block);
    (tl.tag == FC_TAG_HEAD && tl.len as usize >= FcHead::SIZE).then(|| FcHead::decode(&block[FcTagLength::SIZE..]).tid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BS: usize = 1024;

    fn v2_superblock(incompat: u32) -> (JournalSuperblock, Vec<u8>) {
        let mut sb = JournalSuperblock {
            magic: MAGIC,
            blocktype: BLOCKTYPE_SUPERBLOCK_V2,
            blocksize: BS as u32,
            maxlen: 1024,
            first: 1,
            sequence: 7,
            start: 0,
            feature_incompat: incompat,
            uuid: *b"0123456789abcdef",
            nr_users: 1,
            checksum_type: if incompat & (INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3) != 0 { CHECKSUM_TYPE_CRC32C } else { 0 },
            ..Default::default()
        };
        let mut raw = vec![0u8; BS];
        sb.encode_with_checksum(&mut raw);
        (sb, raw)
    }

    #[test]
    fn superblock_layout_is_big_endian() {
        let (sb, raw) = v2_superblock(INCOMPAT_CSUM_V3 | INCOMPAT_64BIT);
        assert_eq!(&raw[..4], &[0xC0, 0x3B, 0x39, 0x98]);
        assert_eq!(&raw[0x0C..0x10], &(BS as u32).to_be_bytes());
        assert_eq!(&raw[0x18..0x1C], &7u32.to_be_bytes());
        assert_eq!(&raw[0x28..0x2C], &(INCOMPAT_CSUM_V3 | INCOMPAT_64BIT).to_be_bytes());
        assert_eq!(raw[0x50], CHECKSUM_TYPE_CRC32C);
        assert_eq!(&raw[0xFC..0x100], &sb.checksum.to_be_bytes());
        assert_eq!(JournalSuperblock::decode(&raw), sb);
        let parsed = JournalSuperblock::parse(&raw, BS as u32, 1024).unwrap();
        assert_eq!(parsed, sb);
        assert_eq!(parsed.tag_format(), TagFormat { csum: TagChecksum::V3, is_64bit: true });
        assert_eq!(parsed.csum_seed(), Some(crc32c(!0, b"0123456789abcdef")));
    }

    #[test]
    fn superblock_checksum_matches_independent_computation() {
        let (sb, raw) = v2_superblock(INCOMPAT_CSUM_V2);
        let mut zeroed = raw.clone();
        zeroed[0xFC..0x100].fill(0);
        assert_eq!(sb.checksum, crc32c(!0, &zeroed));
    }

    #[test]
    fn superblock_rejections() {
        let parse = |raw: &[u8]| JournalSuperblock::parse(raw, BS as u32, 1024);
        let (_, mut raw) = v2_superblock(INCOMPAT_CSUM_V3);
        raw[0x40] ^= 1; // nr_users changed under the checksum
        assert!(matches!(parse(&raw), Err(Error::Checksum { .. })));

        let (mut sb, mut raw) = v2_superblock(0x100);
        sb.encode_with_checksum(&mut raw);
        assert!(matches!(parse(&raw), Err(Error::Unsupported(m)) if m.contains("0x100")));

        let (_, raw) = v2_superblock(INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3);
        assert!(matches!(parse(&raw), Err(Error::Corrupt { .. })));

        let (mut sb, mut raw) = v2_superblock(INCOMPAT_CSUM_V3);
        sb.feature_compat = COMPAT_CHECKSUM;
        sb.encode_with_checksum(&mut raw);
        assert!(matches!(parse(&raw), Err(Error::Corrupt { .. })));

        let (mut sb, mut raw) = v2_superblock(0);
        sb.maxlen = 2048;
        sb.encode(&mut raw);
        assert!(matches!(parse(&raw), Err(Error::Corrupt { .. })));
        sb.maxlen = 1024;
        sb.start = 1024;
        sb.encode(&mut raw);
        assert!(matches!(parse(&raw), Err(Error::Corrupt { .. })));
        sb.start = 0;
        sb.first = 0;
        sb.encode(&mut raw);
        assert!(matches!(parse(&raw), Err(Error::Corrupt { .. })));
        sb.first = 1;
        sb.blocksize = 4096;
        sb.encode(&mut raw);
        assert!(matches!(parse(&raw), Err(Error::Corrupt { .. })));
        sb.blocksize = BS as u32;
        sb.nr_users = 2;
        sb.encode(&mut raw);
        assert!(matches!(parse(&raw), Err(Error::Unsupported(_))));
    }

    #[test]
    fn v1_superblock_ignores_feature_fields() {
        let (mut sb, mut raw) = v2_superblock(0);
        sb.blocktype = BLOCKTYPE_SUPERBLOCK_V1;
        sb.feature_incompat = 0xFFFF_FFFF;
        sb.encode(&mut raw);
        let parsed = JournalSuperblock::parse(&raw, BS as u32, 1024).unwrap();
        assert_eq!(parsed.version(), 1);
        assert_eq!(parsed.incompat(), 0);
        assert_eq!(parsed.tag_format(), TagFormat { csum: TagChecksum::None, is_64bit: false });
    }

    #[test]
    fn fast_commit_shortens_the_log() {
        let (mut sb, mut raw) = v2_superblock(INCOMPAT_FAST_COMMIT);
        assert_eq!(sb.log_end(), 1024 - DEFAULT_FAST_COMMIT_BLOCKS);
        sb.num_fc_blks = 10;
        assert_eq!(sb.log_end(), 1014);
        sb.num_fc_blks = 1024;
        sb.encode(&mut raw);
        assert!(JournalSuperblock::parse(&raw, BS as u32, 1024).is_err());
    }

    #[test]
    fn tag_sizes_follow_journal_tag_bytes() {
        let f = |csum, is_64bit| TagFormat { csum, is_64bit }.tag_size();
        assert_eq!(f(TagChecksum::None, false), 8);
        assert_eq!(f(TagChecksum::None, true), 12);
        assert_eq!(f(TagChecksum::V2, false), 10);
        assert_eq!(f(TagChecksum::V2, true), 14);
        assert_eq!(f(TagChecksum::V3, false), 16);
        assert_eq!(f(TagChecksum::V3, true), 16);
    }

    #[test]
    fn tag_roundtrip_all_formats() {
        for csum in [TagChecksum::None, TagChecksum::V2, TagChecksum::V3] {
            for is_64bit in [false, true] {
                let fmt = TagFormat { csum, is_64bit };
                let blocknr = if is_64bit { 0x1_2345_6789 } else { 0x2345_6789 };
                let tag =
                    BlockTag { blocknr, flags: FLAG_ESCAPE | FLAG_LAST_TAG, checksum: fmt.tag_checksum(0xDEAD_BEEF) };
                let mut b = vec![0xAAu8; fmt.tag_size()];
                fmt.encode_tag(&tag, &mut b);
                assert_eq!(fmt.decode_tag(&b), tag, "{fmt:?}");
                assert!(fmt.tag_checksum_matches(&tag, 0xDEAD_BEEF));
                assert_eq!(fmt.tag_checksum_matches(&tag, 0x1234_0000), csum == TagChecksum::None);
            }
        }
        // The v2 tag layout: blocknr, 16-bit checksum, 16-bit flags.
        let fmt = TagFormat { csum: TagChecksum::V2, is_64bit: false };
        let mut b = [0u8; 10];
        fmt.encode_tag(&BlockTag { blocknr: 0x01020304, flags: FLAG_SAME_UUID, checksum: 0xBEEF }, &mut b);
        assert_eq!(b, [1, 2, 3, 4, 0xBE, 0xEF, 0, 2, 0, 0]);
    }

    #[test]
    fn descriptor_roundtrip_with_uuid_and_tail() {
        let fmt = TagFormat { csum: TagChecksum::V3, is_64bit: true };
        let tags = [
            BlockTag { blocknr: 100, flags: 0, checksum: 1 },
            BlockTag { blocknr: 1 << 33, flags: FLAG_SAME_UUID | FLAG_ESCAPE, checksum: 2 },
            BlockTag { blocknr: 102, flags: FLAG_SAME_UUID | FLAG_LAST_TAG, checksum: 3 },
        ];
        let mut block = vec![0u8; BS];
        fmt.encode_descriptor(&mut block, 9, &tags, b"0123456789abcdef").unwrap();
        set_block_tail(0x1234, &mut block);
        assert_eq!(Header::decode(&block), Header::new(BLOCKTYPE_DESCRIPTOR, 9));
        assert_eq!(&block[12 + 16..12 + 32], b"0123456789abcdef");
        assert_eq!(fmt.parse_descriptor(&block), tags);
        assert!(verify_block_tail(0x1234, &block));
        block[40] ^= 1;
        assert!(!verify_block_tail(0x1234, &block));
    }

    #[test]
    fn descriptor_walk_stops_before_the_tail() {
        // No LAST_TAG anywhere: the walk takes every tag that fits.
        let fmt = TagFormat { csum: TagChecksum::V2, is_64bit: false };
        let mut block = vec![0u8; BS];
        Header::new(BLOCKTYPE_DESCRIPTOR, 1).encode(&mut block);
        for off in (12..BS).step_by(10) {
            if off + 10 <= BS {
                fmt.encode_tag(&BlockTag { blocknr: 5, flags: FLAG_SAME_UUID, checksum: 0 }, &mut block[off..]);
            }
        }
        assert_eq!(fmt.parse_descriptor(&block).len(), (BS - 4 - 12) / 10);
        // Tags without SAME_UUID skip 16 more bytes each.
        let fmt = TagFormat { csum: TagChecksum::None, is_64bit: false };
        let mut block = vec![0u8; BS];
        Header::new(BLOCKTYPE_DESCRIPTOR, 1).encode(&mut block);
        assert_eq!(fmt.parse_descriptor(&block).len(), (BS - 12 - 8) / 24 + 1);
        // Too many tags for a block: refused by the encoder.
        let many = vec![BlockTag { blocknr: 1, flags: FLAG_SAME_UUID, checksum: 0 }; BS / 8];
        assert!(fmt.encode_descriptor(&mut block, 1, &many, &[0; 16]).is_err());
    }

    #[test]
    fn revoke_roundtrip_and_bounds() {
        for is_64bit in [false, true] {
            let fmt = TagFormat { csum: TagChecksum::V3, is_64bit };
            let blocks = [7u64, 9, if is_64bit { 1 << 40 } else { 0xFFFF_FFFF }];
            let mut block = vec![0u8; BS];
            fmt.encode_revoke(&mut block, 3, &blocks).unwrap();
            set_block_tail(5, &mut block);
            let h = RevokeHeader::decode(&block);
            assert_eq!((h.magic, h.blocktype, h.sequence), (MAGIC, BLOCKTYPE_REVOKE, 3));
            assert_eq!(h.count as usize, 16 + 3 * fmt.revoke_record_size());
            assert_eq!(fmt.parse_revoke(&block, Location::JournalBlock(1)).unwrap(), blocks);
            assert!(verify_block_tail(5, &block));
        }
        let fmt = TagFormat { csum: TagChecksum::V3, is_64bit: false };
        let mut block = vec![0u8; BS];
        RevokeHeader { magic: MAGIC, blocktype: BLOCKTYPE_REVOKE, sequence: 1, count: BS as u32 - 3 }
            .encode(&mut block);
        assert!(fmt.parse_revoke(&block, Location::JournalBlock(1)).is_err());
        let fmt = TagFormat { csum: TagChecksum::None, is_64bit: false };
        assert_eq!(fmt.parse_revoke(&block, Location::JournalBlock(1)).unwrap().len(), (BS - 3 - 16) / 4);
        RevokeHeader { magic: MAGIC, blocktype: BLOCKTYPE_REVOKE, sequence: 1, count: u32::MAX }.encode(&mut block);
        assert!(fmt.parse_revoke(&block, Location::JournalBlock(1)).is_err());
        let too_many = vec![1u64; BS / 4];
        assert!(fmt.encode_revoke(&mut block, 1, &too_many).is_err());
    }

    #[test]
    fn commit_checksum_covers_the_block_with_chksum_zeroed() {
        let mut block = vec![0u8; BS];
        let h = CommitHeader {
            magic: MAGIC,
            blocktype: BLOCKTYPE_COMMIT,
            sequence: 4,
            commit_sec: 0x1_0000_0002,
            commit_nsec: 3,
            ..Default::default()
        };
        h.encode(&mut block);
        assert_eq!(&block[48..56], &0x1_0000_0002u64.to_be_bytes());
        let expect = crc32c(77, &block);
        set_commit_checksum(77, &mut block);
        assert_eq!(CommitHeader::decode(&block).chksum[0], expect);
        assert_eq!(&block[16..20], &expect.to_be_bytes());
        assert!(verify_commit_checksum(77, &block));
        block[100] = 1;
        assert!(!verify_commit_checksum(77, &block));
    }

    #[test]
    fn data_checksum_chains_sequence_and_data() {
        let data = vec![0x5Au8; BS];
        let c = data_block_checksum(11, 0x01020304, &data);
        assert_eq!(c, crc32c(crc32c(11, &[1, 2, 3, 4]), &data));
    }

    #[test]
    fn tid_comparisons_wrap() {
        assert!(tid_gt(1, 0));
        assert!(tid_gt(0, u32::MAX));
        assert!(!tid_gt(5, 5));
        assert!(tid_geq(5, 5));
        assert!(!tid_geq(u32::MAX, 0));
    }

    #[test]
    fn fast_commit_head() {
        let mut block = vec![0u8; BS];
        assert_eq!(fast_commit_head_tid(&block), None);
        FcTagLength { tag: FC_TAG_HEAD, len: 8 }.encode(&mut block);
        FcHead { features: 0, tid: 42 }.encode(&mut block[4..]);
        assert_eq!(fast_commit_head_tid(&block), Some(42));
    }
}
