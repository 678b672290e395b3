//! Journal recovery of images the Linux kernel left behind: the image is
//! copied while mounted, after files were written and fsync()ed (committed
//! to the journal, most metadata not yet written home) and a directory
//! full of files was deleted (revoke records). Our replay must yield the
//! files as written, an image e2fsck finds clean, and the same files as
//! e2fsck's own replay. Needs root and working loop mounts; otherwise the
//! test prints a loud SKIPPED line and passes.

mod common;

use common::kernel::Mount;
mod journal_support;

use common::tools::{assert_fsck_clean, mkfs, run};
use common::{Scratch, is_root, skip};
use ext4::Ext4;
use journal_support::*;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// A file system and mount configuration to test.
struct Case {
    name: &'static str,
    mkfs_args: &'static [&'static str],
    fstype: &'static str,
    mount_opts: &'static str,
}

const CASES: &[Case] = &[
    Case { name: "ext4", mkfs_args: &["-t", "ext4"], fstype: "ext4", mount_opts: "rw" },
    Case { name: "ext4_4k", mkfs_args: &["-t", "ext4", "-b", "4096"], fstype: "ext4", mount_opts: "rw" },
    Case { name: "ext4_no_csum", mkfs_args: &["-t", "ext4", "-O", "^metadata_csum"], fstype: "ext4", mount_opts: "rw" },
    Case {
        name: "ext4_v1_checksum",
        mkfs_args: &["-t", "ext4", "-O", "^metadata_csum"],
        fstype: "ext4",
        mount_opts: "journal_checksum",
    },
    Case { name: "ext3", mkfs_args: &["-t", "ext3"], fstype: "ext3", mount_opts: "rw" },
    Case {
        name: "ext4_data_journal_async",
        mkfs_args: &["-t", "ext4"],
        fstype: "ext4",
        mount_opts: "data=journal,journal_async_commit",
    },
];

/// A file the workload leaves behind: path inside the file system, inode
/// number, contents.
struct Expected {
    path: String,
    ino: u32,
    data: Vec<u8>,
}

fn write_synced(path: &Path, data: &[u8]) {
    let mut f = File::create(path).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

fn sync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

/// Writes files through the kernel and returns what must survive.
fn workload(root: &Path) -> Vec<Expected> {
    let mut files = Vec::new();
    std::fs::create_dir(root.join("d")).unwrap();
    for i in 0..40u64 {
        let rel = format!("d/f{i}");
        write_synced(&root.join(&rel), &pattern(i, (i as usize * 997) % 70_000));
        files.push(rel);
    }
    sync_dir(&root.join("d"));
    // Metadata blocks logged, then freed: revoke records.
    std::fs::create_dir(root.join("gone")).unwrap();
    for i in 0..300 {
        write_synced(&root.join(format!("gone/x{i}")), format!("{i}\n").as_bytes());
    }
    sync_dir(&root.join("gone"));
    std::fs::remove_dir_all(root.join("gone")).unwrap();
    write_synced(&root.join("big"), &pattern(1000, 3 << 20));
    files.push("big".into());
    // Rewritten in place after it was committed once.
    write_synced(&root.join("d/f7"), &pattern(2000, 12_345));
    sync_dir(&root.join("d"));
    sync_dir(root);
    files
        .into_iter()
        .map(|rel| {
            let p = root.join(&rel);
            let meta = std::fs::metadata(&p).unwrap();
            Expected { path: format!("/{rel}"), ino: meta.ino() as u32, data: std::fs::read(&p).unwrap() }
        })
        .collect()
}

fn check_files(fs: &Ext4, files: &[Expected], what: &str) {
    let report = fs.recovery_report().unwrap_or_else(|| panic!("{what}: no recovery ran"));
    assert!(report.transactions > 0 && report.blocks_replayed > 0, "{what}: {report:?}");
    assert!(report.bad_checksum_blocks.is_empty() && report.failed_commit.is_none(), "{what}: {report:?}");
    for f in files {
        assert!(read_file(fs, f.ino) == f.data, "{what}: {} read through the API", f.path);
    }
}

#[test]
fn kernel_journals_replay_like_e2fsck() {
    if !is_root() {
        skip("journal_kernel", "not running as root, cannot loop-mount images");
        return;
    }
    for case in CASES {
        let s = Scratch::new(&format!("journal-kernel-{}", case.name));
        let img = s.join("img");
        mkfs(&img, "64M", None, case.mkfs_args);
        let copy = s.join("copy");
        let files = {
            let mount = match Mount::new(&img, &s.join("mnt"), Some(case.fstype), case.mount_opts) {
                Ok(m) => m,
                Err(e) => {
                    skip(&format!("journal_kernel {}", case.name), &format!("mount -o loop failed: {}", e.trim()));
                    continue;
                }
            };
            let files = workload(&mount.0);
            run(Command::new("cp").arg("--sparse=always").arg(&img).arg(&copy));
            files
        };
        assert!(needs_recovery(&copy), "{}: the copy needs no recovery", case.name);
        assert_ne!(dumpe2fs_field(&copy, "Journal start"), "0", "{}", case.name);
        eprintln!("{}: journal features: {}", case.name, dumpe2fs_field(&copy, "Journal features"));
        let pristine = std::fs::read(&copy).unwrap();

        // Read-only: replayed in memory only.
        let fs = Ext4::open(&copy, &read_only()).unwrap();
        check_files(&fs, &files, &format!("{} read-only", case.name));
        eprintln!("{}: {:?}", case.name, fs.recovery_report());
        drop(fs);
        assert!(std::fs::read(&copy).unwrap() == pristine, "{}: read-only open modified the image", case.name);

        // Read-write: replayed onto the image.
        let ours = s.join("ours");
        std::fs::write(&ours, &pristine).unwrap();
        let fs = Ext4::open(&ours, &read_write()).unwrap();
        check_files(&fs, &files, &format!("{} read-write", case.name));
        drop(fs);
        assert!(!needs_recovery(&ours), "{}", case.name);
        assert_fsck_clean(&ours);

        // e2fsck's replay of the same image agrees.
        let theirs = s.join("theirs");
        std::fs::write(&theirs, &pristine).unwrap();
        let out = Command::new("e2fsck").arg("-fy").arg(&theirs).output().unwrap();
        assert!(out.status.code().is_some_and(|c| c <= 1), "e2fsck -fy: {}", String::from_utf8_lossy(&out.stdout));
        for f in &files {
            let cat = debugfs_bytes(&ours, &format!("cat {}", f.path));
            assert!(cat == f.data, "{}: debugfs reads {} differently from what was written", case.name, f.path);
            assert!(cat == debugfs_bytes(&theirs, &format!("cat {}", f.path)), "{}: {}", case.name, f.path);
        }
        for dir in ["/", "/d"] {
            let listing = |img: &Path| debugfs_bytes(img, &format!("ls -p {dir}"));
            assert_eq!(listing(&ours), listing(&theirs), "{}: listing of {dir}", case.name);
        }
        assert_eq!(dumpe2fs_field(&ours, "Journal sequence"), dumpe2fs_field(&theirs, "Journal sequence"));
    }
}

/// fsync() on a fast_commit file system writes fast commits, which we do
/// not replay: the open must fail clearly rather than lose the files.
#[test]
fn kernel_fast_commits_are_refused() {
    if !is_root() {
        skip("journal_kernel fast_commit", "not running as root, cannot loop-mount images");
        return;
    }
    let s = Scratch::new("journal-kernel-fast-commit");
    let img = s.join("img");
    mkfs(&img, "64M", None, &["-t", "ext4", "-O", "fast_commit"]);
    let copy = s.join("copy");
    let files = {
        let mount = match Mount::new(&img, &s.join("mnt"), Some("ext4"), "rw") {
            Ok(m) => m,
            Err(e) => {
                skip("journal_kernel fast_commit", &format!("mount -o loop failed: {}", e.trim()));
                return;
            }
        };
        std::fs::create_dir(mount.0.join("d")).unwrap();
        sync_dir(&mount.0.join("d"));
        sync_dir(&mount.0);
        let mut files = Vec::new();
        for i in 0..3u64 {
            let p = mount.0.join(format!("d/f{i}"));
            write_synced(&p, &pattern(i, 5000));
            files.push((format!("/d/f{i}"), pattern(i, 5000)));
        }
        run(Command::new("cp").arg("--sparse=always").arg(&img).arg(&copy));
        files
    };
    assert!(needs_recovery(&copy));
    let pristine = std::fs::read(&copy).unwrap();
    for opts in [read_only(), read_write()] {
        match Ext4::open(&copy, &opts) {
            Err(ext4::Error::Unsupported(msg)) => assert!(msg.contains("fast commit"), "{msg}"),
            other => panic!("fast commits pending, open gave {other:?}"),
        }
        assert!(std::fs::read(&copy).unwrap() == pristine, "a refused recovery modified the image");
    }
    // e2fsck replays them: the files are there.
    let out = Command::new("e2fsck").arg("-fy").arg(&copy).output().unwrap();
    assert!(out.status.code().is_some_and(|c| c <= 1), "e2fsck -fy: {}", String::from_utf8_lossy(&out.stdout));
    for (path, data) in &files {
        assert!(debugfs_bytes(&copy, &format!("cat {path}")) == *data, "{path} after e2fsck");
    }
}
