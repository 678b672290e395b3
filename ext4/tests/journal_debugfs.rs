//! Journal recovery of images whose journal debugfs wrote without
//! checkpointing (`journal_open` / `journal_write` / `journal_close`), in
//! every journal format debugfs produces: checksum v3 and v2 (metadata_csum),
//! v1 transaction checksums, no checksums with 32-bit tags, and an ext3
//! block-mapped journal; 1 KiB and 4 KiB blocks. The log holds data
//! blocks, an escaped block (starting with the jbd2 magic), a revoke record
//! and an uncommitted transaction. Checked: what our replay makes of the
//! blocks, read-only opens leave the image untouched, read-write opens
//! leave an image that e2fsck finds clean, and e2fsck's own replay agrees.
//! An image with an external journal is refused.

mod common;
mod journal_support;

use common::Scratch;
use common::tools::{assert_fsck_clean, mkfs, run};
use ext4::Ext4;
use journal_support::*;
use std::path::Path;
use std::process::Command;

/// A file-system and journal format to test.
struct Case {
    name: &'static str,
    mkfs_args: &'static [&'static str],
    size: &'static str,
    journal_open: &'static str,
    /// Expected journal features after `journal_open`, as dumpe2fs names them.
    journal_features: &'static [&'static str],
    /// debugfs includes revoke blocks in v1 transaction checksums, jbd2
    /// recovery does not: the kernel and e2fsck find the revoke
    /// transaction's commit corrupt and end the replay before it.
    revoke_commit_corrupt: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "csum_v3",
        mkfs_args: &["-t", "ext4", "-O", "metadata_csum,64bit"],
        size: "16M",
        journal_open: "jo -c",
        journal_features: &["journal_64bit", "journal_checksum_v3"],
        revoke_commit_corrupt: false,
    },
    Case {
        name: "csum_v3_4k",
        mkfs_args: &["-t", "ext4", "-b", "4096", "-O", "metadata_csum,64bit"],
        size: "64M",
        journal_open: "jo -c",
        journal_features: &["journal_64bit", "journal_checksum_v3"],
        revoke_commit_corrupt: false,
    },
    Case {
        name: "csum_v2",
        mkfs_args: &["-t", "ext4", "-O", "metadata_csum,64bit"],
        size: "16M",
        journal_open: "jo -c -v 2",
        journal_features: &["journal_checksum_v2"],
        revoke_commit_corrupt: false,
    },
    Case {
        name: "csum_v1",
        mkfs_args: &["-t", "ext4", "-O", "^metadata_csum,64bit"],
        size: "16M",
        journal_open: "jo -c",
        journal_features: &["journal_checksum"],
        revoke_commit_corrupt: true,
    },
    Case {
        name: "no_csum_32bit",
        mkfs_args: &["-t", "ext4", "-O", "^metadata_csum,^64bit"],
        size: "16M",
        journal_open: "jo",
        journal_features: &[],
        revoke_commit_corrupt: false,
    },
    Case {
        name: "ext3",
        mkfs_args: &["-t", "ext3"],
        size: "16M",
        journal_open: "jo",
        journal_features: &[],
        revoke_commit_corrupt: false,
    },
];

/// Blocks of /f the transactions touch: logical block numbers 0..5.
const FILE_BLOCKS: usize = 6;

/// Builds the image and writes the transactions with debugfs. Returns the
/// block size and the contents /f must have after a correct replay.
fn prepare(case: &Case, s: &Scratch, img: &Path) -> (usize, Vec<u8>) {
    let src = s.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let original = pattern(1, 64 * 1024);
    std::fs::write(src.join("f"), &original).unwrap();
    mkfs(img, case.size, Some(&src), case.mkfs_args);
    assert!(!needs_recovery(img));
    let bs: usize = dumpe2fs_field(img, "Block size").parse().unwrap();
    let blocks = blocks_of(img, "/f");
    assert!(blocks.len() >= FILE_BLOCKS);
    let b = &blocks[..FILE_BLOCKS];

    let new = |seed: u64| pattern(100 + seed, bs);
    let mut escaped = new(3);
    escaped[..4].copy_from_slice(&0xC03B_3998u32.to_be_bytes());
    let t1 = s.join("t1");
    std::fs::write(&t1, [new(0), new(1)].concat()).unwrap();
    let t2 = s.join("t2");
    std::fs::write(&t2, new(2)).unwrap();
    let t3 = s.join("t3");
    std::fs::write(&t3, &escaped).unwrap();
    let t4 = s.join("t4");
    std::fs::write(&t4, new(4)).unwrap();
    // Transaction order matters to debugfs, which places each transaction
    // by its own size estimate: a revoke block in a transaction that also
    // logs data would be overwritten by the next transaction.
    let cmds = [
        case.journal_open.to_string(),
        format!("jw -b {},{} {}", b[0], b[1], t1.display()),
        format!("jw -b {} {}", b[3], t3.display()),
        format!("jw -r {}", b[1]),
        format!("jw -b {} {}", b[2], t2.display()),
        format!("jw -b {} -c {}", b[4], t4.display()),
        "jc".to_string(),
    ];
    let cmdfile = s.join("cmds");
    std::fs::write(&cmdfile, cmds.join("\n") + "\n").unwrap();
    let out = run(Command::new("debugfs").arg("-w").arg("-f").arg(&cmdfile).arg(img));
    assert!(!out.contains("rror"), "debugfs journal commands failed:\n{out}");
    assert!(needs_recovery(img), "debugfs left no transaction to recover");
    let features = dumpe2fs_field(img, "Journal features");
    for f in case.journal_features {
        assert!(features.split_whitespace().any(|x| x == *f), "{}: journal features {features}", case.name);
    }

    let mut expected = original;
    expected[0..bs].copy_from_slice(&new(0));
    if case.revoke_commit_corrupt {
        expected[bs..2 * bs].copy_from_slice(&new(1));
    } else {
        expected[2 * bs..3 * bs].copy_from_slice(&new(2));
    }
    expected[3 * bs..4 * bs].copy_from_slice(&escaped);
    (bs, expected)
}

fn check_replayed(case: &Case, fs: &Ext4, img: &Path, expected: &[u8], what: &str) {
    let report = fs.recovery_report().unwrap_or_else(|| panic!("{what}: no recovery ran"));
    let (transactions, revoked, failed) = if case.revoke_commit_corrupt { (2, 0, Some(3)) } else { (4, 1, None) };
    assert_eq!(report.transactions, transactions, "{what}: {report:?}");
    assert_eq!(report.blocks_replayed, 3, "{what}: {report:?}");
    assert_eq!(report.blocks_revoked, revoked, "{what}: {report:?}");
    assert_eq!(report.failed_commit, failed, "{what}: {report:?}");
    assert!(report.bad_checksum_blocks.is_empty(), "{what}: {report:?}");
    let bs = fs.block_size() as usize;
    let blocks = blocks_of(img, "/f");
    for (i, &blk) in blocks[..FILE_BLOCKS].iter().enumerate() {
        let mut buf = vec![0u8; bs];
        fs.read_block_into(blk, &mut buf, "test").unwrap();
        assert!(buf == expected[i * bs..(i + 1) * bs], "{what}: block {blk} (file block {i})");
    }
    assert!(read_file(fs, inode_of(img, "/f")) == expected, "{what}: /f read through the API");
}

#[test]
fn debugfs_transactions_replay_like_e2fsck() {
    for case in CASES {
        let s = Scratch::new(&format!("journal-debugfs-{}", case.name));
        let img = s.join("img");
        let (_bs, expected) = prepare(case, &s, &img);
        let pristine = std::fs::read(&img).unwrap();

        // Read-only: replayed in memory, the image file is not modified.
        let fs = Ext4::open(&img, &read_only()).unwrap();
        check_replayed(case, &fs, &img, &expected, &format!("{} read-only", case.name));
        drop(fs);
        assert!(std::fs::read(&img).unwrap() == pristine, "{}: read-only open modified the image", case.name);

        // Read-write: replayed onto the image, which is then clean.
        let ours = s.join("ours");
        std::fs::write(&ours, &pristine).unwrap();
        let fs = Ext4::open(&ours, &read_write()).unwrap();
        check_replayed(case, &fs, &ours, &expected, &format!("{} read-write", case.name));
        drop(fs);
        assert!(!needs_recovery(&ours), "{}", case.name);
        assert_eq!(dumpe2fs_field(&ours, "Journal start"), "0", "{}", case.name);
        assert_fsck_clean(&ours);
        assert!(debugfs_bytes(&ours, "cat /f") == expected, "{}: debugfs reads /f differently", case.name);
        let fs = Ext4::open(&ours, &read_write()).unwrap();
        assert!(fs.recovery_report().is_none(), "{}: recovered twice", case.name);
        drop(fs);

        // e2fsck's replay of the same journal: same file, same journal state.
        let theirs = s.join("theirs");
        std::fs::write(&theirs, &pristine).unwrap();
        let out = Command::new("e2fsck").arg("-fy").arg(&theirs).output().unwrap();
        assert!(out.status.code().is_some_and(|c| c <= 1), "e2fsck -fy: {}", String::from_utf8_lossy(&out.stdout));
        assert!(debugfs_bytes(&theirs, "cat /f") == expected, "{}: e2fsck replays differently", case.name);
        assert_eq!(
            dumpe2fs_field(&ours, "Journal sequence"),
            dumpe2fs_field(&theirs, "Journal sequence"),
            "{}",
            case.name
        );
    }
}

/// An image whose journal lives on another device cannot be recovered
/// here: the open fails clearly and leaves the image alone.
#[test]
fn external_journal_is_refused() {
    let s = Scratch::new("journal-external");
    let img = s.join("img");
    mkfs(&img, "16M", None, &["-t", "ext4", "-O", "^has_journal"]);
    let cmdfile = s.join("cmds");
    std::fs::write(
        &cmdfile,
        "ssv journal_dev 2049\nssv journal_uuid 01234567-89ab-cdef-0123-456789abcdef\n\
         feature has_journal needs_recovery\n",
    )
    .unwrap();
    run(Command::new("debugfs").arg("-w").arg("-f").arg(&cmdfile).arg(&img));
    assert!(needs_recovery(&img));
    let pristine = std::fs::read(&img).unwrap();
    for opts in [read_only(), read_write()] {
        match Ext4::open(&img, &opts) {
            Err(ext4::Error::Unsupported(msg)) => assert!(msg.contains("external journal"), "{msg}"),
            other => panic!("external journal: open gave {other:?}"),
        }
    }
    assert!(std::fs::read(&img).unwrap() == pristine);
}
