//! Blocks of the orphan file (`COMPAT_ORPHAN_FILE`): the inode named by
//! the superblock's `s_orphan_file_inum` holds, in each of its blocks, an
//! array of little-endian inode numbers (0 = free slot) followed by an
//! 8-byte tail, `ob_magic` (0x0b10ca04) and `ob_checksum` (see
//! [`orphan_block_csum`](super::checksum::orphan_block_csum), only
//! meaningful with metadata_csum). Parsed, edited and serialized here only.

use super::checksum::orphan_block_csum;
use crate::error::{Error, Location, Result};

/// `ob_magic`: the tail magic of every orphan file block.
pub const ORPHAN_BLOCK_MAGIC: u32 = 0x0b10_ca04;
/// Size of the block tail (`struct ext4_orphan_block_tail`).
pub const TAIL_SIZE: usize = 8;

/// Number of inode slots in one orphan file block of `block_size` bytes.
pub fn slots_per_block(block_size: u32) -> usize {
    (block_size as usize).saturating_sub(TAIL_SIZE) / 4
}

/// What a block's checksum covers besides its entries: its physical block
/// number, under the orphan file's seed. `None` in a [`OrphanBlock`] call
/// means the image has no metadata_csum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockCsum {
    /// [`orphan_file_seed`](super::checksum::orphan_file_seed) of the file.
    pub file_seed: u32,
    /// The block's physical number.
    pub pblk: u64,
}

/// One orphan file block, its bytes owned and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanBlock {
    bytes: Vec<u8>,
}

impl OrphanBlock {
    /// Checks `bytes` (one whole block, physical block `pblk`) as an orphan
    /// file block: the magic, and the checksum when `csum` is given.
    pub fn parse(bytes: &[u8], pblk: u64, csum: Option<BlockCsum>) -> Result<OrphanBlock> {
        let n = bytes.len();
        if n < TAIL_SIZE + 4 || n % 4 != 0 {
            return Err(Error::corrupt("orphan file block", Location::Block(pblk), "block too small"));
        }
        let magic = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().expect("4 bytes"));
        if magic != ORPHAN_BLOCK_MAGIC {
            return Err(Error::corrupt("orphan file block", Location::Block(pblk), format!("bad magic {magic:#x}")));
        }
        let block = OrphanBlock { bytes: bytes.to_vec() };
        if let Some(c) = csum {
            let stored = u32::from_le_bytes(bytes[n - 4..].try_into().expect("4 bytes"));
            if stored != block.checksum(c) {
                return Err(Error::Checksum { what: "orphan file block", location: Location::Block(pblk) });
            }
        }
        Ok(block)
    }

    /// An empty block of `block_size` bytes (every slot free), as mke2fs
    /// writes them; its checksum is set by [`OrphanBlock::to_bytes`].
    pub fn empty(block_size: u32) -> OrphanBlock {
        let mut bytes = vec![0u8; block_size as usize];
        let n = bytes.len();
        bytes[n - 8..n - 4].copy_from_slice(&ORPHAN_BLOCK_MAGIC.to_le_bytes());
        OrphanBlock { bytes }
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        slots_per_block(self.bytes.len() as u32)
    }

    /// The inode number in slot `i` (0: free).
    pub fn get(&self, i: usize) -> u32 {
        u32::from_le_bytes(self.bytes[i * 4..i * 4 + 4].try_into().expect("4 bytes"))
    }

    /// Puts `ino` (0 frees it) in slot `i`.
    pub fn set(&mut self, i: usize, ino: u32) {
        self.bytes[i * 4..i * 4 + 4].copy_from_slice(&ino.to_le_bytes());
    }

    /// The first free slot.
    pub fn free_slot(&self) -> Option<usize> {
        (0..self.slots()).find(|&i| self.get(i) == 0)
    }

    /// Number of free slots.
    pub fn free_slots(&self) -> usize {
        (0..self.slots()).filter(|&i| self.get(i) == 0).count()
    }

    /// The used slots: (slot, inode number).
    pub fn used(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        (0..self.slots()).map(|i| (i, self.get(i))).filter(|&(_, ino)| ino != 0)
    }

    fn checksum(&self, c: BlockCsum) -> u32 {
        orphan_block_csum(c.file_seed, c.pblk, &self.bytes[..self.slots() * 4])
    }

    /// The block's bytes, with the checksum refreshed when `csum` is given.
    pub fn to_bytes(&self, csum: Option<BlockCsum>) -> Vec<u8> {
        let mut out = self.bytes.clone();
        if let Some(c) = csum {
            let n = out.len();
            out[n - 4..].copy_from_slice(&self.checksum(c).to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip_and_checksum_is_verified() {
        let c = BlockCsum { file_seed: 0x1234_5678, pblk: 2328 };
        let mut b = OrphanBlock::empty(1024);
        assert_eq!(b.slots(), 254);
        assert_eq!(b.free_slots(), 254);
        b.set(3, 77);
        assert_eq!(b.free_slot(), Some(0));
        let bytes = b.to_bytes(Some(c));
        let back = OrphanBlock::parse(&bytes, 2328, Some(c)).unwrap();
        assert_eq!(back.used().collect::<Vec<_>>(), vec![(3, 77)]);
        assert_eq!(back.free_slots(), 253);
        // The checksum covers the physical block number and every entry.
        assert!(matches!(
            OrphanBlock::parse(&bytes, 2329, Some(BlockCsum { pblk: 2329, ..c })),
            Err(Error::Checksum { .. })
        ));
        let mut bad = bytes.clone();
        bad[12] ^= 1;
        assert!(matches!(OrphanBlock::parse(&bad, 2328, Some(c)), Err(Error::Checksum { .. })));
        assert!(OrphanBlock::parse(&bad, 2328, None).is_ok());
        bad[1016] ^= 1;
        assert!(matches!(OrphanBlock::parse(&bad, 2328, None), Err(Error::Corrupt { .. })));
        assert!(OrphanBlock::parse(&[0u8; 4], 1, None).is_err());
    }
}
