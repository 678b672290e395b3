//! Orphans at scale (issue 13): releasing N open-unlinked files costs O(N)
//! overall on both kinds of image — the classic list and the orphan file —
//! shown by counting the device reads of each release under a small
//! metadata cache (not by timing); and a crash with 1 000 open-unlinked
//! files is cleaned up alike by our open, `e2fsck -fy` and the kernel.

mod common;

use common::tools::{assert_fsck_clean, fsck, mkfs};
use common::{Scratch, kernel::Mount};
use ext4::disk::features::{Compat, RoCompat};
use ext4::fs::dir::namespace::NewInode;
use ext4::io::{CountingDevice, FileDevice};
use ext4::{Ext4, OpenOptions, ROOT_INO};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn reg() -> NewInode {
    NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0, umask: None }
}

/// The two kinds of image: the classic orphan list only (4 KiB blocks),
/// and an orphan file (1 KiB blocks: 32 blocks of 254 slots, so 10 000
/// orphans overflow onto the classic list as in the kernel).
const KINDS: [(&str, &[&str]); 2] = [
    ("classic", &["-t", "ext4", "-b", "4096", "-N", "24000", "-O", "^orphan_file"]),
    ("orphan_file", &["-t", "ext4", "-b", "1024", "-N", "24000", "-O", "orphan_file"]),
];

fn image(scratch: &Scratch, kind: &str, args: &[&str]) -> PathBuf {
    let img = scratch.join(format!("{kind}.img"));
    mkfs(&img, "96M", None, args);
    img
}

fn free_counts(fs: &Ext4) -> (u64, u64) {
    let s = fs.statfs().unwrap();
    (s.free_blocks, s.free_inodes)
}

/// Creates `n` files (with `data` bytes each), holds each open and
/// unlinks it. Returns their inode numbers, oldest first.
fn orphan_files(fs: &Ext4, n: usize, data: usize) -> Vec<u32> {
    let payload = vec![0x5au8; data];
    let mut inos = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("f{i}");
        let ino = fs.create(ROOT_INO, name.as_bytes(), reg()).unwrap().ino;
        if data > 0 {
            fs.write(ino, 0, &payload).unwrap();
        }
        fs.open_inode(ino);
        fs.unlink(ROOT_INO, name.as_bytes()).unwrap();
        inos.push(ino);
    }
    inos
}

/// Closes every orphan oldest first — the order that made each release
/// walk the whole classic list before — and returns the device reads of
/// each release.
fn release_all(fs: &Ext4, dev: &CountingDevice<FileDevice>, inos: &[u32]) -> Vec<u64> {
    inos.iter()
        .map(|&ino| {
            let before = dev.reads();
            fs.close_inode(ino).unwrap();
            dev.reads() - before
        })
        .collect()
}

#[test]
fn releasing_orphans_costs_constant_reads_each() {
    let scratch = Scratch::new("orphan-scale");
    for (kind, args) in KINDS {
        for n in [1_000usize, 10_000] {
            let img = image(&scratch, kind, args);
            let dev = Arc::new(CountingDevice::new(FileDevice::open(&img, false).unwrap()));
            // A 256 KiB cache holds a small part of the inode table of
            // 10 000 inodes, so a walk of the list would show as reads.
            let opts = OpenOptions { cache_bytes: 256 << 10, ..Default::default() };
            let fs = Ext4::open_device(dev.clone(), &opts).unwrap();
            let before = free_counts(&fs);
            let inos = orphan_files(&fs, n, 0);
            let (in_file, on_list) = fs.orphan_records();
            assert_eq!(in_file + on_list, n, "{kind} {n}");
            if kind == "classic" {
                assert_eq!(on_list, n);
            } else {
                assert!(in_file > 0 && in_file <= 32 * 254, "{kind} {n}: {in_file} in the orphan file");
                assert_eq!(on_list, n - in_file, "the orphan file overflows onto the list");
            }
            // Everything home and the cache emptied: from here on, every
            // metadata block a release needs that it did not touch
            // recently is a device read.
            fs.sync().unwrap();
            fs.cache().clear();
            let reads = release_all(&fs, &dev, &inos);
            let total: u64 = reads.iter().sum();
            let max = *reads.iter().max().unwrap();
            eprintln!("{kind}, {n} orphans: {total} device reads to release them all, at most {max} for one");
            // Each release reads the inode, its predecessor (or the orphan
            // block), bitmaps and descriptors: a few blocks, never a walk.
            assert!(max <= 16, "{kind} {n}: a release read {max} blocks");
            assert!(total <= 4 * n as u64, "{kind} {n}: {total} reads for {n} releases");
            assert_eq!(fs.orphan_records(), (0, 0));
            let sb = fs.current_superblock().unwrap();
            assert_eq!(sb.last_orphan, 0);
            assert_eq!(free_counts(&fs).1, before.1, "{kind} {n}: every inode freed");
            fs.close().unwrap();
            assert!(!fs.current_superblock().unwrap().ro_compat().has(RoCompat::ORPHAN_PRESENT));
            drop(fs);
            assert_fsck_clean(&img);
        }
    }
}

/// Runs `e2fsck -fy`; exit codes 0 and 1 only.
fn fsck_fix(img: &Path) -> String {
    let out = Command::new("e2fsck").arg("-fy").arg(img).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.code().unwrap_or(8) <= 1, "e2fsck -fy {img:?}:\n{text}");
    text
}

/// Free counts of a closed image, as our read-only open sees them.
fn image_free_counts(img: &Path) -> (u64, u64) {
    free_counts(&Ext4::open(img, &OpenOptions { read_only: true, ..Default::default() }).unwrap())
}

#[test]
fn a_crash_with_1000_orphans_is_cleaned_up_by_every_recovery() {
    const N: usize = 1_000;
    let scratch = Scratch::new("orphan-scale-crash");
    for (kind, args) in KINDS {
        let img = image(&scratch, kind, args);
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        // Grow the directory to its final size first (names of files
        // freed at once), so that the free counts after recovery are
        // those from before the orphans.
        for i in 0..N {
            fs.create(ROOT_INO, format!("f{i}").as_bytes(), reg()).unwrap();
            fs.unlink(ROOT_INO, format!("f{i}").as_bytes()).unwrap();
        }
        fs.tx().unwrap().commit().unwrap();
        let before = free_counts(&fs);
        // Files of 1 to 3 blocks, so that freeing them shows in the block counts.
        let inos = orphan_files(&fs, N, 5000);
        assert!(free_counts(&fs).0 < before.0 && free_counts(&fs).1 == before.1 - N as u64);
        let sb = fs.current_superblock().unwrap();
        if fs.superblock().compat().has(Compat::ORPHAN_FILE) {
            assert_eq!(fs.orphan_records(), (N, 0));
            assert!(sb.ro_compat().has(RoCompat::ORPHAN_PRESENT));
        } else {
            assert_eq!(fs.orphan_records(), (0, N));
            assert_eq!(sb.last_orphan, *inos.last().unwrap());
        }
        fs.tx().unwrap().commit().unwrap();
        // The crash: the image as that commit left it, every file still open.
        let crashed = std::fs::read(&img).unwrap();
        drop(fs);

        // Ours: the open replays the journal and processes the orphans.
        let ours = scratch.join(format!("{kind}-ours.img"));
        std::fs::write(&ours, &crashed).unwrap();
        {
            let fs = Ext4::open(&ours, &OpenOptions::default()).unwrap();
            let sb = fs.current_superblock().unwrap();
            assert_eq!(sb.last_orphan, 0, "{kind}");
            assert!(!sb.ro_compat().has(RoCompat::ORPHAN_PRESENT), "{kind}: every slot is free");
            assert_eq!(free_counts(&fs), before, "{kind}: our recovery frees every orphan");
            fs.close().unwrap();
        }
        assert_fsck_clean(&ours);
        assert_eq!(image_free_counts(&ours), before);

        // e2fsck -fy replays the journal, then releases the orphans.
        let theirs = scratch.join(format!("{kind}-e2fsck.img"));
        std::fs::write(&theirs, &crashed).unwrap();
        let text = fsck_fix(&theirs);
        let cleared = text.matches("Clearing orphaned inode").count();
        assert_eq!(cleared, N, "{kind}: e2fsck -fy clears every orphan:\n{}", &text[..text.len().min(2000)]);
        let (clean, text) = fsck(&theirs);
        assert!(clean, "{kind}: e2fsck -fn after e2fsck -fy:\n{text}");
        assert_eq!(image_free_counts(&theirs), before, "{kind}: e2fsck frees what we free");

        // The kernel: a read-write mount replays and cleans up orphans.
        let kernel = scratch.join(format!("{kind}-kernel.img"));
        std::fs::write(&kernel, &crashed).unwrap();
        let mnt = scratch.join("mnt");
        let Some(m) = Mount::or_skip(&kernel, &mnt, "", "kernel orphan cleanup of 1 000 orphans") else { continue };
        drop(m);
        assert_fsck_clean(&kernel);
        assert_eq!(image_free_counts(&kernel), before, "{kind}: the kernel frees what we free");
    }
}
