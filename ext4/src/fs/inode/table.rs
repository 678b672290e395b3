//! Writing inode records back to the inode table through a handle, with
//! their checksum: the one place an inode reaches the disk.

use crate::disk::inode::{GOOD_OLD_INODE_SIZE, Inode};
use crate::error::{Error, Result};
use crate::fs::Ext4;
use crate::journal::transaction::Handle;

impl Ext4 {
    /// Where inode `ino` lives: (inode table block, byte offset in it).
    pub fn inode_position(&self, ino: u32) -> Result<(u64, usize)> {
        if ino == 0 || ino > self.superblock().inodes_count {
            return Err(Error::InvalidArgument(format!("inode number {ino} out of range")));
        }
        let geo = self.geometry();
        let (g, idx) = geo.inode_location(ino);
        let gd = self.group_desc(g)?;
        let isz = geo.inode_size as u64;
        let byte = idx as u64 * isz;
        let bs = geo.block_size as u64;
        Ok((gd.inode_table() + byte / bs, (byte % bs) as usize))
    }

    /// Reads inode `ino` as handle `h` sees it (its own staged changes
    /// first), with its pending atime ([`super::atime`]), which a rewrite
    /// of the record then writes along.
    pub fn read_inode_in(&self, h: &Handle<'_>, ino: u32) -> Result<Inode> {
        let (blk, off) = self.inode_position(ino)?;
        let data = self.meta_block_in(h, blk, "inode table")?;
        let isz = self.geometry().inode_size as usize;
        let bytes = &data[off..off + isz];
        let seed = self.csum_seed().filter(|_| bytes.iter().any(|&b| b != 0));
        let mut inode = Inode::parse(ino, bytes, seed)?;
        self.overlay_atime(&mut inode);
        Ok(inode)
    }

    /// Stages `inode` into its inode table block: the decoded fields are
    /// encoded over the record's bytes (so the in-inode xattr area and any
    /// fields this code does not know are kept), and the checksum refreshed.
    pub fn write_inode(&self, h: &mut Handle<'_>, inode: &mut Inode) -> Result<()> {
        let (blk, off) = self.inode_position(inode.ino)?;
        let isz = self.geometry().inode_size as usize;
        if inode.bytes.len() != isz {
            return Err(Error::InvalidArgument(format!("inode record of {} bytes, expected {isz}", inode.bytes.len())));
        }
        encode_fields(inode);
        if let Some(seed) = self.csum_seed() {
            let c = inode.compute_checksum(seed);
            inode.raw.checksum_lo = c as u16;
            if inode.bytes.len() > GOOD_OLD_INODE_SIZE && inode.raw.extra_isize >= 4 {
                inode.raw.checksum_hi = (c >> 16) as u16;
            }
            encode_fields(inode);
        }
        let mut block = self.meta_block_in(h, blk, "inode table")?.to_vec();
        block[off..off + isz].copy_from_slice(&inode.bytes);
        h.write(blk, block);
        Ok(())
    }
}

/// Encodes the decoded fields into `inode.bytes`, only as far as the record
/// holds them (128 bytes, or 128 + i_extra_isize).
fn encode_fields(inode: &mut Inode) {
    use crate::disk::inode::RawInode;
    inode.fit_times();
    let mut full = [0u8; RawInode::SIZE];
    let n = inode.bytes.len().min(RawInode::SIZE);
    full[..n].copy_from_slice(&inode.bytes[..n]);
    inode.raw.encode(&mut full);
    let limit = if inode.bytes.len() > GOOD_OLD_INODE_SIZE {
        (GOOD_OLD_INODE_SIZE + inode.raw.extra_isize as usize).min(RawInode::SIZE)
    } else {
        GOOD_OLD_INODE_SIZE
    };
    inode.bytes[..limit].copy_from_slice(&full[..limit]);
}
