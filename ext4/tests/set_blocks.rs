//! allocate → write → set_blocks on real images: data lands before the
//! mapping that points at it, e2fsck is clean, debugfs reads the bytes.

mod common;

use common::tools::{assert_fsck_clean, mkfs, run};
use common::{Scratch, tree};
use ext4::{Ext4, OpenOptions};
use std::process::Command;

fn check(tag: &str, args: &[&str]) {
    let scratch = Scratch::new(tag);
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"").unwrap();
    let img = scratch.join("fs.img");
    mkfs(&img, "64M", Some(&src), args);
    let mut want = Vec::new();
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let ino = fs.resolve_path(b"/f", false).unwrap();
        let bs = fs.block_size() as u64;
        // Scattered runs: every other chunk, so the map gets many pieces.
        for chunk in 0..40u64 {
            let lblk = chunk * 6;
            let len = 1 + chunk % 4;
            let mut h = fs.begin().unwrap();
            let inode = fs.read_inode_in(&h, ino).unwrap();
            let goal = fs.data_goal(ino, true) + chunk * 13;
            let (pblk, n) = fs.alloc_blocks(&mut h, goal, len).unwrap();
            let data = tree::pattern(chunk, (n * bs) as usize);
            fs.device().write_at(&data, pblk * bs).unwrap();
            let mut inode = inode;
            fs.map_blocks_in(&mut h, &mut inode, lblk, pblk, n, false).unwrap();
            let end = (lblk + n) * bs;
            if end > inode.size() {
                inode.raw.size_lo = end as u32;
                inode.raw.size_hi = (end >> 32) as u32;
                fs.write_inode(&mut h, &mut inode).unwrap();
            }
            h.finish();
            if want.len() < end as usize {
                want.resize(end as usize, 0);
            }
            want[(lblk * bs) as usize..end as usize].copy_from_slice(&data);
        }
        // Punch a hole and truncate through the inverse operation.
        let mut h = fs.begin().unwrap();
        let mut inode = fs.read_inode_in(&h, ino).unwrap();
        fs.unmap_blocks_in(&mut h, &mut inode, 12, 30).unwrap();
        h.finish();
        want[(12 * bs) as usize..(42 * bs) as usize].fill(0);
        fs.sync().unwrap();
        // Our own reader sees it.
        let inode = fs.read_inode(ino).unwrap();
        let mut got = vec![0u8; want.len()];
        assert_eq!(fs.read(&inode, 0, &mut got).unwrap(), want.len());
        assert!(got == want, "{tag}: data differs");
    }
    assert_fsck_clean(&img);
    let out = scratch.join("out");
    run(Command::new("debugfs").arg("-R").arg(format!("dump /f {}", out.display())).arg(&img));
    assert!(std::fs::read(&out).unwrap() == want, "{tag}: debugfs reads other bytes");
}

#[test]
fn set_blocks_extents_1k() {
    check("sb-ext4-1k", &["-t", "ext4", "-b", "1024"]);
}

#[test]
fn set_blocks_extents_4k_no_csum() {
    check("sb-ext4-4k", &["-t", "ext4", "-O", "^metadata_csum"]);
}

#[test]
fn set_blocks_block_map_ext3() {
    check("sb-ext3", &["-t", "ext3", "-b", "1024"]);
}
