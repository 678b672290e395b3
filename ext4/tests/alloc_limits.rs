//! The allocators at their limits, on real images: blocks freed by an
//! uncommitted transaction are not reused until it commits, reserved blocks
//! are skipped, a full file system reports NoSpace / NoInodes and is clean
//! again after freeing, and inode records of a never-zeroed inode table are
//! zeroed when first handed out.

mod common;

use common::Scratch;
use common::tools::{assert_fsck_clean, fsck, mkfs};
use ext4::fs::alloc::AllocPool;
use ext4::{Error, Ext4, OpenOptions, ROOT_INO};
use std::os::unix::fs::FileExt;

fn open_rw(img: &std::path::Path) -> Ext4 {
    Ext4::open(img, &OpenOptions::default()).unwrap()
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0 + b.1 && b.0 < a.0 + a.1
}

#[test]
fn pending_free_and_reserved_blocks_are_skipped() {
    let s = Scratch::new("alloc-pending");
    let img = s.join("img");
    mkfs(&img, "16M", None, &["-t", "ext4", "-b", "1024"]);
    let fs = open_rw(&img);
    let tx = fs.tx().unwrap();
    let goal = fs.geometry().group_first_block(1) + 100;

    let mut h = fs.begin().unwrap();
    let a = fs.alloc_blocks(&mut h, goal, 50).unwrap();
    assert_eq!(a.1, 50);
    h.finish();
    fs.sync().unwrap();

    // Freed in a transaction that is not committed: not reusable, neither
    // by the freeing handle nor by later ones.
    let mut h = fs.begin().unwrap();
    fs.free_blocks(&mut h, a.0, a.1).unwrap();
    let b = fs.alloc_blocks(&mut h, a.0, a.1).unwrap();
    assert!(!overlaps(a, b), "{a:?} reused by the freeing handle: {b:?}");
    assert!(matches!(fs.claim_blocks(&mut h, a.0, 1), Err(Error::InvalidArgument(_))));
    h.finish();
    assert!(tx.is_pending_free(a.0, a.1));
    let mut h = fs.begin().unwrap();
    let c = fs.alloc_blocks(&mut h, a.0, a.1).unwrap();
    assert!(!overlaps(a, c) && !overlaps(b, c), "{a:?} reused before commit: {c:?}");
    h.finish();

    // Durable now: the run is handed out again, from the goal.
    tx.commit().unwrap();
    assert!(!tx.is_pending_free(a.0, a.1));
    let mut h = fs.begin().unwrap();
    assert_eq!(fs.alloc_blocks(&mut h, a.0, a.1).unwrap(), a);

    // Reserved blocks are skipped by the search, and claimable by their owner.
    let r = fs.find_free_blocks(&h, goal, 20).unwrap();
    tx.reserve(r.0, r.1).unwrap();
    let d = fs.alloc_blocks(&mut h, r.0, r.1).unwrap();
    assert!(!overlaps(r, d), "reserved {r:?} handed out: {d:?}");
    fs.claim_blocks(&mut h, r.0, r.1).unwrap();
    tx.unreserve(r.0, r.1);
    assert!(matches!(fs.claim_blocks(&mut h, r.0, 1), Err(Error::Corrupt { .. })), "claimed twice");
    h.finish();

    let mut h = fs.begin().unwrap();
    for run in [a, b, c, d, r] {
        fs.free_blocks(&mut h, run.0, run.1).unwrap();
    }
    h.finish();
    fs.sync().unwrap();
    drop(fs);
    assert_fsck_clean(&img);
}

#[test]
fn full_file_system_reports_no_space_and_recovers() {
    let s = Scratch::new("alloc-full");
    let img = s.join("img");
    mkfs(&img, "3M", None, &["-t", "ext4", "-b", "1024", "-N", "64", "-O", "^has_journal"]);
    let fs = open_rw(&img);
    let sb0 = *fs.superblock();
    let total = sb0.blocks_count();

    let mut runs = Vec::new();
    let mut h = fs.begin().unwrap();
    let mut n = 0u64;
    // Ordinary allocations stop at the split reserve; extent splits take the rest.
    for pool in [AllocPool::Ordinary, AllocPool::Reserve] {
        loop {
            match fs.alloc_blocks_from(&mut h, n * 7919 % total, 37, pool) {
                Ok(run) => {
                    n += run.1;
                    runs.push(run);
                }
                Err(Error::NoSpace) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(runs.len() as u64 <= total, "allocation does not terminate");
        }
        if pool == AllocPool::Ordinary {
            assert!(fs.split_reserve() > 0);
            assert_eq!(fs.superblock_in(&h).unwrap().free_blocks_count(), fs.split_reserve());
        }
    }
    assert_eq!(n, sb0.free_blocks_count(), "every free block handed out once");
    let mut inodes = Vec::new();
    loop {
        match fs.alloc_inode(&mut h, ROOT_INO, inodes.len() % 5 == 0) {
            Ok(ino) => inodes.push(ino),
            Err(Error::NoInodes) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(inodes.len() as u32 <= sb0.inodes_count, "allocation does not terminate");
    }
    assert_eq!(inodes.len() as u32, sb0.free_inodes_count);
    let sb = fs.superblock_in(&h).unwrap();
    assert_eq!((sb.free_blocks_count(), sb.free_inodes_count), (0, 0));
    h.finish();

    // Freed but not committed: still no space.
    let mut h = fs.begin().unwrap();
    let (s0, l0) = runs.pop().unwrap();
    fs.free_blocks(&mut h, s0, l0).unwrap();
    h.finish();
    let mut h = fs.begin().unwrap();
    assert!(matches!(fs.alloc_blocks_from(&mut h, 0, 1, AllocPool::Reserve), Err(Error::NoSpace)));
    drop(h);
    fs.tx().unwrap().commit().unwrap();
    let mut h = fs.begin().unwrap();
    assert_eq!(fs.alloc_blocks_from(&mut h, 0, l0 + 10, AllocPool::Reserve).unwrap(), (s0, l0));
    runs.push((s0, l0));
    h.finish();
    fs.sync().unwrap();
    assert!(!fsck(&img).0, "everything allocated, nothing referenced");

    let mut h = fs.begin().unwrap();
    for (s, l) in runs {
        fs.free_blocks(&mut h, s, l).unwrap();
    }
    for (i, ino) in inodes.into_iter().enumerate() {
        fs.free_inode(&mut h, ino, i % 5 == 0).unwrap();
    }
    h.finish();
    fs.sync().unwrap();
    let sb = fs.current_superblock().unwrap();
    assert_eq!((sb.free_blocks_count(), sb.free_inodes_count), (sb0.free_blocks_count(), sb0.free_inodes_count));
    drop(fs);
    assert_fsck_clean(&img);
}

#[test]
fn stale_inode_records_past_the_used_table_are_zeroed() {
    let s = Scratch::new("alloc-itable");
    let img = s.join("img");
    mkfs(&img, "512M", None, &["-t", "ext4", "-b", "4096", "-O", "^flex_bg"]);
    // Fill the unused part of the inode tables of groups 0 and 2 with
    // garbage, as a table that was never zeroed may hold.
    let (ipg, isz, bs, tables, used0) = {
        let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
        let g0 = fs.group_desc(0).unwrap();
        let g2 = fs.group_desc(2).unwrap();
        let geo = fs.geometry();
        (
            geo.inodes_per_group as u64,
            geo.inode_size as u64,
            geo.block_size as u64,
            [g0.inode_table(), g2.inode_table()],
            geo.inodes_per_group as u64 - g0.itable_unused() as u64,
        )
    };
    let file = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    let garbage = vec![0xA5u8; (64 * isz) as usize];
    file.write_all_at(&garbage, tables[0] * bs + used0 * isz).unwrap();
    file.write_all_at(&garbage, tables[1] * bs).unwrap();
    drop(file);

    let fs = open_rw(&img);
    let mut h = fs.begin().unwrap();
    let a = fs.alloc_inode(&mut h, ROOT_INO, false).unwrap();
    let b = fs.alloc_inode(&mut h, 2 * ipg as u32 + 1, false).unwrap();
    let c = fs.alloc_inode(&mut h, 2 * ipg as u32 + 1, false).unwrap();
    assert_eq!(a as u64, used0 + 1, "first inode past the used part of group 0");
    assert_eq!((b as u64, c as u64), (2 * ipg + 1, 2 * ipg + 2), "first inodes of INODE_UNINIT group 2");
    h.finish();
    fs.sync().unwrap();
    for ino in [a, b, c] {
        let inode = fs.read_inode(ino).unwrap();
        assert_eq!((inode.mode(), inode.links_count()), (0, 0), "inode {ino} record zeroed");
    }
    drop(fs);
    // e2fsck reads the table up to the new watermark: it must find only
    // the unreferenced allocations, no garbage inodes.
    let (_, out) = fsck(&img);
    assert!(out.contains(&format!("Inode bitmap differences:  -{a} -({b}--{c})")), "{out}");
    let quiet = "Pass 1: Checking inodes, blocks, and sizes\nPass 2: Checking directory structure\n\
                 Pass 3: Checking directory connectivity\nPass 4: Checking reference counts\nPass 5";
    assert!(out.contains(quiet), "passes 1-4 must find nothing (no garbage inodes):\n{out}");

    let fs = open_rw(&img);
    let mut h = fs.begin().unwrap();
    for ino in [a, b, c] {
        fs.free_inode(&mut h, ino, false).unwrap();
    }
    h.finish();
    fs.sync().unwrap();
    drop(fs);
    assert_fsck_clean(&img);
}

#[test]
fn damaged_bitmaps_are_errors() {
    let s = Scratch::new("alloc-damaged");
    let img = s.join("img");
    mkfs(&img, "16M", None, &["-t", "ext4", "-b", "1024"]);
    let (bb, ib, bs, it1) = {
        let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
        let gd = fs.group_desc(0).unwrap();
        (gd.block_bitmap(), gd.inode_bitmap(), fs.block_size() as u64, fs.group_desc(1).unwrap().inode_table())
    };
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&img).unwrap();
    for blk in [bb, ib] {
        let mut byte = [0u8; 1];
        file.read_exact_at(&mut byte, blk * bs + 100).unwrap();
        file.write_all_at(&[byte[0] ^ 0x10], blk * bs + 100).unwrap();
    }
    drop(file);
    let fs = open_rw(&img);
    let mut h = fs.begin().unwrap();
    let first = fs.geometry().first_data_block as u64;
    assert!(matches!(fs.alloc_blocks(&mut h, first + 1, 1), Err(Error::Checksum { what: "block bitmap", .. })));
    assert!(matches!(fs.free_blocks(&mut h, first + 7000, 1), Err(Error::Checksum { .. })));
    assert!(matches!(fs.alloc_inode(&mut h, ROOT_INO, false), Err(Error::Checksum { what: "inode bitmap", .. })));
    // Out-of-range requests are refused, not wrapped.
    let total = fs.geometry().blocks_count;
    assert!(matches!(fs.free_blocks(&mut h, total - 1, 2), Err(Error::InvalidArgument(_))));
    assert!(matches!(fs.claim_blocks(&mut h, u64::MAX, 2), Err(Error::InvalidArgument(_))));
    assert!(matches!(fs.alloc_blocks(&mut h, 0, 0), Err(Error::InvalidArgument(_))));
    assert!(matches!(fs.free_inode(&mut h, 5, false), Err(Error::InvalidArgument(_))), "reserved inode");
    assert!(matches!(fs.free_blocks(&mut h, bb, 1), Err(Error::Corrupt { .. })), "metadata is never freed");
    // Group 1's inode table lies in group 0 (flex_bg): not claimable either.
    assert!(matches!(fs.claim_blocks(&mut h, it1 + 1, 1), Err(Error::InvalidArgument(_))));
}
