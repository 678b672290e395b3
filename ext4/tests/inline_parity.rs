//! New files are inline exactly when the kernel's are: the same creates,
//! writes, appends and truncates applied through our core to one fresh
//! inline_data image and through a kernel loop mount to another leave every
//! file with the same inline/extents choice (debugfs's Flags) and the same
//! contents; the kernel reads our image; e2fsck is clean on both.
//!
//! The kernel decides at a file's first write (its in-memory
//! `EXT4_STATE_MAY_INLINE_DATA`, set at creation): a first write that fits
//! the inline capacity makes the file inline, anything else makes it
//! block-mapped for good. Ours keeps the same state for the files it
//! created, so every file — never written ones included (empty extent
//! files on both sides) — must get the same layout.

mod common;

use common::kernel::Mount;
use common::tools::{assert_fsck_clean, mkfs};
use common::{Scratch, tree};
use ext4::disk::inode::{FL_EXTENTS, FL_INLINE_DATA, S_IFDIR, S_IFREG};
use ext4::fs::dir::namespace::NewInode;
use ext4::{Ext4, OpenOptions, ROOT_INO};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

/// One step of the workload.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// Create an empty regular file.
    Create(&'static str),
    /// Write `len` bytes (pattern `seed`) at `offset`.
    Write(&'static str, u64, usize, u64),
    /// Append `len` bytes (pattern `seed`).
    Append(&'static str, usize, u64),
    /// Change the size.
    Truncate(&'static str, u64),
}

/// The workload: first writes of every interesting size around the inline
/// capacity of 256-byte inodes (60 in i_block, 128 in all), appends that
/// stay and that cross it, writes past the end inside and outside it, and
/// truncates down and up (growing past the inline area in use converts,
/// within it stays inline).
fn workload() -> Vec<Op> {
    use Op::*;
    let mut ops = Vec::new();
    for (name, n) in [
        ("w0", 0usize),
        ("w1", 1),
        ("w59", 59),
        ("w60", 60),
        ("w61", 61),
        ("w100", 100),
        ("w128", 128),
        ("w129", 129),
        ("w160", 160),
        ("w200", 200),
        ("w4096", 4096),
    ] {
        ops.push(Create(name));
        ops.push(Write(name, 0, n, n as u64));
    }
    ops.extend([
        Create("a1"),
        Append("a1", 50, 1),
        Append("a1", 50, 2),
        Append("a1", 50, 3),
        Create("a2"),
        Append("a2", 100, 4),
        Append("a2", 28, 5),
        Append("a2", 1, 6),
        Create("a3"),
        Write("a3", 0, 10, 7),
        Write("a3", 100, 10, 8),
        Create("a4"),
        Write("a4", 0, 10, 9),
        Write("a4", 200, 10, 10),
        Create("a5"),
        Append("a5", 1, 11),
        Append("a5", 4000, 12),
        Append("a5", 10, 13),
        Create("t1"),
        Write("t1", 0, 100, 14),
        Truncate("t1", 20),
        Truncate("t1", 90),
        Append("t1", 30, 15),
        Create("t2"),
        Write("t2", 0, 100, 16),
        Truncate("t2", 1000),
        Create("t3"),
        Write("t3", 0, 120, 17),
        Truncate("t3", 0),
        Append("t3", 5, 18),
        Create("t4"),
        Write("t4", 0, 300, 19),
        Truncate("t4", 0),
        Append("t4", 5, 20),
        Create("t5"),
        Write("t5", 0, 100, 23),
        Truncate("t5", 120),
        Create("t6"),
        Write("t6", 0, 70, 24),
        Truncate("t6", 20),
        Truncate("t6", 50),
        Append("t6", 10, 25),
        Create("d/x"),
        Write("d/x", 0, 40, 21),
        Create("d/y"),
        Write("d/y", 0, 5000, 22),
    ]);
    ops
}

/// File names of the workload, in order of creation.
fn names(ops: &[Op]) -> Vec<&'static str> {
    ops.iter().filter_map(|op| if let Op::Create(n) = op { Some(*n) } else { None }).collect()
}

/// Files whose only write (if any) wrote nothing: see the module comment.
fn never_written(ops: &[Op]) -> Vec<&'static str> {
    names(ops)
        .into_iter()
        .filter(|n| {
            !ops.iter().any(|op| match op {
                Op::Write(m, _, len, _) | Op::Append(m, len, _) => m == n && *len > 0,
                Op::Truncate(m, _) => m == n,
                Op::Create(_) => false,
            })
        })
        .collect()
}

/// The expected contents of every file after the workload.
fn model(ops: &[Op]) -> Vec<(&'static str, Vec<u8>)> {
    let mut files: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let find = |files: &mut Vec<(&'static str, Vec<u8>)>, n: &str| files.iter().position(|(m, _)| *m == n).unwrap();
    for op in ops {
        match *op {
            Op::Create(n) => files.push((n, Vec::new())),
            Op::Write(n, off, len, seed) => {
                let i = find(&mut files, n);
                let end = off as usize + len;
                if len > 0 && files[i].1.len() < end {
                    files[i].1.resize(end, 0);
                }
                files[i].1[off as usize..off as usize + len].copy_from_slice(&tree::pattern(seed, len));
            }
            Op::Append(n, len, seed) => {
                let i = find(&mut files, n);
                files[i].1.extend_from_slice(&tree::pattern(seed, len));
            }
            Op::Truncate(n, size) => {
                let i = find(&mut files, n);
                files[i].1.resize(size as usize, 0);
            }
        }
    }
    files
}

/// Applies the workload through our core.
fn apply_core(img: &Path, ops: &[Op]) {
    let fs = Ext4::open(img, &OpenOptions::default()).unwrap();
    let attr = |mode| NewInode { mode, uid: 0, gid: 0, rdev: 0, umask: None };
    fs.mkdir(ROOT_INO, b"d", attr(S_IFDIR | 0o755)).unwrap();
    let ino = |n: &str| fs.resolve_path(format!("/{n}").as_bytes(), false).unwrap();
    for op in ops {
        match *op {
            Op::Create(n) => {
                let (dir, base) = match n.rsplit_once('/') {
                    Some((d, b)) => (ino(d), b),
                    None => (ROOT_INO, n),
                };
                fs.create(dir, base.as_bytes(), attr(S_IFREG | 0o644)).unwrap();
            }
            Op::Write(n, off, len, seed) => {
                assert_eq!(fs.write(ino(n), off, &tree::pattern(seed, len)).unwrap(), len);
            }
            Op::Append(n, len, seed) => {
                let i = ino(n);
                let size = fs.read_inode(i).unwrap().size();
                assert_eq!(fs.write(i, size, &tree::pattern(seed, len)).unwrap(), len);
            }
            Op::Truncate(n, size) => fs.truncate(ino(n), size).unwrap(),
        }
    }
    fs.close().unwrap();
}

/// Applies the workload through the kernel at mount point `m`, each step
/// made durable (`sync -f`) before the next, so delayed allocation never
/// leaves a step in the page cache when the next one looks at the inode.
/// (Not fsync: on Linux 6.18, fsync after a write that converts an inline
/// file grown by truncate loses the written bytes at the next mount;
/// syncfs keeps them.)
fn apply_kernel(m: &Path, ops: &[Op]) {
    std::fs::create_dir(m.join("d")).unwrap();
    let open = |n: &str| std::fs::OpenOptions::new().write(true).open(m.join(n)).unwrap();
    let sync = || testkit::run(Command::new("sync").arg("-f").arg(m));
    for op in ops {
        match *op {
            Op::Create(n) => {
                std::fs::File::create(m.join(n)).unwrap();
            }
            Op::Write(n, off, len, seed) => open(n).write_all_at(&tree::pattern(seed, len), off).unwrap(),
            Op::Append(n, len, seed) => {
                let f = open(n);
                let size = f.metadata().unwrap().len();
                f.write_all_at(&tree::pattern(seed, len), size).unwrap();
            }
            Op::Truncate(n, size) => open(n).set_len(size).unwrap(),
        }
        sync();
    }
}

/// debugfs's `stat` of `/path`.
fn stat(img: &Path, path: &str) -> String {
    let out = Command::new("debugfs").arg("-R").arg(format!("stat /{path}")).arg(img).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The inode flags debugfs shows.
fn flags(stat: &str) -> u32 {
    let hex = stat.split("Flags: 0x").nth(1).and_then(|s| s.split_whitespace().next()).expect("Flags in stat");
    u32::from_str_radix(hex, 16).unwrap()
}

/// The file size debugfs shows.
fn size(stat: &str) -> usize {
    let n = stat.split("Size: ").nth(1).and_then(|s| s.split_whitespace().next()).expect("Size in stat");
    n.parse().unwrap()
}

/// The file's contents as debugfs reads them, cut at its size (debugfs
/// 1.47 `cat` prints an inline file's whole inline area).
fn debugfs_cat(img: &Path, path: &str) -> Vec<u8> {
    let out = Command::new("debugfs").arg("-R").arg(format!("cat /{path}")).arg(img).output().unwrap();
    assert!(out.status.success(), "debugfs cat /{path}");
    let mut data = out.stdout;
    data.truncate(size(&stat(img, path)));
    data
}

/// "inline", "extents" or the raw flags, for messages.
fn layout(f: u32) -> String {
    match (f & FL_INLINE_DATA != 0, f & FL_EXTENTS != 0) {
        (true, false) => "inline".into(),
        (false, true) => "extents".into(),
        _ => format!("flags {f:#x}"),
    }
}

#[test]
fn new_files_are_inline_exactly_when_the_kernels_are() {
    let scratch = Scratch::new("inline-parity");
    let ours = scratch.join("ours.img");
    let theirs = scratch.join("kernel.img");
    let args = ["-t", "ext4", "-b", "4096", "-I", "256", "-O", "inline_data,metadata_csum"];
    mkfs(&ours, "32M", None, &args);
    mkfs(&theirs, "32M", None, &args);
    let ops = workload();
    {
        let Some(m) = Mount::or_skip(&theirs, &scratch.join("mk"), "", "inline parity with the kernel") else {
            return;
        };
        apply_kernel(m.path(), &ops);
    }
    apply_core(&ours, &ops);
    assert_fsck_clean(&ours);
    assert_fsck_clean(&theirs);

    let unwritten = never_written(&ops);
    let mut report = String::new();
    let mut mismatches = Vec::new();
    for (name, want) in model(&ops) {
        let (a, b) = (stat(&ours, name), stat(&theirs, name));
        let (fa, fb) = (flags(&a) & (FL_INLINE_DATA | FL_EXTENTS), flags(&b) & (FL_INLINE_DATA | FL_EXTENTS));
        report.push_str(&format!("{name}: {} bytes, ours {}, kernel {}\n", want.len(), layout(fa), layout(fb)));
        if unwritten.contains(&name) {
            // The first write decides, on both sides: never written, both
            // are empty extent files.
            assert_eq!((fa, fb), (FL_EXTENTS, FL_EXTENTS), "{name}: never written:\n{a}\n{b}");
        } else if fa != fb {
            mismatches.push(name);
        }
        assert_eq!((size(&a), size(&b)), (want.len(), want.len()), "{name}: sizes");
        assert!(debugfs_cat(&ours, name) == want, "{name}: our image holds other contents");
        assert!(debugfs_cat(&theirs, name) == want, "{name}: the kernel's image holds other contents (model wrong?)");
    }
    eprintln!("{report}");
    assert!(mismatches.is_empty(), "inline/extents choice differs for {mismatches:?}:\n{report}");
    // Both directories are inline on both sides.
    for img in [&ours, &theirs] {
        assert_eq!(flags(&stat(img, "d")) & FL_INLINE_DATA, FL_INLINE_DATA, "{img:?}: /d is inline");
    }

    // The kernel reads our image.
    let m = Mount::new(&ours, &scratch.join("mo"), None, "ro").expect("the kernel mounts our image");
    for (name, want) in model(&ops) {
        let got = std::fs::read(m.path().join(name)).unwrap();
        assert!(got == want, "{name}: the kernel reads other contents from our image");
    }
    drop(m);
    assert_fsck_clean(&ours);
}
