//! Files unlinked while open: the inode goes on the orphan list instead of
//! being freed; closing it frees it, and after a crash our open, e2fsck and
//! the kernel each free it.

mod common;

use common::tools::{assert_fsck_clean, debugfs, fsck, mkfs, run};
use common::{Scratch, tree};
use ext4::disk::features::{Compat, RoCompat};
use ext4::fs::dir::namespace::NewInode;
use ext4::{Ext4, OpenOptions, ROOT_INO};
use std::path::Path;
use std::process::Command;

const SIZE: usize = 200_000;

fn reg() -> NewInode {
    NewInode { mode: 0o100644, uid: 0, gid: 0, rdev: 0, umask: None }
}

/// Whether `ino` is the only orphan recorded: in the orphan file when the
/// image has one (with `orphan_present` set), otherwise on the classic list.
fn recorded_alone(fs: &Ext4, ino: u32) -> bool {
    let sb = fs.current_superblock().unwrap();
    if fs.superblock().compat().has(Compat::ORPHAN_FILE) {
        fs.orphan_records() == (1, 0) && sb.last_orphan == 0 && sb.ro_compat().has(RoCompat::ORPHAN_PRESENT)
    } else {
        fs.orphan_records() == (0, 1) && sb.last_orphan == ino
    }
}

fn free_counts(fs: &Ext4) -> (u64, u64) {
    let s = fs.statfs().unwrap();
    (s.free_blocks, s.free_inodes)
}

/// Creates /f with data and /g, holds /f open and unlinks it. Returns the
/// orphan's inode number and the free counts before /f was created.
fn unlink_open(fs: &Ext4) -> (u32, (u64, u64)) {
    fs.create(ROOT_INO, b"g", reg()).unwrap();
    fs.tx().unwrap().commit().unwrap();
    let before = free_counts(fs);
    let ino = fs.create(ROOT_INO, b"f", reg()).unwrap().ino;
    let data = tree::pattern(7, SIZE);
    assert_eq!(fs.write(ino, 0, &data).unwrap(), SIZE);
    fs.open_inode(ino);
    fs.unlink(ROOT_INO, b"f").unwrap();
    // Still readable through the open reference.
    let inode = fs.read_inode(ino).unwrap();
    assert_eq!(inode.links_count(), 0);
    let mut buf = vec![0u8; SIZE];
    assert_eq!(fs.read(&inode, 0, &mut buf).unwrap(), SIZE);
    assert_eq!(buf, data);
    assert!(recorded_alone(fs, ino));
    assert!(free_counts(fs).0 < before.0);
    (ino, before)
}

fn image(scratch: &Scratch, name: &str, args: &[&str]) -> std::path::PathBuf {
    let img = scratch.join(name);
    mkfs(&img, "32M", None, args);
    img
}

#[test]
fn close_frees_an_unlinked_open_file() {
    let scratch = Scratch::new("orphan-close");
    for args in [&["-t", "ext4", "-b", "4096"][..], &["-t", "ext4", "-b", "1024", "-O", "orphan_file,inline_data"][..]]
    {
        let img = image(&scratch, "fs.img", args);
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let (ino, before) = unlink_open(&fs);
        fs.open_inode(ino);
        fs.close_inode(ino).unwrap();
        assert_eq!(fs.read_inode(ino).unwrap().links_count(), 0);
        assert!(recorded_alone(&fs, ino), "still open once");
        fs.close_inode(ino).unwrap();
        assert_eq!(fs.current_superblock().unwrap().last_orphan, 0);
        assert_eq!(fs.orphan_records(), (0, 0));
        assert_eq!(free_counts(&fs), before);
        assert!(fs.close_inode(ino).is_err(), "closing an inode that is not open");
        fs.close().unwrap();
        drop(fs);
        assert_fsck_clean(&img);
    }
}

#[test]
fn orphans_leave_the_middle_of_the_list() {
    let scratch = Scratch::new("orphan-middle");
    let img = image(&scratch, "fs.img", &["-t", "ext4", "-b", "4096"]);
    let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
    let before = free_counts(&fs);
    let mut inos = Vec::new();
    for i in 0..4u8 {
        let name = [b'a' + i];
        let ino = fs.create(ROOT_INO, &name, reg()).unwrap().ino;
        fs.write(ino, 0, &tree::pattern(i as u64, 5000 * (i as usize + 1))).unwrap();
        fs.open_inode(ino);
        inos.push(ino);
    }
    // A directory removed while open and a file replaced by rename.
    let d = fs.mkdir(ROOT_INO, b"dir", NewInode { mode: 0o40755, ..reg() }).unwrap().ino;
    fs.open_inode(d);
    fs.rmdir(ROOT_INO, b"dir").unwrap();
    for i in 0..3u8 {
        fs.unlink(ROOT_INO, &[b'a' + i]).unwrap();
    }
    // The last open file is replaced by a rename.
    fs.create(ROOT_INO, b"x", reg()).unwrap();
    fs.rename(ROOT_INO, b"x", ROOT_INO, &[b'a' + 3], Default::default()).unwrap();
    // List (head first): d, c, b, a, dir. Close the middle, then the ends.
    for ino in [inos[1], inos[3], d, inos[0], inos[2]] {
        fs.close_inode(ino).unwrap();
        assert!(fs.read_inode(ino).unwrap().mode() == 0 || fs.read_inode(ino).unwrap().dtime() != 0);
    }
    assert_eq!(fs.current_superblock().unwrap().last_orphan, 0);
    fs.unlink(ROOT_INO, &[b'a' + 3]).unwrap();
    assert_eq!(free_counts(&fs), before);
    fs.close().unwrap();
    drop(fs);
    assert_fsck_clean(&img);
}

/// Runs `e2fsck -fy` and returns its output; exit codes 0 and 1 only.
fn fsck_fix(img: &Path) -> String {
    let out = Command::new("e2fsck").arg("-fy").arg(img).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.code().unwrap_or(8) <= 1, "e2fsck -fy {img:?}:\n{text}");
    text
}

/// Whether inode `ino` is marked in use in the image (debugfs `testi`).
fn in_use(img: &Path, ino: u32) -> bool {
    let out = Command::new("debugfs").arg("-R").arg(format!("testi <{ino}>")).arg(img).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    !text.contains("not in use")
}

#[test]
fn a_crash_leaves_an_orphan_that_every_recovery_frees() {
    let scratch = Scratch::new("orphan-crash");
    for args in [&["-t", "ext4", "-b", "4096"][..], &["-t", "ext4", "-b", "1024", "-O", "orphan_file"][..]] {
        let img = image(&scratch, "fs.img", args);
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let (ino, before) = unlink_open(&fs);
        fs.tx().unwrap().commit().unwrap();
        // The crash: the image as the commit left it, the inode still open.
        let crashed = std::fs::read(&img).unwrap();
        fs.close_inode(ino).unwrap();
        fs.close().unwrap();
        drop(fs);
        assert_fsck_clean(&img);

        // e2fsck: -n cannot replay the journal, so it judges the image as of
        // the last checkpoint (before the file existed) and must find nothing
        // wrong there; -y replays, clears the orphan and leaves it clean.
        let theirs = scratch.join("theirs.img");
        std::fs::write(&theirs, &crashed).unwrap();
        let (clean, text) = fsck(&theirs);
        assert!(clean, "e2fsck -fn on the crashed image:\n{text}");
        let text = fsck_fix(&theirs);
        assert!(text.contains(&format!("Clearing orphaned inode {ino} ")), "e2fsck -fy must clear the orphan:\n{text}");
        assert_fsck_clean(&theirs);
        assert!(!in_use(&theirs, ino), "e2fsck freed the orphan");
        assert!(debugfs(&theirs, "ls -l /").contains(" g"));

        // Ours: open replays the journal and processes the orphan list.
        let ours = scratch.join("ours.img");
        std::fs::write(&ours, &crashed).unwrap();
        {
            let fs = Ext4::open(&ours, &OpenOptions::default()).unwrap();
            assert_eq!(fs.current_superblock().unwrap().last_orphan, 0);
            assert_eq!(free_counts(&fs), before);
            assert_eq!(fs.read_inode(ino).unwrap().links_count(), 0);
            fs.close().unwrap();
        }
        assert_fsck_clean(&ours);
        assert!(!in_use(&ours, ino));

        // The kernel: a read-write mount replays and cleans up orphans.
        let kernel = scratch.join("kernel.img");
        std::fs::write(&kernel, &crashed).unwrap();
        if !common::is_root() {
            common::skip("kernel orphan cleanup", "mount needs root");
            continue;
        }
        let mnt = scratch.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let out = Command::new("mount").arg("-o").arg("loop").arg(&kernel).arg(&mnt).output().unwrap();
        if !out.status.success() {
            common::skip(
                "kernel orphan cleanup",
                &format!("mount failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
            );
            continue;
        }
        run(Command::new("umount").arg(&mnt));
        assert_fsck_clean(&kernel);
        assert!(!in_use(&kernel, ino), "the kernel freed the orphan");
    }
}

#[test]
fn a_looping_orphan_chain_is_corruption() {
    let scratch = Scratch::new("orphan-loop");
    let img = image(&scratch, "fs.img", &["-t", "ext4", "-b", "4096"]);
    let (a, b) = {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let a = fs.create(ROOT_INO, b"a", reg()).unwrap().ino;
        let b = fs.create(ROOT_INO, b"b", reg()).unwrap().ino;
        fs.open_inode(a);
        fs.open_inode(b);
        fs.unlink(ROOT_INO, b"a").unwrap();
        fs.unlink(ROOT_INO, b"b").unwrap();
        // Close the file system with both still open: a clean image with an
        // orphan list b -> a.
        fs.close().unwrap();
        (a, b)
    };
    assert_eq!(
        Ext4::open(&img, &OpenOptions { read_only: true, ..Default::default() }).unwrap().superblock().last_orphan,
        b
    );
    run(Command::new("debugfs").arg("-w").arg("-R").arg(format!("sif <{a}> dtime {b}")).arg(&img));
    let err = Ext4::open(&img, &OpenOptions::default()).unwrap_err();
    assert!(matches!(err, ext4::Error::Corrupt { .. }), "{err}");
}

#[test]
fn truncate_orphans_are_cut_to_their_size() {
    // A linked inode on the list (the kernel's truncate orphans): blocks
    // past i_size are freed, the inode stays.
    let scratch = Scratch::new("orphan-truncate");
    let img = image(&scratch, "fs.img", &["-t", "ext4", "-b", "4096"]);
    let ino = {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let ino = fs.create(ROOT_INO, b"t", reg()).unwrap().ino;
        fs.write(ino, 0, &tree::pattern(1, 40_000)).unwrap();
        fs.close().unwrap();
        ino
    };
    run(Command::new("debugfs").arg("-w").arg("-R").arg(format!("sif <{ino}> size 5000")).arg(&img));
    run(Command::new("debugfs").arg("-w").arg("-R").arg(format!("ssv last_orphan {ino}")).arg(&img));
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        assert_eq!(fs.current_superblock().unwrap().last_orphan, 0);
        let inode = fs.read_inode(ino).unwrap();
        assert_eq!(inode.size(), 5000);
        assert_eq!(inode.blocks_512(false, 4096), 16, "two 4 KiB blocks left");
        fs.close().unwrap();
    }
    assert_fsck_clean(&img);
}

#[test]
fn a_bad_orphan_file_is_refused_and_left_alone() {
    use ext4::disk::checksum::orphan_file_seed;
    use ext4::disk::orphan_file::{BlockCsum, OrphanBlock};
    let scratch = Scratch::new("orphan-file-bad");
    let img = image(&scratch, "fs.img", &["-t", "ext4", "-b", "1024", "-O", "orphan_file"]);
    let (a, b) = {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        let a = fs.create(ROOT_INO, b"a", reg()).unwrap().ino;
        let b = fs.create(ROOT_INO, b"b", reg()).unwrap().ino;
        fs.open_inode(a);
        fs.open_inode(b);
        fs.unlink(ROOT_INO, b"a").unwrap();
        fs.unlink(ROOT_INO, b"b").unwrap();
        assert_eq!(fs.orphan_records(), (2, 0));
        // Closed with both still open: a clean image whose orphan file
        // holds them, orphan_present set.
        fs.close().unwrap();
        assert!(fs.current_superblock().unwrap().ro_compat().has(RoCompat::ORPHAN_PRESENT));
        (a, b)
    };
    let good = std::fs::read(&img).unwrap();
    // Where the first orphan block is, and its checksum seed.
    let (pblk, csum) = {
        let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
        let ino = fs.superblock().orphan_file_inum;
        let inode = fs.read_inode(ino).unwrap();
        let pblk = fs.file_extents(&inode).unwrap()[0].pblk;
        (pblk, BlockCsum { file_seed: orphan_file_seed(fs.csum_seed().unwrap(), ino, inode.generation()), pblk })
    };
    let at = pblk as usize * 1024;
    let block = OrphanBlock::parse(&good[at..at + 1024], pblk, Some(csum)).unwrap();
    assert_eq!(block.used().map(|(_, ino)| ino).collect::<Vec<_>>(), vec![a, b]);
    let with_block = |blk: &[u8]| {
        let mut bytes = good.clone();
        bytes[at..at + 1024].copy_from_slice(blk);
        std::fs::write(&img, &bytes).unwrap();
    };
    let refused = |what: &str| {
        let err = Ext4::open(&img, &OpenOptions::default()).unwrap_err();
        assert!(matches!(err, ext4::Error::Corrupt { .. } | ext4::Error::Checksum { .. }), "{what}: {err}");
        assert_eq!(std::fs::read(&img).unwrap().len(), good.len());
    };
    // A flipped entry: the checksum no longer matches.
    let mut bytes = block.to_bytes(Some(csum));
    bytes[0] ^= 0x40;
    with_block(&bytes);
    refused("bad checksum");
    // A valid block naming an inode twice, or an unused inode.
    for (slot, ino) in [(5, a), (5, 30)] {
        let mut bad = block.clone();
        bad.set(slot, ino);
        with_block(&bad.to_bytes(Some(csum)));
        let before = std::fs::read(&img).unwrap();
        refused(&format!("slot {slot} = {ino}"));
        assert!(std::fs::read(&img).unwrap() == before, "nothing changed on a refused image");
    }
    // The good image: both orphans freed, the flag cleared at close.
    with_block(&block.to_bytes(Some(csum)));
    {
        let fs = Ext4::open(&img, &OpenOptions::default()).unwrap();
        assert!(!fs.current_superblock().unwrap().ro_compat().has(RoCompat::ORPHAN_PRESENT));
        fs.close().unwrap();
    }
    assert_fsck_clean(&img);
    assert!(!in_use(&img, a) && !in_use(&img, b));
}
