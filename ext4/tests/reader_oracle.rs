//! Acceptance: images packed by `mke2fs -d` from generated source trees, at
//! every block size and feature combination, read back equal to the source:
//! bytes, size, mode, ids, times, link count, xattrs, link targets, device
//! numbers and directory listings. e2fsck judges every image first.

mod common;

use common::tools::{assert_fsck_clean, index_dirs, mkfs};
use common::{Scratch, tree};
use ext4::{Ext4, FileType, OpenOptions};
use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Compares every entry below `src` with the image.
/// Metadata of every entry below `src` (and `src`), taken before mke2fs
/// reads the tree: reading moves atimes (relatime updates atimes older
/// than a day), and mke2fs records what it saw before reading.
fn snapshot(src: &Path) -> Vec<(std::path::PathBuf, std::fs::Metadata)> {
    let mut paths = vec![src.to_path_buf()];
    tree::walk(src, &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let md = std::fs::symlink_metadata(&p).unwrap();
            (p, md)
        })
        .collect()
}

fn compare_tree(fs: &Ext4, src: &Path, before: &[(std::path::PathBuf, std::fs::Metadata)]) {
    for (p, md) in before {
        let rel = p.strip_prefix(src).unwrap();
        let img_path = [b"/".as_slice(), rel.as_os_str().as_bytes()].concat();
        let ino = fs.resolve_path(&img_path, false).unwrap_or_else(|e| panic!("resolve {rel:?}: {e}"));
        let inode = fs.read_inode(ino).unwrap();
        let ctx = format!("{rel:?} (inode {ino})");
        if rel.as_os_str().is_empty() {
            // mke2fs creates the root itself (its own mode, owner and times);
            // only its listing comes from the source.
            compare_listing(fs, &inode, p, &ctx, true);
            continue;
        }

        assert_eq!(inode.mode() as u32, md.mode(), "mode of {ctx}");
        assert_eq!(inode.uid(), md.uid(), "uid of {ctx}");
        assert_eq!(inode.gid(), md.gid(), "gid of {ctx}");
        assert_eq!(inode.links_count() as u64, md.nlink(), "links of {ctx}");
        // mke2fs copies atime and mtime seconds (not ctime, not nanoseconds:
        // `timestamps_with_nanoseconds_and_epochs` checks those against debugfs).
        assert_eq!(inode.mtime().secs, md.mtime(), "mtime of {ctx}");
        assert_eq!(inode.atime().secs, md.atime(), "atime of {ctx}");

        let ft = md.file_type();
        if ft.is_file() {
            assert_eq!(inode.file_type(), Some(FileType::Regular), "{ctx}");
            assert_eq!(inode.size(), md.len(), "size of {ctx}");
            compare_file_data(fs, &inode, p, &ctx);
        } else if ft.is_dir() {
            assert_eq!(inode.file_type(), Some(FileType::Directory), "{ctx}");
            compare_listing(fs, &inode, p, &ctx, false);
        } else if ft.is_symlink() {
            let target = std::fs::read_link(p).unwrap();
            assert_eq!(fs.read_link(&inode).unwrap(), target.as_os_str().as_bytes(), "target of {ctx}");
            assert_eq!(inode.size(), md.len(), "size of {ctx}");
        } else if ft.is_char_device() || ft.is_block_device() {
            let want = md.rdev();
            let got = inode.rdev() as u64;
            let (gmaj, gmin) = ((got >> 8) & 0xfff, (got & 0xff) | ((got >> 12) & 0xfff00));
            assert_eq!((gmaj, gmin), (libc::major(want) as u64, libc::minor(want) as u64), "rdev of {ctx}");
        } else if ft.is_fifo() {
            assert_eq!(inode.file_type(), Some(FileType::Fifo), "{ctx}");
        }

        let want = tree::xattrs(p);
        let mut got: Vec<(Vec<u8>, Vec<u8>)> =
            fs.list_xattrs(&inode).unwrap().into_iter().map(|x| (x.name, x.value)).collect();
        got.sort();
        assert_eq!(got, want, "xattrs of {ctx}");
        for (name, value) in &want {
            assert_eq!(&fs.get_xattr(&inode, name).unwrap(), value, "xattr {name:?} of {ctx}");
        }
        assert!(matches!(fs.get_xattr(&inode, b"user.absent"), Err(ext4::Error::NoAttr)), "{ctx}");
    }
}

/// Compares file contents: every data region byte for byte, and samples of
/// every hole as zeros (reading gigabytes of holes would only test memset).
fn compare_file_data(fs: &Ext4, inode: &ext4::Inode, p: &Path, ctx: &str) {
    let file = std::fs::File::open(p).unwrap();
    let size = inode.size();
    let mut pos = 0u64;
    while pos < size {
        let (data_start, data_end) = next_data(&file, pos, size);
        if data_start > pos {
            for off in [pos, (pos + data_start) / 2, data_start.saturating_sub(4096).max(pos)] {
                let len = (data_start - off).min(4096) as usize;
                let mut buf = vec![0xAAu8; len];
                let n = fs.read(inode, off, &mut buf).unwrap();
                assert_eq!(n, len, "short read in hole of {ctx} at {off}");
                assert!(buf.iter().all(|&b| b == 0), "hole of {ctx} at {off} not zero");
            }
        }
        if data_start >= size {
            break;
        }
        let mut want = vec![0u8; (data_end - data_start) as usize];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut want, data_start).unwrap();
        let mut got = vec![0u8; want.len()];
        let n = fs.read(inode, data_start, &mut got).unwrap();
        assert_eq!(n, got.len(), "short read of {ctx} at {data_start}");
        assert!(got == want, "data of {ctx} differs in {data_start}..{data_end}");
        pos = data_end;
    }
    let mut tail = [0u8; 16];
    assert_eq!(fs.read(inode, size, &mut tail).unwrap(), 0, "read at EOF of {ctx}");
}

/// The next data region at or after `pos` per SEEK_DATA/SEEK_HOLE.
fn next_data(file: &std::fs::File, pos: u64, size: u64) -> (u64, u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: lseek on a valid open descriptor.
    let start = unsafe { libc::lseek(file.as_raw_fd(), pos as i64, libc::SEEK_DATA) };
    if start < 0 {
        return (size, size);
    }
    // SAFETY: as above.
    let end = unsafe { libc::lseek(file.as_raw_fd(), start, libc::SEEK_HOLE) };
    (start as u64, (end as u64).min(size))
}

fn compare_listing(fs: &Ext4, dir: &ext4::Inode, p: &Path, ctx: &str, is_root: bool) {
    let mut got = Vec::new();
    fs.read_dir(dir, 0, &mut |e, _| {
        got.push(e.name.clone());
        true
    })
    .unwrap();
    let got_set: BTreeSet<Vec<u8>> = got.iter().cloned().collect();
    assert_eq!(got.len(), got_set.len(), "duplicate names in {ctx}");
    let mut want: BTreeSet<Vec<u8>> =
        std::fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name().as_bytes().to_vec()).collect();
    want.insert(b".".to_vec());
    want.insert(b"..".to_vec());
    if is_root {
        // The image root also holds lost+found.
        want.insert(b"lost+found".to_vec());
    }
    assert_eq!(got_set, want, "listing of {ctx}");
}

fn check_config(tag: &str, args: &[&str]) {
    let scratch = Scratch::new(tag);
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    let info = tree::build(&src, 3000);
    if !info.device_nodes {
        common::skip("device nodes in the source tree", "mknod needs root");
    }
    if args.iter().any(|a| a.contains("inline_data")) {
        // mke2fs 1.47.0 with inline_data records a sparse file's size only up
        // to its last data block (debugfs shows the same short size): end the
        // file with data so the comparison tests the reader, not that bug.
        // The other configurations keep the trailing hole.
        let f = std::fs::OpenOptions::new().write(true).open(src.join("sparse")).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"end", (8 << 20) - 3).unwrap();
    }
    let img = scratch.join("fs.img");
    let before = snapshot(&src);
    mkfs(&img, "256M", Some(&src), args);
    index_dirs(&img);
    assert_fsck_clean(&img);
    let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
    compare_tree(&fs, &src, &before);
    // The big directory must really be indexed for the htree path to be tested.
    let big = fs.read_inode(fs.resolve_path(b"/big_dir", false).unwrap()).unwrap();
    if !args.contains(&"^dir_index") {
        assert!(big.has_flag(ext4::disk::inode::FL_INDEX), "{tag}: big_dir is not htree-indexed");
    }
}

macro_rules! configs {
    ($($name:ident: [$($arg:expr),*];)*) => {$(
        #[test]
        fn $name() {
            check_config(stringify!($name), &[$($arg),*]);
        }
    )*};
}

configs! {
    ext4_1k: ["-t", "ext4", "-b", "1024"];
    ext4_2k: ["-t", "ext4", "-b", "2048"];
    ext4_4k: ["-t", "ext4", "-b", "4096"];
    ext4_inline_1k: ["-t", "ext4", "-b", "1024", "-O", "inline_data"];
    ext4_inline_2k: ["-t", "ext4", "-b", "2048", "-O", "inline_data"];
    ext4_inline_4k: ["-t", "ext4", "-b", "4096", "-O", "inline_data"];
    ext4_nocsum_1k: ["-t", "ext4", "-b", "1024", "-O", "^metadata_csum,^64bit,^flex_bg"];
    ext4_nocsum_2k: ["-t", "ext4", "-b", "2048", "-O", "^metadata_csum,^64bit"];
    ext4_nocsum_4k: ["-t", "ext4", "-b", "4096", "-O", "^metadata_csum,^flex_bg"];
    ext4_16k: ["-t", "ext4", "-b", "16384"];
    ext4_64k_inline: ["-t", "ext4", "-b", "65536", "-O", "inline_data"];
    ext4_small_inodes_4k: ["-t", "ext4", "-b", "4096", "-I", "128"];
    ext4_seed_metabg_sparse2_4k: ["-t", "ext4", "-b", "4096", "-O", "metadata_csum_seed,meta_bg,^resize_inode,sparse_super2"];
    ext4_64bit_inline_seed_1k: ["-t", "ext4", "-b", "1024", "-O", "64bit,inline_data,metadata_csum_seed"];
    ext3_1k: ["-t", "ext3", "-b", "1024"];
    ext3_2k: ["-t", "ext3", "-b", "2048"];
    ext3_4k: ["-t", "ext3", "-b", "4096"];
    ext2_1k: ["-t", "ext2", "-b", "1024"];
    ext2_2k: ["-t", "ext2", "-b", "2048"];
    ext2_4k: ["-t", "ext2", "-b", "4096", "-I", "128"];
}

/// Nanoseconds and extended-epoch seconds of all four timestamps, set with
/// debugfs on a mke2fs image and compared with debugfs's own `stat`.
#[test]
fn timestamps_with_nanoseconds_and_epochs() {
    let scratch = Scratch::new("times");
    let src = scratch.join("src");
    std::fs::create_dir(&src).unwrap();
    let names: Vec<String> = (0..12).map(|i| format!("f{i}")).collect();
    for n in &names {
        std::fs::write(src.join(n), n.as_bytes()).unwrap();
    }
    let img = scratch.join("fs.img");
    mkfs(&img, "32M", Some(&src), &["-t", "ext4", "-I", "256"]);
    let mut cmds = String::new();
    for (i, n) in names.iter().enumerate() {
        let i = i as u32;
        for (j, field) in ["atime", "mtime", "ctime", "crtime"].iter().enumerate() {
            let j = j as u32;
            // Nanoseconds up to 999999999, and every epoch value 0..=3.
            let ns = (i * 83_333_333 + j * 7_777_777) % 1_000_000_000;
            let extra = ns << 2 | ((i + j) & 3);
            cmds += &format!("sif /{n} {field}_extra {extra:#x}\n");
            cmds += &format!("sif /{n} {field}_lo {}\n", (0x8000_0000u32).wrapping_add(i * 0x1234_5678 + j));
        }
    }
    let cmdfile = scratch.join("cmds");
    std::fs::write(&cmdfile, cmds).unwrap();
    common::tools::run(std::process::Command::new("debugfs").arg("-w").arg("-f").arg(&cmdfile).arg(&img));
    assert_fsck_clean(&img);
    let fs = Ext4::open(&img, &OpenOptions { read_only: true, ..Default::default() }).unwrap();
    for n in &names {
        let inode = fs.read_inode(fs.resolve_path(format!("/{n}").as_bytes(), false).unwrap()).unwrap();
        let stat = common::tools::debugfs(&img, &format!("stat /{n}"));
        for (field, ours) in [
            ("atime", inode.atime()),
            ("mtime", inode.mtime()),
            ("ctime", inode.ctime()),
            ("crtime", inode.crtime().unwrap()),
        ] {
            // debugfs prints "FIELD: 0xSECONDS:EXTRA -- date".
            let line = stat.lines().find(|l| l.trim_start().starts_with(&format!("{field}:"))).unwrap();
            let hex: Vec<u32> = line
                .split_whitespace()
                .nth(1)
                .unwrap()
                .split(':')
                .map(|h| u32::from_str_radix(h.trim_start_matches("0x"), 16).unwrap())
                .collect();
            // The on-disk rule: seconds are signed 32 bits plus the epoch bits
            // as bits 32-33; nanoseconds are the extra field's upper 30 bits.
            let secs = hex[0] as i32 as i64 + (((hex[1] & 3) as i64) << 32);
            assert_eq!((ours.secs, ours.nsecs), (secs, hex[1] >> 2), "{field} of /{n}: {line}");
        }
    }
}
