//! Directory mutation on damaged directories: bytes of the index root, an
//! index node, leaves, a linear block and an inline directory's inode are
//! flipped one at a time (in memory), and every mutation must return an
//! error or succeed: never panic, never loop. With metadata_csum, a flip
//! inside a checksummed directory block that the operation reads must be
//! reported.

mod common;
mod dir_write_support;

use common::Scratch;
use common::tools::mkfs;
use dir_write_support::*;
use ext4::disk::dir_entry::FT_REG_FILE;
use ext4::io::MemDevice;
use ext4::{Error, Ext4, OpenOptions, ROOT_INO};
use std::sync::Arc;

/// What one damaged image is asked to do.
fn mutate_all(fs: &Ext4, dir: u32, existing: &[u8]) -> Vec<Result<(), Error>> {
    let mut out = Vec::new();
    let Ok(mut h) = fs.begin() else { return out };
    let Ok(mut inode) = fs.read_inode_in(&h, dir) else { return out };
    let child = fs.alloc_inode(&mut h, dir, false);
    let Ok(child) = child else { return out };
    out.push(fs.find_entry_in(&h, &inode, existing).map(|_| ()));
    out.push(fs.dir_is_empty_in(&h, &inode).map(|_| ()));
    out.push(fs.add_entry(&mut h, &mut inode, b"a-new-name-for-the-damaged-dir", child, FT_REG_FILE));
    out.push(fs.set_entry(&mut h, &mut inode, existing, child, FT_REG_FILE).map(|_| ()));
    out.push(fs.remove_entry(&mut h, &mut inode, existing).map(|_| ()));
    out.push(fs.set_entry(&mut h, &mut inode, b"..", ROOT_INO, ext4::disk::dir_entry::FT_DIR).map(|_| ()));
    for i in 0..40 {
        let name = format!("more-{i:03}-{}", "x".repeat(i * 5));
        out.push(fs.add_entry(&mut h, &mut inode, name.as_bytes(), child, FT_REG_FILE));
    }
    drop(h);
    out
}

/// Flips bytes of physical blocks `blocks` of `base` (every `stride`-th
/// byte, plus the first 64) and runs [`mutate_all`] on `dir` each time.
/// Returns how many runs reported a checksum error.
fn flip_and_mutate(base: &[u8], bs: usize, blocks: &[u64], stride: usize, dir: u32, existing: &[u8]) -> usize {
    let mut checksum_errors = 0;
    for &blk in blocks {
        let start = blk as usize * bs;
        let offsets = (0..64).chain((64..bs).step_by(stride));
        for off in offsets {
            let mut img = base.to_vec();
            img[start + off] ^= 0x5a;
            let dev = Arc::new(MemDevice::new(img));
            let Ok(fs) =
                Ext4::open_device(dev, &OpenOptions { read_only: false, cache_bytes: 1 << 20, ..Default::default() })
            else {
                continue;
            };
            let results = mutate_all(&fs, dir, existing);
            if results.iter().any(|r| matches!(r, Err(Error::Checksum { .. }))) {
                checksum_errors += 1;
            }
        }
    }
    checksum_errors
}

fn damaged_dirs(mkfs_args: &[&str], tag: &str, csum: bool) {
    let scratch = Scratch::new(tag);
    let img = scratch.join("fs.img");
    mkfs(&img, "16M", None, mkfs_args);
    let (big, lin, small, existing_big, existing_lin);
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let mut h = fs.begin().unwrap();
        big = mkdir_in(&fs, &mut h, ROOT_INO, b"big");
        lin = mkdir_in(&fs, &mut h, ROOT_INO, b"lin");
        small = mkdir_in(&fs, &mut h, ROOT_INO, b"small");
        h.finish();
        let mut rng = Rng(5);
        let mut names = Vec::new();
        for (dir, count, long) in [(big, 1400, true), (lin, 40, false), (small, 2, false)] {
            for chunk in (0..count).collect::<Vec<_>>().chunks(50) {
                let mut h = fs.begin().unwrap();
                let mut inode = fs.read_inode_in(&h, dir).unwrap();
                for &i in chunk {
                    let name = make_name(&mut rng, i as u64 + 1, long);
                    let ino = new_file(&fs, &mut h, dir);
                    fs.add_entry(&mut h, &mut inode, &name, ino, FT_REG_FILE).unwrap();
                    if i == count / 2 {
                        names.push(name);
                    }
                }
                h.finish();
            }
        }
        existing_big = names[0].clone();
        existing_lin = names[1].clone();
        fs.close().unwrap();
    }
    let base = std::fs::read(&img).unwrap();
    let fs = Ext4::open_device(Arc::new(MemDevice::new(base.clone())), &OpenOptions::default()).unwrap();
    let bs = fs.block_size() as usize;
    let big_inode = fs.read_inode(big).unwrap();
    assert!(big_inode.has_flag(ext4::disk::inode::FL_INDEX));
    let extents = fs.file_extents(&big_inode).unwrap();
    let pblk = |lblk: u64| {
        let e = extents.iter().find(|e| e.lblk <= lblk && lblk < e.lblk + e.len).unwrap();
        e.pblk + (lblk - e.lblk)
    };
    // The root, the first index node (the block the root points to first
    // in a two-level tree), and two leaves.
    let root = fs.read_meta_block(pblk(0), "test").unwrap();
    let levels = root[ext4::disk::dx::ROOT_INFO_OFFSET + 6];
    assert_eq!(levels, 1, "{tag}: expected a two-level tree");
    let first_child = u32::from_le_bytes(root[ext4::disk::dx::ROOT_TABLE_OFFSET + 4..][..4].try_into().unwrap());
    let big_blocks = [pblk(0), pblk(first_child as u64), pblk(1), pblk(2)];
    let lin_inode = fs.read_inode(lin).unwrap();
    let lin_blocks: Vec<u64> = fs.file_extents(&lin_inode).unwrap().iter().map(|e| e.pblk).collect();
    let (itable_blk, _) = fs.inode_position(small).unwrap();
    drop(fs);
    let caught = flip_and_mutate(&base, bs, &big_blocks, 7, big, &existing_big);
    flip_and_mutate(&base, bs, &lin_blocks, 5, lin, &existing_lin);
    flip_and_mutate(&base, bs, &[itable_blk], 3, small, b"1-");
    if csum {
        assert!(caught > 0, "{tag}: no flip was reported as a checksum error");
    }
}

#[test]
fn damaged_dirs_ext4_1k_no_csum() {
    damaged_dirs(&["-t", "ext4", "-b", "1024", "-O", "^metadata_csum,inline_data"], "dw-hostile-nocsum", false);
}

#[test]
fn damaged_dirs_ext4_1k_csum() {
    damaged_dirs(&["-t", "ext4", "-b", "1024", "-O", "inline_data"], "dw-hostile-csum", true);
}
