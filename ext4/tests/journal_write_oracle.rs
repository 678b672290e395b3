//! Journaled writes judged by the e2fsprogs tools and the kernel. On
//! mke2fs images (ext4 with metadata_csum at 1 KiB and 4 KiB blocks, which
//! gets a checksum v3 journal; ext4 without metadata_csum; ext3), three
//! transactions change two inodes' mtimes, rewrite a directory block as it
//! is, and put new contents (beginning with the jbd2 magic: escaped) into a
//! file block journaled as metadata. They are committed, not checkpointed,
//! and the image file is copied ("crash"). Then:
//! - `dumpe2fs -h` shows needs_recovery, `debugfs -R logdump` walks our
//!   transactions without complaint;
//! - `e2fsck -fy` replays one copy, which is then clean; our recovery of
//!   another copy gives the same blocks and the same `debugfs stat`;
//! - the kernel mounts a third copy (root and loop mounts permitting,
//!   otherwise a loud SKIPPED) and sees the new mtimes and contents;
//! - after `close()` the image itself is clean, without needs_recovery,
//!   and the kernel mounts it.

mod common;

use common::kernel::Mount;
mod journal_support;
mod journal_write_support;

use common::tools::{assert_fsck_clean, mkfs};
use common::{Scratch, is_root, skip};
use ext4::Ext4;
use journal_support::*;
use journal_write_support::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Case {
    name: &'static str,
    mkfs_args: &'static [&'static str],
    fstype: &'static str,
    /// Journal features after our first commit, as dumpe2fs names them.
    journal_features: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "ext4_csum_1k",
        mkfs_args: &["-t", "ext4", "-b", "1024"],
        fstype: "ext4",
        journal_features: &["journal_incompat_revoke", "journal_64bit", "journal_checksum_v3"],
    },
    Case {
        name: "ext4_csum_4k",
        mkfs_args: &["-t", "ext4", "-b", "4096"],
        fstype: "ext4",
        journal_features: &["journal_incompat_revoke", "journal_64bit", "journal_checksum_v3"],
    },
    Case {
        name: "ext4_no_csum",
        mkfs_args: &["-t", "ext4", "-b", "1024", "-O", "^metadata_csum"],
        fstype: "ext4",
        journal_features: &["journal_incompat_revoke", "journal_64bit"],
    },
    Case {
        name: "ext3",
        mkfs_args: &["-t", "ext3", "-b", "1024"],
        fstype: "ext3",
        journal_features: &["journal_incompat_revoke"],
    },
];

const MTIME_A: u32 = 1_111_111_111;
const MTIME_C: u32 = 1_222_222_222;

/// What the transactions changed, for checking the replays.
struct Changes {
    ino_a: u32,
    ino_c: u32,
    /// (block, new contents) of the file block journaled as metadata.
    b_block: (u64, Vec<u8>),
    /// Blocks to compare between replays.
    blocks: Vec<u64>,
    b_contents: Vec<u8>,
    tids: Vec<u32>,
}

fn source_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("d")).unwrap();
    std::fs::write(dir.join("a"), pattern(1, 5000)).unwrap();
    std::fs::write(dir.join("b"), pattern(2, 10_000)).unwrap();
    std::fs::write(dir.join("d/c"), pattern(3, 100)).unwrap();
    for i in 0..20 {
        std::fs::write(dir.join(format!("d/f{i}")), format!("{i}")).unwrap();
    }
}

/// Makes the three transactions on the open image.
fn transactions(fs: &Ext4, img: &Path) -> Changes {
    let tx = fs.tx().unwrap();
    let bs = fs.block_size() as usize;
    let ino = |path| inode_of(img, path);
    let (ino_a, ino_b, ino_c, ino_d) = (ino("/a"), ino("/b"), ino("/d/c"), ino("/d"));
    let mut tids = Vec::new();

    let mut h = fs.begin().unwrap();
    stage_mtime(fs, &mut h, ino_a, MTIME_A);
    h.finish();
    tids.push(tx.commit().unwrap().unwrap());

    let b_blk = file_blocks(fs, ino_b)[1];
    let new_b = magic_block(bs, 0x5A);
    let mut h = fs.begin().unwrap();
    h.write(b_blk, new_b.clone());
    h.finish();
    tids.push(tx.commit().unwrap().unwrap());

    let dir_blk = file_blocks(fs, ino_d)[0];
    let mut h = fs.begin().unwrap();
    let dir = fs.meta_block_in(&h, dir_blk, "directory").unwrap().to_vec();
    h.write(dir_blk, dir);
    stage_mtime(fs, &mut h, ino_c, MTIME_C);
    h.finish();
    tids.push(tx.commit().unwrap().unwrap());

    // File b's second block lies wholly inside its 10 000 bytes.
    let mut b_contents = pattern(2, 10_000);
    b_contents[bs..2 * bs].copy_from_slice(&new_b);
    let mut blocks = vec![inode_slot(fs, ino_a).0, inode_slot(fs, ino_c).0, b_blk, dir_blk];
    blocks.sort_unstable();
    blocks.dedup();
    Changes { ino_a, ino_c, b_block: (b_blk, new_b), blocks, b_contents, tids }
}

fn mtime_in_stat(stat: &str) -> Option<u64> {
    // debugfs: " mtime: 0x423a35c7:00000000 -- Fri Mar 18 ..." or "mtime: 0x423a35c7 -- ...".
    let line = stat.lines().find(|l| l.trim_start().starts_with("mtime:"))?;
    let hex = line.split_whitespace().nth(1)?.trim_start_matches("0x");
    u64::from_str_radix(hex.split(':').next()?, 16).ok()
}

fn read_block(img: &Path, blk: u64, bs: usize) -> Vec<u8> {
    let data = std::fs::read(img).unwrap();
    data[blk as usize * bs..(blk as usize + 1) * bs].to_vec()
}

/// `debugfs -R logdump` walks every transaction and tags every block.
fn check_logdump(case: &Case, img: &Path, ch: &Changes) {
    let out = String::from_utf8_lossy(&debugfs_bytes(img, "logdump -a")).into_owned();
    for bad in ["Unexpected", "invalid", "Bad", "corrupt", "error"] {
        assert!(!out.contains(bad), "{}: logdump complains ({bad}):\n{out}", case.name);
    }
    for tid in &ch.tids {
        assert!(
            out.contains(&format!("Found expected sequence {tid}, type 1 (descriptor block)")),
            "{}: no descriptor of transaction {tid}:\n{out}",
            case.name
        );
        assert!(
            out.contains(&format!("Found expected sequence {tid}, type 2 (commit block)")),
            "{}: no commit of transaction {tid}:\n{out}",
            case.name
        );
    }
    for blk in &ch.blocks {
        assert!(out.contains(&format!("FS block {blk} logged at")), "{}: block {blk} not logged:\n{out}", case.name);
    }
    // The escaped block is flagged ESCAPE (1) in its tag.
    let escaped = out
        .lines()
        .find(|l| l.contains(&format!("FS block {} logged at", ch.b_block.0)))
        .unwrap_or_else(|| panic!("{}: escaped block {} not in logdump:\n{out}", case.name, ch.b_block.0))
        .to_string();
    let flags = escaped.rsplit("(flags 0x").next().and_then(|f| u32::from_str_radix(f.trim_end_matches(')'), 16).ok());
    assert!(flags.is_some_and(|f| f & 1 != 0), "{}: escape flag missing: {escaped}", case.name);
    let last = ch.tids.last().unwrap() + 1;
    assert!(
        out.contains("No magic number at block") || out.contains(&format!("(not {last})")),
        "{}: the log does not end after our transactions:\n{out}",
        case.name
    );
}

/// Mounts `img` with the kernel and checks what it sees: the new mtimes
/// (`mtime_c` for /d/c) and /b's contents; then e2fsck finds it clean.
fn check_kernel(case: &Case, s: &Scratch, img: &Path, ch: &Changes, mtime_c: u32, root_ok: bool) {
    let what = format!("journal_write_oracle {} kernel mount of {}", case.name, img.display());
    if !root_ok {
        skip(&what, "not running as root");
        return;
    }
    let mnt = match Mount::new(img, &s.join("mnt"), Some(case.fstype), "") {
        Ok(m) => m,
        Err(e) => {
            skip(&what, &format!("mount failed: {}", e.trim()));
            return;
        }
    };
    let meta = std::fs::metadata(mnt.0.join("a")).unwrap();
    assert_eq!(meta.mtime(), MTIME_A as i64, "{what}: the new mtime of /a");
    assert_eq!(meta.ino(), ch.ino_a as u64);
    assert_eq!(std::fs::metadata(mnt.0.join("d/c")).unwrap().mtime(), mtime_c as i64, "{what}");
    assert!(std::fs::read(mnt.0.join("b")).unwrap() == ch.b_contents, "{what}: /b");
    drop(mnt);
    assert_fsck_clean(img);
}

#[test]
fn journaled_transactions_replay_everywhere() {
    let root_ok = is_root();
    for case in CASES {
        let s = Scratch::new(&format!("jw-oracle-{}", case.name));
        let src = s.join("src");
        source_tree(&src);
        let img = s.join("img");
        mkfs(&img, "16M", Some(&src), case.mkfs_args);
        let fs = Ext4::open(&img, &read_write()).unwrap();
        let bs = fs.block_size() as usize;
        assert!(!needs_recovery(&img), "{}: a writable open alone changes nothing", case.name);
        let ch = transactions(&fs, &img);
        assert_eq!(ch.tids, vec![1, 2, 3], "{}: the sequence continues mke2fs's", case.name);

        // Crash: copies of the image as it is now.
        let copies: Vec<PathBuf> = ["e2fsck", "ours", "kernel"].iter().map(|n| s.join(n)).collect();
        for c in &copies {
            std::fs::copy(&img, c).unwrap();
        }
        let crashed = &copies[0];
        assert!(needs_recovery(crashed), "{}", case.name);
        assert_ne!(dumpe2fs_field(crashed, "Journal start"), "0", "{}", case.name);
        let features = dumpe2fs_field(crashed, "Journal features");
        for f in case.journal_features {
            assert!(features.split_whitespace().any(|x| x == *f), "{}: journal features {features}", case.name);
        }
        check_logdump(case, crashed, &ch);

        // e2fsck's replay.
        let out = Command::new("e2fsck").arg("-fy").arg(&copies[0]).output().unwrap();
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "{}: e2fsck -fy: {}",
            case.name,
            String::from_utf8_lossy(&out.stdout)
        );
        assert_fsck_clean(&copies[0]);
        assert!(!needs_recovery(&copies[0]));

        // Ours.
        let ours = Ext4::open(&copies[1], &read_write()).unwrap();
        let report = ours.recovery_report().cloned().unwrap();
        // One block in each of the first two transactions, two in the third.
        assert_eq!((report.transactions, report.blocks_replayed), (3, 4), "{}: {report:?}", case.name);
        assert_eq!(ours.read_inode(ch.ino_a).unwrap().mtime().secs, MTIME_A as i64);
        drop(ours);
        assert_fsck_clean(&copies[1]);
        for blk in &ch.blocks {
            assert!(
                read_block(&copies[0], *blk, bs) == read_block(&copies[1], *blk, bs),
                "{}: block {blk} differs between e2fsck's replay and ours",
                case.name
            );
        }
        assert!(read_block(&copies[1], ch.b_block.0, bs) == ch.b_block.1, "{}: escaped block restored", case.name);
        for path in ["/a", "/d/c", "/b", "/d"] {
            let stat = |img: &Path| String::from_utf8_lossy(&debugfs_bytes(img, &format!("stat {path}"))).into_owned();
            assert_eq!(stat(&copies[0]), stat(&copies[1]), "{}: stat {path}", case.name);
        }
        let stat_a = String::from_utf8_lossy(&debugfs_bytes(&copies[1], "stat /a")).into_owned();
        assert_eq!(mtime_in_stat(&stat_a), Some(MTIME_A as u64), "{}: {stat_a}", case.name);
        assert!(debugfs_bytes(&copies[1], "cat /b") == ch.b_contents, "{}", case.name);
        assert_eq!(dumpe2fs_field(&copies[0], "Journal sequence"), dumpe2fs_field(&copies[1], "Journal sequence"));

        // The kernel's.
        check_kernel(case, &s, &copies[2], &ch, MTIME_C, root_ok);

        // Clean close of the original.
        fs.close().unwrap();
        assert!(!needs_recovery(&img), "{}: close leaves needs_recovery", case.name);
        assert_eq!(dumpe2fs_field(&img, "Journal start"), "0", "{}", case.name);
        assert_eq!(dumpe2fs_field(&img, "Journal sequence"), "0x00000004", "{}", case.name);
        assert_fsck_clean(&img);
        let stat_a = String::from_utf8_lossy(&debugfs_bytes(&img, "stat /a")).into_owned();
        assert_eq!(mtime_in_stat(&stat_a), Some(MTIME_A as u64), "{}", case.name);
        assert!(debugfs_bytes(&img, "cat /b") == ch.b_contents, "{}", case.name);

        // Still usable: a later change dirties the image again until closed.
        let tx = fs.tx().unwrap();
        let mut h = fs.begin().unwrap();
        stage_mtime(&fs, &mut h, ch.ino_c, MTIME_C + 1);
        h.finish();
        assert_eq!(tx.commit().unwrap(), Some(4));
        assert!(needs_recovery(&img));
        fs.close().unwrap();
        drop(fs);
        assert!(!needs_recovery(&img));
        assert_fsck_clean(&img);
        let stat_c = String::from_utf8_lossy(&debugfs_bytes(&img, "stat /d/c")).into_owned();
        assert_eq!(mtime_in_stat(&stat_c), Some(MTIME_C as u64 + 1), "{}", case.name);
        // The kernel mounts the closed image as a clean one.
        check_kernel(case, &s, &img, &ch, MTIME_C + 1, root_ok);
    }
}
