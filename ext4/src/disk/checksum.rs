//! The checksum algorithms of ext4 and jbd2, in one place: crc32c (as ext4
//! uses it: seeded, no final inversion) and the old crc16 of group
//! descriptors (`gdt_csum`), plus the big-endian crc32 of jbd2 v1
//! transaction checksums.

/// crc32c as ext4 computes it: `ext4_chksum(seed, data)`, i.e. the raw CRC
/// register without the final inversion.
pub fn crc32c(seed: u32, data: &[u8]) -> u32 {
    // crc32c::crc32c_append inverts on entry and exit; undo both so that the
    // register value chains like the kernel's crc32c_le().
    !crc32c::crc32c_append(!seed, data)
}

/// The ANSI crc16 (polynomial 0x8005, reflected) used by `gdt_csum` group
/// descriptor checksums.
pub fn crc16(mut crc: u16, data: &[u8]) -> u16 {
    for &byte in data {
        crc ^= byte as u16;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xA001 } else { crc >> 1 };
        }
    }
    crc
}

/// Table of the MSB-first CRC32 (polynomial 0x04C11DB7) for [`crc32_be`].
const CRC32_BE_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04C1_1DB7 } else { crc << 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// The big-endian (MSB-first, unreflected) CRC32 as the kernel's
/// `crc32_be(seed, data)` computes it, without inversions: the transaction
/// checksum of jbd2 journals with the v1 `COMPAT_CHECKSUM` feature.
pub fn crc32_be(seed: u32, data: &[u8]) -> u32 {
    data.iter().fold(seed, |crc, &byte| (crc << 8) ^ CRC32_BE_TABLE[((crc >> 24) as u8 ^ byte) as usize])
}

/// The seed of an orphan file's block checksums: crc32c of the inode
/// number and generation of the orphan file, chained from the file
/// system's seed (the same seed as the inode's own checksum).
pub fn orphan_file_seed(fs_seed: u32, ino: u32, generation: u32) -> u32 {
    crc32c(crc32c(fs_seed, &ino.to_le_bytes()), &generation.to_le_bytes())
}

/// The checksum of one orphan file block (`ob_checksum`): crc32c over the
/// block's physical number (little-endian 64-bit) and then its inode
/// entries (everything before the tail), from the orphan file's seed
/// ([`orphan_file_seed`]).
pub fn orphan_block_csum(file_seed: u32, pblk: u64, entries: &[u8]) -> u32 {
    crc32c(crc32c(file_seed, &pblk.to_le_bytes()), entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_standard_check_value() {
        // Standard crc32c("123456789") = 0xE3069283 with init !0 and final inversion.
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn crc32c_chains() {
        let whole = crc32c(0x1234, b"hello world");
        let part = crc32c(crc32c(0x1234, b"hello "), b"world");
        assert_eq!(whole, part);
    }

    #[test]
    fn crc16_check_value() {
        // CRC-16/ARC("123456789") = 0xBB3D.
        assert_eq!(crc16(0, b"123456789"), 0xBB3D);
    }

    #[test]
    fn crc32_be_check_value() {
        // CRC-32/MPEG-2("123456789") = 0x0376E6E7: init !0, MSB first, no final inversion.
        assert_eq!(crc32_be(!0, b"123456789"), 0x0376_E6E7);
        assert_eq!(crc32_be(crc32_be(!0, b"1234"), b"56789"), 0x0376_E6E7);
    }
}
