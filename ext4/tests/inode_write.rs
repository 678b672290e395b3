//! Inode write-back: changed fields reach the inode table with a valid
//! checksum; e2fsck and debugfs agree.

mod common;

use common::Scratch;
use common::tools::{assert_fsck_clean, debugfs, mkfs};
use ext4::{Ext4, OpenOptions, Timestamp};

fn check(tag: &str, args: &[&str]) {
    let scratch = Scratch::new(tag);
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), b"hello").unwrap();
    let img = scratch.join("fs.img");
    mkfs(&img, "32M", Some(&src), args);
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let ino = fs.resolve_path(b"/f", false).unwrap();
        let mut h = fs.begin().unwrap();
        let mut inode = fs.read_inode_in(&h, ino).unwrap();
        let t = Timestamp { secs: 1_234_567_890, nsecs: 987_654_321 };
        let (s, x) = t.encode();
        inode.raw.mtime = s;
        inode.raw.mtime_extra = x;
        inode.raw.uid_lo = 4321;
        inode.raw.mode = 0o100600;
        fs.write_inode(&mut h, &mut inode).unwrap();
        h.finish();
        // Readers see the change before it is written home.
        let seen = fs.read_inode(ino).unwrap();
        assert_eq!(seen.uid(), 4321);
        fs.sync().unwrap();
    }
    assert_fsck_clean(&img);
    let stat = debugfs(&img, "stat /f");
    assert!(stat.contains("Mode:  0600"), "{stat}");
    assert!(stat.contains("User:  4321"), "{stat}");
    let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
    let inode = fs.read_inode(fs.resolve_path(b"/f", false).unwrap()).unwrap();
    assert_eq!(inode.uid(), 4321);
    if inode.bytes.len() > 128 {
        assert_eq!(inode.mtime(), Timestamp { secs: 1_234_567_890, nsecs: 987_654_321 });
    }
}

#[test]
fn inode_write_metadata_csum() {
    check("iw-csum", &["-t", "ext4"]);
}

#[test]
fn inode_write_small_inodes_no_csum() {
    check("iw-ext2", &["-t", "ext2", "-I", "128"]);
}
