//! Support for the journaled-write tests: metadata changes that e2fsck
//! accepts, staged through a handle (an inode's mtime, with its checksum),
//! and blocks of files and inodes located through our API.
#![allow(dead_code)]

use ext4::Ext4;
use ext4::disk::inode::{Inode, RawInode};
use ext4::journal::transaction::Handle;

/// The block holding inode `ino`'s record and the record's offset in it.
pub fn inode_slot(fs: &Ext4, ino: u32) -> (u64, usize) {
    let (g, idx) = fs.geometry().inode_location(ino);
    let gd = fs.group_desc(g).expect("group descriptor");
    let isz = fs.geometry().inode_size as u64;
    let bs = fs.block_size() as u64;
    let byte = idx as u64 * isz;
    (gd.inode_table() + byte / bs, (byte % bs) as usize)
}

/// Stages in `h` inode `ino` with its mtime set to `secs` (nanoseconds
/// and epoch bits cleared), checksum refreshed: a change e2fsck accepts.
pub fn stage_mtime(fs: &Ext4, h: &mut Handle<'_>, ino: u32, secs: u32) {
    let (blk, off) = inode_slot(fs, ino);
    let isz = fs.geometry().inode_size as usize;
    let mut data = fs.meta_block_in(h, blk, "inode table").expect("inode table block").to_vec();
    let rec = &mut data[off..off + isz];
    let mut raw = Inode::parse(ino, rec, fs.csum_seed()).expect("inode").raw;
    assert!(raw.extra_isize as usize + 128 >= RawInode::SIZE, "test inodes hold every RawInode field");
    raw.mtime = secs;
    raw.mtime_extra = 0;
    raw.encode(rec);
    if let Some(seed) = fs.csum_seed() {
        let c = Inode::parse(ino, rec, None).expect("inode").compute_checksum(seed);
        raw.checksum_lo = c as u16;
        raw.checksum_hi = (c >> 16) as u16;
        raw.encode(rec);
    }
    h.write(blk, data);
}

/// The physical blocks of inode `ino`, in logical order.
pub fn file_blocks(fs: &Ext4, ino: u32) -> Vec<u64> {
    let inode = fs.read_inode(ino).expect("inode");
    fs.file_extents(&inode).expect("extents").iter().flat_map(|e| e.pblk..e.pblk + e.len).collect()
}

/// A block of `bs` bytes that begins with the jbd2 magic (so the journal
/// must escape it), then a pattern from `seed`.
pub fn magic_block(bs: usize, seed: u8) -> Vec<u8> {
    let mut b: Vec<u8> = (0..bs).map(|i| (i as u8).wrapping_mul(13) ^ seed).collect();
    b[..4].copy_from_slice(&ext4::disk::jbd2::MAGIC.to_be_bytes());
    b
}
