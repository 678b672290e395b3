//! Directory mutation on real images, judged by e2fsprogs and the kernel:
//! thousands of entries added, removed at random, re-added and re-pointed
//! through `add_entry` / `remove_entry` / `set_entry`, across the
//! linear → htree conversion, leaf splits, index splits (two levels at
//! 1 KiB blocks) and the inline → block conversion. After every phase our
//! own `lookup` / `read_dir` must agree with the model, and a `read_dir`
//! resumed from a cookie taken before the phase must return every
//! surviving entry exactly once. At the end: `e2fsck -fn` is clean,
//! `debugfs ls -p` lists exactly the model, `debugfs htree_dump` reads the
//! index, and the kernel (read-only loop mount, when possible) lists and
//! looks up the same names and inodes. Then the kernel changes the
//! directories (read-write mount), e2fsck judges, and we change them again
//! on top of the kernel's work.

mod common;
mod dir_write_support;

use common::Scratch;
use common::tools::{debugfs, fsck, mkfs, run};
use dir_write_support::*;
use ext4::disk::dir_entry::FT_REG_FILE;
use ext4::disk::features::Incompat;
use ext4::disk::inode::{FL_INDEX, FL_INLINE_DATA};
use ext4::{Error, Ext4, OpenOptions, ROOT_INO};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// One directory under test and what it must hold.
struct Subject {
    ino: u32,
    path: String,
    model: BTreeMap<Vec<u8>, u32>,
}

/// Checks our reader against the model: read_dir lists exactly the model
/// once each, lookup finds every name and misses removed ones.
fn check_reader(fs: &Ext4, s: &Subject, gone: &[Vec<u8>], what: &str) {
    let got = listing(fs, s.ino, 0);
    let names: BTreeMap<Vec<u8>, u32> = got.iter().map(|(n, i, _)| (n.clone(), *i)).collect();
    assert_eq!(names.len(), got.len(), "{what}: a name listed twice");
    assert!(names == s.model, "{what}: read_dir differs from the model ({} vs {} names)", names.len(), s.model.len());
    let dir = fs.read_inode(s.ino).unwrap();
    for (name, &ino) in &s.model {
        assert_eq!(fs.lookup(&dir, name).unwrap().map(|e| e.ino), Some(ino), "{what}: lookup {name:x?}");
    }
    for name in gone.iter().filter(|n| !s.model.contains_key(*n)) {
        assert!(fs.lookup(&dir, name).unwrap().is_none(), "{what}: removed {name:x?} still found");
    }
    let parent = fs.lookup(&dir, b"..").unwrap().unwrap().ino;
    assert!(parent == ROOT_INO, "{what}: '..' is {parent}");
}

/// The resumption property: an enumeration interrupted at `cookie` and
/// resumed after the directory changed returns every entry that existed
/// before and survived exactly once over both parts.
fn check_resume(fs: &Ext4, s: &Subject, before: &[(Vec<u8>, u32, u64)], cut: usize, what: &str) {
    let (first, cookie) = (&before[..cut], before[cut - 1].2);
    let rest = listing(fs, s.ino, cookie);
    let old: BTreeSet<&Vec<u8>> = before.iter().map(|e| &e.0).collect();
    let mut seen = BTreeSet::new();
    for (name, _, _) in first.iter().chain(rest.iter()) {
        if old.contains(name) && s.model.contains_key(name) {
            assert!(seen.insert(name.clone()), "{what}: {name:x?} returned twice across the resumption");
        }
    }
    for name in old.iter().filter(|n| s.model.contains_key(**n)) {
        assert!(seen.contains(*name), "{what}: surviving {name:x?} skipped across the resumption");
    }
}

/// Adds `count` new names in handles of 1..=8 operations.
fn add_names(fs: &Ext4, s: &mut Subject, rng: &mut Rng, serial: &mut u64, count: usize, long: bool) {
    let mut left = count;
    while left > 0 {
        let batch = (1 + rng.below(8) as usize).min(left);
        let mut h = fs.begin().unwrap();
        let mut dir = fs.read_inode_in(&h, s.ino).unwrap();
        for _ in 0..batch {
            *serial += 1;
            let name = make_name(rng, *serial, long);
            let ino = new_file(fs, &mut h, s.ino);
            fs.add_entry(&mut h, &mut dir, &name, ino, FT_REG_FILE).unwrap();
            assert_eq!(fs.find_entry_in(&h, &dir, &name).unwrap().map(|e| e.ino), Some(ino));
            s.model.insert(name, ino);
        }
        h.finish();
        left -= batch;
    }
}

/// Re-adds names that were removed.
fn readd_names(fs: &Ext4, s: &mut Subject, rng: &mut Rng, names: &[Vec<u8>]) {
    for chunk in names.chunks(1 + rng.below(6) as usize) {
        let mut h = fs.begin().unwrap();
        let mut dir = fs.read_inode_in(&h, s.ino).unwrap();
        for name in chunk {
            let ino = new_file(fs, &mut h, s.ino);
            fs.add_entry(&mut h, &mut dir, name, ino, FT_REG_FILE).unwrap();
            s.model.insert(name.clone(), ino);
        }
        h.finish();
    }
}

/// Removes about `percent`% of the names, at random; returns them.
fn remove_names(fs: &Ext4, s: &mut Subject, rng: &mut Rng, percent: u64) -> Vec<Vec<u8>> {
    let victims: Vec<Vec<u8>> = s.model.keys().filter(|_| rng.below(100) < percent).cloned().collect();
    for chunk in victims.chunks(1 + rng.below(6) as usize) {
        let mut h = fs.begin().unwrap();
        let mut dir = fs.read_inode_in(&h, s.ino).unwrap();
        for name in chunk {
            let ino = fs.remove_entry(&mut h, &mut dir, name).unwrap();
            assert_eq!(Some(ino), s.model.remove(name), "remove_entry returned another inode");
            assert!(fs.find_entry_in(&h, &dir, name).unwrap().is_none());
            delete_file(fs, &mut h, ino);
        }
        h.finish();
    }
    victims
}

/// Re-points some names at new inodes (rename over an existing name).
fn repoint_names(fs: &Ext4, s: &mut Subject, rng: &mut Rng, count: usize) {
    let names: Vec<Vec<u8>> = s.model.keys().filter(|_| rng.below(10) == 0).take(count).cloned().collect();
    for name in names {
        let mut h = fs.begin().unwrap();
        let mut dir = fs.read_inode_in(&h, s.ino).unwrap();
        let ino = new_file(fs, &mut h, s.ino);
        let old = fs.set_entry(&mut h, &mut dir, &name, ino, FT_REG_FILE).unwrap();
        assert_eq!(Some(old), s.model.insert(name, ino));
        delete_file(fs, &mut h, old);
        h.finish();
    }
}

/// Errors that must leave nothing behind (their handles are dropped).
fn check_refusals(fs: &Ext4, s: &Subject) {
    let mut h = fs.begin().unwrap();
    let mut dir = fs.read_inode_in(&h, s.ino).unwrap();
    if let Some((name, &ino)) = s.model.iter().next() {
        assert!(matches!(fs.add_entry(&mut h, &mut dir, name, ino, FT_REG_FILE), Err(Error::Exists)));
    }
    assert!(matches!(fs.remove_entry(&mut h, &mut dir, b"no such name"), Err(Error::NotFound)));
    assert!(matches!(fs.set_entry(&mut h, &mut dir, b"no such name", 11, FT_REG_FILE), Err(Error::NotFound)));
    for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b", &[b'x'; 256]] {
        assert!(matches!(fs.add_entry(&mut h, &mut dir, bad, 11, FT_REG_FILE), Err(Error::InvalidName)), "{bad:x?}");
    }
    assert!(matches!(fs.remove_entry(&mut h, &mut dir, b".."), Err(Error::InvalidName)));
    drop(h);
}

/// Runs the add / remove / re-add / re-point phases on one directory.
fn exercise(fs: &Ext4, s: &mut Subject, rng: &mut Rng, count: usize, long: bool, what: &str) {
    let mut serial = s.ino as u64 * 1_000_000;
    let mut gone = Vec::new();
    let phases = ["add", "remove", "re-add", "grow", "re-point", "remove-more"];
    for phase in phases {
        let tag = format!("{what} after {phase}");
        let before = listing(fs, s.ino, 0);
        let was_indexed = fs.read_inode(s.ino).unwrap().has_flag(FL_INDEX);
        match phase {
            "add" => add_names(fs, s, rng, &mut serial, count, long),
            "remove" => gone = remove_names(fs, s, rng, 45),
            "re-add" => {
                let again: Vec<Vec<u8>> = gone.iter().filter(|_| rng.below(2) == 0).cloned().collect();
                readd_names(fs, s, rng, &again);
            }
            "grow" => add_names(fs, s, rng, &mut serial, count / 3, long),
            "re-point" => repoint_names(fs, s, rng, 40),
            _ => gone.extend(remove_names(fs, s, rng, 30)),
        }
        check_reader(fs, s, &gone, &tag);
        // Cookies are byte offsets in linear (and inline) directories and
        // hash positions in indexed ones: they carry over every change but
        // the switch to an index (as in the kernel).
        if before.len() >= 2 && was_indexed == fs.read_inode(s.ino).unwrap().has_flag(FL_INDEX) {
            check_resume(fs, s, &before, before.len() / 2, &tag);
        }
        check_refusals(fs, s);
        if phase == "re-add" {
            fs.sync().unwrap();
        }
    }
}

/// Lists each subject with the kernel (read-only loop mount) and compares.
fn check_kernel(img: &Path, scratch: &Scratch, subjects: &[Subject], tag: &str) {
    let Some(m) = mount_ro(img, scratch, &format!("dir_write {tag} kernel listing")) else { return };
    for s in subjects {
        let dir = m.0.join(s.path.trim_start_matches('/'));
        let got = kernel_listing(&m, &s.path);
        assert!(
            got == s.model,
            "{tag}: the kernel lists {} names in {}, the model {}",
            got.len(),
            s.path,
            s.model.len()
        );
        // `ls -f` (unsorted, as readdir returns them) agrees too.
        let ls = run(Command::new("ls").arg("-f").arg(&dir));
        assert_eq!(ls.lines().filter(|l| *l != "." && *l != "..").count(), s.model.len(), "{tag}: ls -f");
        // And the kernel's own lookups (through the index) find every name.
        for (name, &ino) in &s.model {
            let md = std::fs::symlink_metadata(dir.join(OsStr::from_bytes(name))).unwrap();
            assert_eq!(md.ino(), ino as u64, "{tag}: the kernel's lookup of {name:x?}");
        }
    }
}

/// The kernel changes the directories we wrote (read-write mount: new
/// files, unlinks, so leaf splits of our index by the kernel), e2fsck
/// judges, and then we change them again on top of the kernel's work.
fn kernel_round_trip(img: &Path, scratch: &Scratch, subjects: &mut [Subject], tag: &str) {
    let Some(m) = mount_rw(img, scratch, &format!("dir_write {tag} kernel writes")) else { return };
    let mut rng = Rng(99);
    for s in subjects.iter_mut() {
        let dir = m.0.join(s.path.trim_start_matches('/'));
        let victims: Vec<Vec<u8>> = s.model.keys().filter(|_| rng.below(3) == 0).cloned().collect();
        for name in victims {
            std::fs::remove_file(dir.join(OsStr::from_bytes(&name))).unwrap();
            s.model.remove(&name);
        }
        for i in 0..300 {
            let name = format!("kernel-{i}-{}", rng.below(1 << 20));
            let f = std::fs::File::create(dir.join(&name)).unwrap();
            s.model.insert(name.into_bytes(), f.metadata().unwrap().ino() as u32);
        }
    }
    drop(m);
    let (clean, out) = fsck(img);
    assert!(clean, "{tag}: e2fsck -fn after the kernel's changes is not clean:\n{out}");
    let fs = Ext4::open(img, &OpenOptions::default()).unwrap();
    for s in subjects.iter_mut() {
        check_reader(&fs, s, &[], &format!("{tag} {} after the kernel", s.path));
        let mut serial = 1u64 << 40;
        add_names(&fs, s, &mut rng, &mut serial, 300, false);
        remove_names(&fs, s, &mut rng, 20);
        check_reader(&fs, s, &[], &format!("{tag} {} after the kernel and us", s.path));
    }
    fs.close().unwrap();
    drop(fs);
    let (clean, out) = fsck(img);
    assert!(clean, "{tag}: e2fsck -fn after our changes on the kernel's is not clean:\n{out}");
    for s in subjects.iter() {
        assert!(debugfs_listing(img, &s.path) == s.model, "{tag}: debugfs ls -p {} at the end", s.path);
    }
}

struct Case {
    tag: &'static str,
    mkfs: &'static [&'static str],
    /// Entries added to the mke2fs-made directory in the first phase.
    count: usize,
    /// Mostly 30..70-byte names (fewer entries per leaf: deeper trees).
    long: bool,
    /// Set the unsigned-hash superblock flag before any change.
    unsigned_hash: bool,
    /// Expect the mke2fs-made directory to end up indexed.
    indexed: bool,
}

fn run_case(c: &Case) {
    let scratch = Scratch::new(c.tag);
    let src = scratch.join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    for i in 0..5 {
        std::fs::write(src.join(format!("d/init-{i}")), b"").unwrap();
    }
    let img = scratch.join("fs.img");
    mkfs(&img, "128M", Some(&src), c.mkfs);
    if c.unsigned_hash {
        run(Command::new("debugfs").args(["-w", "-R", "ssv flags 2"]).arg(&img));
    }
    let mut rng = Rng(0x5eed_0000 + c.count as u64);
    let mut subjects = Vec::new();
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        assert_eq!(fs.superblock().hash_unsigned(), c.unsigned_hash);
        let d = fs.resolve_path(b"/d", false).unwrap();
        let model: BTreeMap<Vec<u8>, u32> = listing(&fs, d, 0).into_iter().map(|(n, i, _)| (n, i)).collect();
        assert_eq!(model.len(), 5);
        let mut s = Subject { ino: d, path: "/d".into(), model };
        exercise(&fs, &mut s, &mut rng, c.count, c.long, &format!("{} /d", c.tag));
        subjects.push(s);
        // A directory made by new_directory: inline first where the file
        // system has inline_data, then a block, then an index.
        let mut h = fs.begin().unwrap();
        let n = mkdir_in(&fs, &mut h, ROOT_INO, b"n");
        h.finish();
        let inline = fs.read_inode(n).unwrap().has_flag(FL_INLINE_DATA);
        assert_eq!(inline, fs.superblock().incompat().has(Incompat::INLINE_DATA), "{}: new directory layout", c.tag);
        let mut s = Subject { ino: n, path: "/n".into(), model: BTreeMap::new() };
        exercise(&fs, &mut s, &mut rng, 300, false, &format!("{} /n", c.tag));
        subjects.push(s);
        fs.close().unwrap();
        let d_inode = fs.read_inode(d).unwrap();
        assert_eq!(d_inode.has_flag(FL_INDEX), c.indexed, "{}: /d indexed", c.tag);
    }
    let (clean, out) = fsck(&img);
    assert!(clean, "{}: e2fsck -fn is not clean:\n{out}", c.tag);
    for s in &subjects {
        assert!(
            debugfs_listing(&img, &s.path) == s.model,
            "{}: debugfs ls -p {} differs from the model",
            c.tag,
            s.path
        );
    }
    if c.indexed {
        let dump = debugfs(&img, "htree_dump /d");
        assert!(dump.contains("Root node dump"), "{}: htree_dump:\n{dump}", c.tag);
        if c.long {
            assert!(dump.contains("Indirect levels: 1"), "{}: expected a two-level tree", c.tag);
        }
    }
    check_kernel(&img, &scratch, &subjects, c.tag);
    kernel_round_trip(&img, &scratch, &mut subjects, c.tag);
}

#[test]
fn dir_write_ext4_4k_csum() {
    run_case(&Case {
        tag: "dw-ext4-4k",
        mkfs: &["-t", "ext4"],
        count: 3000,
        long: false,
        unsigned_hash: false,
        indexed: true,
    });
}

#[test]
fn dir_write_ext4_1k_two_levels() {
    run_case(&Case {
        tag: "dw-ext4-1k",
        mkfs: &["-t", "ext4", "-b", "1024"],
        count: 3000,
        long: true,
        unsigned_hash: false,
        indexed: true,
    });
}

#[test]
fn dir_write_ext4_1k_no_csum_unsigned_hash() {
    run_case(&Case {
        tag: "dw-ext4-1k-nocsum",
        mkfs: &["-t", "ext4", "-b", "1024", "-O", "^metadata_csum"],
        count: 2500,
        long: true,
        unsigned_hash: true,
        indexed: true,
    });
}

#[test]
fn dir_write_ext4_inline_data() {
    run_case(&Case {
        tag: "dw-ext4-inline",
        mkfs: &["-t", "ext4", "-O", "inline_data"],
        count: 1500,
        long: false,
        unsigned_hash: false,
        indexed: true,
    });
}

#[test]
fn dir_write_ext4_64k_largedir() {
    run_case(&Case {
        tag: "dw-ext4-64k",
        mkfs: &["-t", "ext4", "-b", "65536", "-O", "large_dir", "-N", "16384"],
        count: 2500,
        long: false,
        unsigned_hash: false,
        indexed: true,
    });
}

#[test]
fn dir_write_ext3_block_map() {
    run_case(&Case {
        tag: "dw-ext3",
        mkfs: &["-t", "ext3", "-b", "1024"],
        count: 1500,
        long: false,
        unsigned_hash: false,
        indexed: true,
    });
}

#[test]
fn dir_write_ext2_linear_no_filetype() {
    run_case(&Case {
        tag: "dw-ext2-linear",
        mkfs: &["-t", "ext2", "-b", "1024", "-O", "^dir_index,^filetype"],
        count: 1000,
        long: false,
        unsigned_hash: false,
        indexed: false,
    });
}
