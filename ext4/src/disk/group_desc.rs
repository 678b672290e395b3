//! Block group descriptors (32-byte and 64-byte forms) and their checksums
//! (crc32c with metadata_csum, crc16 with uninit_bg/gdt_csum).

use super::checksum::{crc16, crc32c};
use super::codec::layout;

/// Group flag: inode table and bitmap not initialised.
pub const BG_INODE_UNINIT: u16 = 0x0001;
/// Group flag: block bitmap not initialised.
pub const BG_BLOCK_UNINIT: u16 = 0x0002;
/// Group flag: inode table zeroed.
pub const BG_INODE_ZEROED: u16 = 0x0004;

layout! {
    /// Raw 64-byte group descriptor; 32-byte descriptors are decoded from a
    /// zero-padded copy, so their `_hi` halves read as zero.
    pub struct RawGroupDesc (64) {
        0x00 => block_bitmap_lo: u32,
        0x04 => inode_bitmap_lo: u32,
        0x08 => inode_table_lo: u32,
        0x0C => free_blocks_count_lo: u16,
        0x0E => free_inodes_count_lo: u16,
        0x10 => used_dirs_count_lo: u16,
        0x12 => flags: u16,
        0x14 => exclude_bitmap_lo: u32,
        0x18 => block_bitmap_csum_lo: u16,
        0x1A => inode_bitmap_csum_lo: u16,
        0x1C => itable_unused_lo: u16,
        0x1E => checksum: u16,
        0x20 => block_bitmap_hi: u32,
        0x24 => inode_bitmap_hi: u32,
        0x28 => inode_table_hi: u32,
        0x2C => free_blocks_count_hi: u16,
        0x2E => free_inodes_count_hi: u16,
        0x30 => used_dirs_count_hi: u16,
        0x32 => itable_unused_hi: u16,
        0x34 => exclude_bitmap_hi: u32,
        0x38 => block_bitmap_csum_hi: u16,
        0x3A => inode_bitmap_csum_hi: u16,
        0x3C => reserved: u32,
    }
}

/// Offset of `bg_checksum`: the checksum covers the descriptor around it.
const CHECKSUM_OFFSET: usize = 0x1E;
/// Descriptors at least this large store the high halves of bitmap checksums.
const BITMAP_CSUM_HI_END: usize = 0x3C;

/// A block group descriptor with its 64-bit values assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupDesc {
    /// The raw fields as stored.
    pub raw: RawGroupDesc,
    /// Descriptor size on disk (32 or `s_desc_size`).
    pub size: usize,
}

fn join(lo: u32, hi: u32) -> u64 {
    (hi as u64) << 32 | lo as u64
}

fn join16(lo: u16, hi: u16) -> u32 {
    (hi as u32) << 16 | lo as u32
}

impl GroupDesc {
    /// Decodes a descriptor of `size` bytes from the start of `b`.
    pub fn decode(b: &[u8], size: usize) -> Self {
        let mut padded = [0u8; RawGroupDesc::SIZE];
        let n = size.min(RawGroupDesc::SIZE);
        padded[..n].copy_from_slice(&b[..n]);
        GroupDesc { raw: RawGroupDesc::decode(&padded), size }
    }

    /// Encodes the descriptor into the first `size` bytes of `b`, leaving
    /// bytes past the known fields of a large descriptor untouched.
    pub fn encode(&self, b: &mut [u8]) {
        let mut padded = [0u8; RawGroupDesc::SIZE];
        self.raw.encode(&mut padded);
        let n = self.size.min(RawGroupDesc::SIZE);
        b[..n].copy_from_slice(&padded[..n]);
    }

    /// Physical block of the block bitmap.
    pub fn block_bitmap(&self) -> u64 {
        join(self.raw.block_bitmap_lo, self.raw.block_bitmap_hi)
    }
    /// Physical block of the inode bitmap.
    pub fn inode_bitmap(&self) -> u64 {
        join(self.raw.inode_bitmap_lo, self.raw.inode_bitmap_hi)
    }
    /// First physical block of the inode table.
    pub fn inode_table(&self) -> u64 {
        join(self.raw.inode_table_lo, self.raw.inode_table_hi)
    }
    /// Free blocks in the group.
    pub fn free_blocks_count(&self) -> u32 {
        join16(self.raw.free_blocks_count_lo, self.raw.free_blocks_count_hi)
    }
    /// Free inodes in the group.
    pub fn free_inodes_count(&self) -> u32 {
        join16(self.raw.free_inodes_count_lo, self.raw.free_inodes_count_hi)
    }
    /// Directories in the group.
    pub fn used_dirs_count(&self) -> u32 {
        join16(self.raw.used_dirs_count_lo, self.raw.used_dirs_count_hi)
    }
    /// Unused inodes at the end of the group's inode table.
    pub fn itable_unused(&self) -> u32 {
        join16(self.raw.itable_unused_lo, self.raw.itable_unused_hi)
    }
    /// Group flags (`BG_*`).
    pub fn flags(&self) -> u16 {
        self.raw.flags
    }
    /// Stored block bitmap checksum (32 bits where the descriptor has room).
    pub fn block_bitmap_csum(&self) -> u32 {
        join16(self.raw.block_bitmap_csum_lo, self.raw.block_bitmap_csum_hi)
    }
    /// Stored inode bitmap checksum.
    pub fn inode_bitmap_csum(&self) -> u32 {
        join16(self.raw.inode_bitmap_csum_lo, self.raw.inode_bitmap_csum_hi)
    }
    /// Whether the descriptor stores the high 16 bits of bitmap checksums.
    pub fn has_bitmap_csum_hi(&self) -> bool {
        self.size >= BITMAP_CSUM_HI_END
    }

    /// The metadata_csum checksum of the raw descriptor bytes `raw`
    /// (its stored checksum field is skipped).
    pub fn checksum_crc32c(csum_seed: u32, group: u32, raw: &[u8]) -> u16 {
        let size = raw.len();
        let mut c = crc32c(csum_seed, &group.to_le_bytes());
        c = crc32c(c, &raw[..CHECKSUM_OFFSET]);
        c = crc32c(c, &[0, 0]);
        if CHECKSUM_OFFSET + 2 < size {
            c = crc32c(c, &raw[CHECKSUM_OFFSET + 2..size]);
        }
        (c & 0xFFFF) as u16
    }

    /// The uninit_bg (gdt_csum) crc16 checksum of the raw descriptor bytes.
    pub fn checksum_crc16(uuid: &[u8; 16], group: u32, raw: &[u8], is_64bit: bool) -> u16 {
        let size = raw.len();
        let mut c = crc16(!0, uuid);
        c = crc16(c, &group.to_le_bytes());
        c = crc16(c, &raw[..CHECKSUM_OFFSET]);
        if is_64bit && CHECKSUM_OFFSET + 2 < size {
            c = crc16(c, &raw[CHECKSUM_OFFSET + 2..size]);
        }
        c
    }
}

/// Checksum of a bitmap block as stored in a group descriptor (crc32c over
/// the bitmap's meaningful bytes); 16 bits are kept when the descriptor has
/// no high half.
pub fn bitmap_checksum(csum_seed: u32, bitmap: &[u8], full: bool) -> u32 {
    let c = crc32c(csum_seed, bitmap);
    if full { c } else { c & 0xFFFF }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_descriptor_roundtrip_keeps_size() {
        let mut b = [0xAAu8; 64];
        let mut gd = GroupDesc::decode(&[0u8; 32], 32);
        gd.raw.inode_table_lo = 77;
        gd.raw.inode_table_hi = 5; // not stored in 32-byte form
        gd.encode(&mut b);
        assert_eq!(b[32], 0xAA);
        let back = GroupDesc::decode(&b, 32);
        assert_eq!(back.inode_table(), 77);
    }

    #[test]
    fn checksum_ignores_stored_field() {
        let mut raw = [7u8; 64];
        let a = GroupDesc::checksum_crc32c(1, 3, &raw);
        raw[CHECKSUM_OFFSET] = 0;
        assert_eq!(a, GroupDesc::checksum_crc32c(1, 3, &raw));
        raw[0] = 0;
        assert_ne!(a, GroupDesc::checksum_crc32c(1, 3, &raw));
    }
}
