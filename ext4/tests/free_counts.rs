//! Free counts come from the group descriptors, never from the
//! superblock's totals: an image copied while the kernel had it mounted
//! (stale totals, journal to replay) reports what the kernel reports, and
//! after our clean close the superblock's totals equal the descriptors'
//! sums, so e2fsck finds no "count wrong".

mod common;

use common::kernel::Mount;
use common::tools::{assert_fsck_clean, fsck, mkfs, run};
use common::{Scratch, tree};
use ext4::disk::inode::S_IFREG;
use ext4::fs::dir::namespace::NewInode;
use ext4::{Ext4, OpenOptions, ROOT_INO};
use std::path::Path;
use std::process::Command;

/// Files the kernel creates before the copy.
const FILES: usize = 500;

/// (free blocks, free inodes) as the kernel's statfs reports them.
fn kernel_statfs(mnt: &Path) -> (u64, u64) {
    let out = run(Command::new("stat").args(["-f", "-c", "%f %d"]).arg(mnt));
    let mut it = out.split_whitespace().map(|v| v.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// (free blocks, free inodes) of the superblock, as dumpe2fs prints them.
fn superblock_counts(img: &Path) -> (u64, u64) {
    let out = run(Command::new("dumpe2fs").arg("-h").arg(img));
    let field = |name: &str| -> u64 {
        let line = out.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in dumpe2fs -h"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    (field("Free blocks:"), field("Free inodes:"))
}

/// Asserts that e2fsck -fn finds nothing, and in particular no wrong count.
fn assert_counts_right(img: &Path) {
    let (ok, text) = fsck(img);
    assert!(!text.contains("count wrong"), "e2fsck -fn finds wrong counts:\n{text}");
    assert!(ok, "e2fsck -fn {img:?} is not clean:\n{text}");
}

/// Creates `name` holding `data` through the core.
fn create_file(fs: &Ext4, name: &[u8], data: &[u8]) {
    let attr = NewInode { mode: S_IFREG | 0o644, uid: 0, gid: 0, rdev: 0, umask: None };
    let ino = fs.create(ROOT_INO, name, attr).unwrap().ino;
    assert_eq!(fs.write(ino, 0, data).unwrap(), data.len());
}

#[test]
fn a_copy_taken_under_a_kernel_mount_reports_the_kernels_counts() {
    let scratch = Scratch::new("free-counts");
    let img = scratch.join("live.img");
    let copy = scratch.join("copy.img");
    mkfs(&img, "64M", None, &["-t", "ext4", "-b", "4096"]);
    {
        let Some(m) = Mount::or_skip(&img, &scratch.join("m"), "", "free counts of an image copied while mounted")
        else {
            return;
        };
        for i in 0..FILES {
            std::fs::write(m.path().join(format!("f{i}")), tree::pattern(i as u64, (i * 37) % 20_000)).unwrap();
        }
        std::fs::write(m.path().join("big"), tree::pattern(9, 3 << 20)).unwrap();
        run(Command::new("sync").arg("-f").arg(m.path()));
        std::fs::copy(&img, &copy).unwrap();
    }
    // The copy's totals are stale (the kernel writes them home only at
    // unmount) and its journal needs recovery.
    let stale = superblock_counts(&copy);
    let listed;
    let ours_before;
    {
        let fs = Ext4::open(&copy, &OpenOptions::default()).unwrap();
        assert!(fs.recovery_report().is_some(), "the copy needed journal recovery");
        let st = fs.statfs().unwrap();
        let mut names = 0;
        fs.read_dir(&fs.read_inode(ROOT_INO).unwrap(), 0, &mut |_, _| {
            names += 1;
            true
        })
        .unwrap();
        listed = names;
        assert!(
            st.inodes - st.free_inodes >= FILES as u64 + 11,
            "statfs: {} inodes used with {listed} names listed",
            st.inodes - st.free_inodes
        );
        assert_ne!((st.free_blocks, st.free_inodes), stale, "the superblock's totals were stale to begin with");
        ours_before = st;
        create_file(&fs, b"after", &tree::pattern(10, 100_000));
        let st = fs.statfs().unwrap();
        assert_eq!(st.free_inodes, ours_before.free_inodes - 1);
        assert!(st.free_blocks < ours_before.free_blocks);
        fs.close().unwrap();
        // After the close the superblock holds the sums.
        let sb = fs.current_superblock().unwrap();
        assert_eq!((sb.free_blocks_count(), sb.free_inodes_count as u64), (st.free_blocks, st.free_inodes));
    }
    assert!(listed >= FILES + 2, "{listed} names");
    assert_counts_right(&copy);
    // The kernel agrees with what we reported, and with the superblock.
    let ours = {
        let fs = Ext4::open(&copy, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
        fs.statfs().unwrap()
    };
    assert_eq!(superblock_counts(&copy), (ours.free_blocks, ours.free_inodes));
    let m = Mount::new(&copy, &scratch.join("mc"), None, "ro").expect("the kernel mounts the copy");
    assert_eq!(kernel_statfs(m.path()), (ours.free_blocks, ours.free_inodes), "kernel statfs vs ours");
    drop(m);
    assert_fsck_clean(&copy);
}

#[test]
fn stale_superblock_totals_are_corrected_at_open_and_close() {
    // Without the kernel: debugfs writes wrong totals into a clean image.
    let scratch = Scratch::new("free-counts-stale");
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    for i in 0..50 {
        std::fs::write(src.join(format!("f{i}")), tree::pattern(i, 5000)).unwrap();
    }
    let img = scratch.join("fs.img");
    mkfs(&img, "32M", Some(&src), &["-t", "ext4", "-b", "1024"]);
    let (blocks, inodes) = superblock_counts(&img);
    run(Command::new("debugfs").arg("-w").arg("-R").arg("ssv free_blocks_count 7").arg(&img));
    run(Command::new("debugfs").arg("-w").arg("-R").arg("ssv free_inodes_count 3").arg(&img));
    assert_eq!(superblock_counts(&img), (7, 3));
    let (_, text) = fsck(&img);
    assert!(text.contains("count wrong"), "the damage shows:\n{text}");

    // A read-only open reports the sums and writes nothing.
    {
        let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
        let st = fs.statfs().unwrap();
        assert_eq!((st.free_blocks, st.free_inodes), (blocks, inodes));
    }
    assert_eq!(superblock_counts(&img), (7, 3));
    // A writable open corrects them (journaled); the clean close leaves
    // them right.
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let st = fs.statfs().unwrap();
        assert_eq!((st.free_blocks, st.free_inodes), (blocks, inodes));
        create_file(&fs, b"new", b"x");
        fs.close().unwrap();
    }
    assert_counts_right(&img);
    let (b2, i2) = superblock_counts(&img);
    assert_eq!(i2, inodes - 1);
    assert!(b2 <= blocks);
    // Nothing changed since: open and close write nothing more.
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        assert!(!fs.reconcile_free_counts().unwrap(), "already equal");
        fs.close().unwrap();
    }
    assert_counts_right(&img);
}
