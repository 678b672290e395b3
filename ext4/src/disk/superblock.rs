//! The ext4 superblock: every field, its checksum, validation and the
//! geometry derived from it.

use super::checksum::crc32c;
use super::codec::layout;
use super::features::{Compat, Incompat, RoCompat};
use crate::error::{Error, Location, Result};

/// Byte offset of the primary superblock on the device.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
/// The ext2/3/4 magic number.
pub const MAGIC: u16 = 0xEF53;
/// `s_state` bit: cleanly unmounted.
pub const STATE_VALID: u16 = 0x0001;
/// `s_state` bit: errors detected.
pub const STATE_ERROR: u16 = 0x0002;
/// `s_state` bit: orphans being recovered.
pub const STATE_ORPHANS: u16 = 0x0004;
/// `s_checksum_type` value for crc32c.
pub const CHECKSUM_TYPE_CRC32C: u8 = 1;
/// `s_flags` bit: directory hashes use signed chars.
pub const FLAG_SIGNED_HASH: u32 = 0x0001;
/// `s_flags` bit: directory hashes use unsigned chars.
pub const FLAG_UNSIGNED_HASH: u32 = 0x0002;

layout! {
    /// The on-disk superblock (1024 bytes at byte 1024 of the device).
    /// Field names follow `struct ext2_super_block` without the `s_` prefix.
    pub struct Superblock (1024) {
        0x000 => inodes_count: u32,
        0x004 => blocks_count_lo: u32,
        0x008 => r_blocks_count_lo: u32,
        0x00C => free_blocks_count_lo: u32,
        0x010 => free_inodes_count: u32,
        0x014 => first_data_block: u32,
        0x018 => log_block_size: u32,
        0x01C => log_cluster_size: u32,
        0x020 => blocks_per_group: u32,
        0x024 => clusters_per_group: u32,
        0x028 => inodes_per_group: u32,
        0x02C => mtime: u32,
        0x030 => wtime: u32,
        0x034 => mnt_count: u16,
        0x036 => max_mnt_count: u16,
        0x038 => magic: u16,
        0x03A => state: u16,
        0x03C => errors: u16,
        0x03E => minor_rev_level: u16,
        0x040 => lastcheck: u32,
        0x044 => checkinterval: u32,
        0x048 => creator_os: u32,
        0x04C => rev_level: u32,
        0x050 => def_resuid: u16,
        0x052 => def_resgid: u16,
        0x054 => first_ino: u32,
        0x058 => inode_size: u16,
        0x05A => block_group_nr: u16,
        0x05C => feature_compat: u32,
        0x060 => feature_incompat: u32,
        0x064 => feature_ro_compat: u32,
        0x068 => uuid: [u8; 16],
        0x078 => volume_name: [u8; 16],
        0x088 => last_mounted: [u8; 64],
        0x0C8 => algorithm_usage_bitmap: u32,
        0x0CC => prealloc_blocks: u8,
        0x0CD => prealloc_dir_blocks: u8,
        0x0CE => reserved_gdt_blocks: u16,
        0x0D0 => journal_uuid: [u8; 16],
        0x0E0 => journal_inum: u32,
        0x0E4 => journal_dev: u32,
        0x0E8 => last_orphan: u32,
        0x0EC => hash_seed: [u32; 4],
        0x0FC => def_hash_version: u8,
        0x0FD => jnl_backup_type: u8,
        0x0FE => desc_size: u16,
        0x100 => default_mount_opts: u32,
        0x104 => first_meta_bg: u32,
        0x108 => mkfs_time: u32,
        0x10C => jnl_blocks: [u32; 17],
        0x150 => blocks_count_hi: u32,
        0x154 => r_blocks_count_hi: u32,
        0x158 => free_blocks_hi: u32,
        0x15C => min_extra_isize: u16,
        0x15E => want_extra_isize: u16,
        0x160 => flags: u32,
        0x164 => raid_stride: u16,
        0x166 => mmp_update_interval: u16,
        0x168 => mmp_block: u64,
        0x170 => raid_stripe_width: u32,
        0x174 => log_groups_per_flex: u8,
        0x175 => checksum_type: u8,
        0x176 => encryption_level: u8,
        0x177 => reserved_pad: u8,
        0x178 => kbytes_written: u64,
        0x180 => snapshot_inum: u32,
        0x184 => snapshot_id: u32,
        0x188 => snapshot_r_blocks_count: u64,
        0x190 => snapshot_list: u32,
        0x194 => error_count: u32,
        0x198 => first_error_time: u32,
        0x19C => first_error_ino: u32,
        0x1A0 => first_error_block: u64,
        0x1A8 => first_error_func: [u8; 32],
        0x1C8 => first_error_line: u32,
        0x1CC => last_error_time: u32,
        0x1D0 => last_error_ino: u32,
        0x1D4 => last_error_line: u32,
        0x1D8 => last_error_block: u64,
        0x1E0 => last_error_func: [u8; 32],
        0x200 => mount_opts: [u8; 64],
        0x240 => usr_quota_inum: u32,
        0x244 => grp_quota_inum: u32,
        0x248 => overhead_clusters: u32,
        0x24C => backup_bgs: [u32; 2],
        0x254 => encrypt_algos: [u8; 4],
        0x258 => encrypt_pw_salt: [u8; 16],
        0x268 => lpf_ino: u32,
        0x26C => prj_quota_inum: u32,
        0x270 => checksum_seed: u32,
        0x274 => wtime_hi: u8,
        0x275 => mtime_hi: u8,
        0x276 => mkfs_time_hi: u8,
        0x277 => lastcheck_hi: u8,
        0x278 => first_error_time_hi: u8,
        0x279 => last_error_time_hi: u8,
        0x27A => first_error_errcode: u8,
        0x27B => last_error_errcode: u8,
        0x27C => encoding: u16,
        0x27E => encoding_flags: u16,
        0x280 => orphan_file_inum: u32,
        0x3FC => checksum: u32,
    }
}

/// Byte offset of `s_checksum` inside the superblock: the checksum covers
/// everything before it.
const CHECKSUM_OFFSET: usize = 0x3FC;

impl Superblock {
    /// Compatible features.
    pub fn compat(&self) -> Compat {
        Compat(self.feature_compat)
    }
    /// Incompatible features.
    pub fn incompat(&self) -> Incompat {
        Incompat(self.feature_incompat)
    }
    /// Read-only compatible features.
    pub fn ro_compat(&self) -> RoCompat {
        RoCompat(self.feature_ro_compat)
    }
    /// Whether metadata_csum is enabled.
    pub fn has_metadata_csum(&self) -> bool {
        self.ro_compat().has(RoCompat::METADATA_CSUM)
    }
    /// Whether group descriptors carry the old crc16 checksum.
    pub fn has_gdt_csum(&self) -> bool {
        self.ro_compat().has(RoCompat::GDT_CSUM)
    }
    /// Whether 64-bit block numbers are in use.
    pub fn is_64bit(&self) -> bool {
        self.incompat().has(Incompat::IS_64BIT)
    }
    /// Block size in bytes.
    pub fn block_size(&self) -> u32 {
        1024u32 << self.log_block_size
    }
    /// Total number of blocks.
    pub fn blocks_count(&self) -> u64 {
        self.lo_hi(self.blocks_count_lo, self.blocks_count_hi)
    }
    /// Blocks reserved for root.
    pub fn r_blocks_count(&self) -> u64 {
        self.lo_hi(self.r_blocks_count_lo, self.r_blocks_count_hi)
    }
    /// Free blocks as recorded in the superblock.
    pub fn free_blocks_count(&self) -> u64 {
        self.lo_hi(self.free_blocks_count_lo, self.free_blocks_hi)
    }
    fn lo_hi(&self, lo: u32, hi: u32) -> u64 {
        if self.is_64bit() { (hi as u64) << 32 | lo as u64 } else { lo as u64 }
    }
    /// Size of an on-disk inode record.
    pub fn inode_size(&self) -> u16 {
        if self.rev_level == 0 { 128 } else { self.inode_size }
    }
    /// First non-reserved inode number.
    pub fn first_ino(&self) -> u32 {
        if self.rev_level == 0 { 11 } else { self.first_ino }
    }
    /// Size of one group descriptor.
    pub fn desc_size(&self) -> u16 {
        if self.is_64bit() { self.desc_size } else { 32 }
    }
    /// Number of block groups.
    pub fn group_count(&self) -> u32 {
        let data = self.blocks_count() - self.first_data_block as u64;
        data.div_ceil(self.blocks_per_group as u64) as u32
    }
    /// Groups per flex group (1 without flex_bg).
    pub fn groups_per_flex(&self) -> u32 {
        if self.incompat().has(Incompat::FLEX_BG) && self.log_groups_per_flex < 32 {
            1 << self.log_groups_per_flex
        } else {
            1
        }
    }
    /// The seed of all metadata checksums: `s_checksum_seed` with csum_seed,
    /// otherwise crc32c over the UUID.
    pub fn csum_seed(&self) -> u32 {
        if self.incompat().has(Incompat::CSUM_SEED) { self.checksum_seed } else { crc32c(!0, &self.uuid) }
    }
    /// The volume label, trimmed at the first NUL.
    pub fn label(&self) -> String {
        String::from_utf8_lossy(self.label_bytes()).into_owned()
    }
    /// The volume label's bytes, up to the first NUL (or all 16).
    pub fn label_bytes(&self) -> &[u8] {
        let end = self.volume_name.iter().position(|&b| b == 0).unwrap_or(self.volume_name.len());
        &self.volume_name[..end]
    }
    /// Stores `label` (at most 16 bytes, the caller checks) NUL-padded.
    pub fn set_label_bytes(&mut self, label: &[u8]) {
        self.volume_name = [0; 16];
        self.volume_name[..label.len()].copy_from_slice(label);
    }
    /// Whether directory hashes treat name bytes as unsigned chars.
    pub fn hash_unsigned(&self) -> bool {
        self.flags & FLAG_UNSIGNED_HASH != 0
    }

    /// Computes the superblock checksum over its raw bytes.
    pub fn compute_checksum(raw: &[u8]) -> u32 {
        crc32c(!0, &raw[..CHECKSUM_OFFSET])
    }

    /// Encodes the superblock and, with metadata_csum, refreshes its checksum.
    pub fn encode_with_checksum(&mut self, raw: &mut [u8]) {
        self.encode(raw);
        if self.has_metadata_csum() {
            self.checksum = Self::compute_checksum(raw);
            self.encode(raw);
        }
    }

    /// Decodes and validates a superblock read from the device.
    ///
    /// Checks the magic, the checksum (with metadata_csum), and every value
    /// the geometry depends on, so that later code can compute with it
    /// without overflow. Returns whether unknown ro_compat features force a
    /// read-only open.
    pub fn parse(raw: &[u8], device_len: u64) -> Result<(Superblock, bool)> {
        if raw.len() < Self::SIZE {
            return Err(Error::OutOfBounds { what: "superblock", location: Location::Superblock });
        }
        let sb = Superblock::decode(raw);
        let bad = |reason: String| Error::corrupt("superblock", Location::Superblock, reason);
        if sb.magic != MAGIC {
            return Err(bad(format!("bad magic {:#06x}", sb.magic)));
        }
        if sb.has_metadata_csum() {
            if sb.checksum_type != CHECKSUM_TYPE_CRC32C {
                return Err(bad(format!("unknown checksum type {}", sb.checksum_type)));
            }
            if Self::compute_checksum(raw) != sb.checksum {
                return Err(Error::Checksum { what: "superblock", location: Location::Superblock });
            }
        }
        let unknown = sb.incompat().unknown();
        if unknown != 0 {
            return Err(Error::UnsupportedIncompat(unknown));
        }
        let serveable = Incompat::COMPRESSION | Incompat::JOURNAL_DEV | Incompat::DIRDATA | Incompat::EA_INODE;
        if sb.feature_incompat & serveable != 0 {
            return Err(Error::Unsupported(format!(
                "incompatible features {:?}",
                Incompat(sb.feature_incompat & serveable).names()
            )));
        }
        if sb.log_block_size > 6 {
            return Err(bad(format!("block size 2^(10+{}) out of range 1 KiB..64 KiB", sb.log_block_size)));
        }
        if sb.ro_compat().has(RoCompat::BIGALLOC) {
            return Err(Error::Unsupported("bigalloc".into()));
        }
        let bs = sb.block_size() as u64;
        if sb.blocks_per_group == 0 || sb.blocks_per_group as u64 > 8 * bs {
            return Err(bad(format!("blocks per group {} out of range", sb.blocks_per_group)));
        }
        if sb.inodes_per_group == 0 || sb.inodes_per_group as u64 > 8 * bs {
            return Err(bad(format!("inodes per group {} out of range", sb.inodes_per_group)));
        }
        let expected_first = if bs == 1024 { 1 } else { 0 };
        if sb.first_data_block != expected_first && !(bs == 1024 && sb.first_data_block == 0) {
            return Err(bad(format!("first data block {} for block size {bs}", sb.first_data_block)));
        }
        if sb.blocks_count() <= sb.first_data_block as u64 {
            return Err(bad(format!("blocks count {} too small", sb.blocks_count())));
        }
        if sb.rev_level > 0 {
            let isz = sb.inode_size;
            if isz < 128 || !isz.is_power_of_two() || isz as u64 > bs {
                return Err(bad(format!("inode size {isz} invalid")));
            }
            if sb.first_ino < 11 {
                return Err(bad(format!("first inode {} below 11", sb.first_ino)));
            }
        }
        if sb.is_64bit() {
            let ds = sb.desc_size;
            if !(64..=1024).contains(&ds) || !ds.is_power_of_two() {
                return Err(bad(format!("group descriptor size {ds} invalid")));
            }
        }
        let groups = sb.group_count() as u64;
        if groups * (sb.inodes_per_group as u64) < sb.inodes_count as u64
            || groups * (sb.inodes_per_group as u64) > u32::MAX as u64
        {
            return Err(bad(format!(
                "{} inodes do not fit {groups} groups of {}",
                sb.inodes_count, sb.inodes_per_group
            )));
        }
        if sb.blocks_count().checked_mul(bs).is_none() {
            return Err(bad("blocks count overflows".into()));
        }
        // The image may be shorter than blocks_count (sparse files truncated
        // by tools); reads beyond its end fail with OutOfBounds. But the
        // group descriptor table must be there.
        let _ = device_len;
        let read_only = sb.ro_compat().unknown() != 0;
        Ok((sb, read_only))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Vec<u8> {
        let mut raw = vec![0u8; 1024];
        let sb = Superblock {
            inodes_count: 16,
            blocks_count_lo: 1024,
            first_data_block: 1,
            blocks_per_group: 8192,
            inodes_per_group: 16,
            magic: MAGIC,
            rev_level: 1,
            first_ino: 11,
            inode_size: 256,
            ..Default::default()
        };
        sb.encode(&mut raw);
        raw
    }

    #[test]
    fn parses_minimal() {
        let (sb, ro) = Superblock::parse(&minimal(), 1 << 20).unwrap();
        assert_eq!(sb.block_size(), 1024);
        assert_eq!(sb.group_count(), 1);
        assert!(!ro);
    }

    #[test]
    fn rejects_bad_magic_and_unknown_incompat() {
        let mut raw = minimal();
        raw[0x38] = 0;
        assert!(matches!(Superblock::parse(&raw, 0), Err(Error::Corrupt { .. })));
        let mut raw = minimal();
        raw[0x60 + 3] = 0x80;
        assert!(matches!(Superblock::parse(&raw, 0), Err(Error::UnsupportedIncompat(0x8000_0000))));
    }

    #[test]
    fn unknown_ro_compat_forces_read_only() {
        let mut raw = minimal();
        raw[0x64 + 3] = 0x40;
        let (_, ro) = Superblock::parse(&raw, 0).unwrap();
        assert!(ro);
    }

    #[test]
    fn checksum_checked_with_metadata_csum() {
        let mut raw = minimal();
        let mut sb = Superblock::decode(&raw);
        sb.feature_ro_compat |= RoCompat::METADATA_CSUM;
        sb.checksum_type = CHECKSUM_TYPE_CRC32C;
        sb.encode_with_checksum(&mut raw);
        Superblock::parse(&raw, 0).unwrap();
        raw[0x78] ^= 1;
        assert!(matches!(Superblock::parse(&raw, 0), Err(Error::Checksum { .. })));
    }
}
