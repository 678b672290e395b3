//! Opening reads only the superblock and the group descriptor table (no
//! bitmap or inode table scan), shown by counting device reads on a 100 GiB
//! image; and the public API serves many threads at once.

mod common;

use common::tools::mkfs;
use common::{Scratch, tree};
use ext4::io::{CountingDevice, FileDevice};
use ext4::{Ext4, OpenOptions};
use std::sync::Arc;

#[test]
fn open_of_100_gib_image_reads_only_superblock_and_descriptors() {
    let scratch = Scratch::new("open-cost");
    let img = scratch.join("big.img");
    mkfs(&img, "100G", None, &["-t", "ext4", "-b", "4096"]);
    let dev = Arc::new(CountingDevice::new(FileDevice::open(&img, true).unwrap()));
    let fs = Ext4::open_device(dev.clone(), &OpenOptions { read_only: true, ..Default::default() }).unwrap();
    let geo = fs.geometry();
    assert_eq!(geo.group_count, 800);
    let expected = 1024 + geo.gdt_blocks() as u64 * geo.block_size as u64;
    assert_eq!(dev.bytes_read(), expected, "open read more than superblock + GDT");
    assert_eq!(dev.reads(), 1 + geo.gdt_blocks() as u64);
    // And the file system is usable: the root resolves with a handful of reads.
    let root = fs.read_inode(ext4::ROOT_INO).unwrap();
    assert!(root.is_dir());
}

#[test]
fn many_threads_read_concurrently() {
    let scratch = Scratch::new("threads");
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..64u64 {
        std::fs::write(src.join(format!("f{i}")), tree::pattern(i, 1000 + (i as usize) * 3000)).unwrap();
    }
    let img = scratch.join("fs.img");
    mkfs(&img, "64M", Some(&src), &["-t", "ext4", "-b", "1024"]);
    // A tiny cache forces constant eviction while threads race on it.
    let fs = Arc::new(
        Ext4::open(&img, &OpenOptions { read_only: true, cache_bytes: 16 * 1024, ..OpenOptions::default() }).unwrap(),
    );
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                for round in 0..20u64 {
                    let i = (t * 7 + round * 13) % 64;
                    let ino = fs.resolve_path(format!("/f{i}").as_bytes(), false).unwrap();
                    let inode = fs.read_inode(ino).unwrap();
                    let mut buf = vec![0u8; inode.size() as usize];
                    assert_eq!(fs.read(&inode, 0, &mut buf).unwrap(), buf.len());
                    assert!(buf == tree::pattern(i, 1000 + (i as usize) * 3000), "thread {t} file {i}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}
